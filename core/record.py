"""A run's record: ``report.json`` (what was run and measured) and ``timings.json`` (kept apart so
that two runs' reports compare byte for byte), written atomically; ``report.html`` beside them is
rendered by `setforge.tools.report`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import DataError

__all__ = ["dumps_json", "write_text", "write_report", "read_report", "REPORT_FILE", "TIMINGS_FILE", "HTML_FILE"]

REPORT_FILE = "report.json"
TIMINGS_FILE = "timings.json"
HTML_FILE = "report.html"


def dumps_json(value: Any) -> str:
    """JSON with sorted keys and a trailing newline: equal content, equal bytes."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(folder: Path, report: Mapping[str, Any], timings: Mapping[str, Any] | None = None) -> None:
    """Write ``report.json``, ``timings.json`` (when given) and ``report.html`` into `folder`."""
    from .tools.report import render_html

    folder = Path(folder)
    write_text(folder / REPORT_FILE, dumps_json(report))
    if timings is not None:
        write_text(folder / TIMINGS_FILE, dumps_json(timings))
    write_text(folder / HTML_FILE, render_html(report, folder, timings))


def read_report(run_dir: str | Path) -> dict[str, Any]:
    """``report.json`` of a finished run folder."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    if not path.is_file():
        hint = ""
        partial = run_dir.with_name(run_dir.name + ".partial")
        if partial.is_dir():
            hint = f" ({partial} exists: the run did not finish; `setforge run FILE --resume` continues it)"
        raise DataError(f"{run_dir} is not a finished setforge run folder: no {REPORT_FILE}{hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
