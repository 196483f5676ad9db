"""What people read of a run: the summary that ``setforge run``, ``setforge demo`` and ``setforge
report`` print, from the run record (``report.json``, ``timings.json``; written by
`setforge.record`). The HTML page is `setforge.tools.report_html`; both end on the same headline
(`setforge.tools.headline`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..record import HTML_FILE, METRICS_CSV, METRICS_JSON, TIMINGS_FILE, dumps_json, read_report, write_text
from .headline import headline, measure_interval, measure_value
from .report_html import fmt, render_html

__all__ = ["render_html", "writing", "metrics_rows", "write_metrics", "format_summary", "count_table", "summarize_run_dir",
           "before_after", "change", "change_table"]


@contextlib.contextmanager
def writing(what: str, *paths: Path) -> Iterator[None]:
    """Around `write_text` calls of a command outside a run: a path that cannot be written is an
    `OutputError` naming it (exit 5), with none of `paths`' temporary files left behind."""
    try:
        yield
    except OSError as error:
        for path in paths:
            with contextlib.suppress(OSError):
                path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        failed = str(error.filename or paths[0]).removesuffix(".tmp")
        raise OutputError(f"{what} to {failed}: {error.strerror or error}", errno=error.errno) from error


def metrics_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every measure of a report as ``{"path", "value", "n", "std"}`` rows, sorted by path
    (``path`` is ``evaluator/...``, e.g. ``utility/optimised/macro_f1``)."""
    rows = []
    for evaluator, measures in sorted(report.get("metrics", {}).get("measures", {}).items()):
        for path, measure in sorted(measures.items()):
            rows.append({"path": f"{evaluator}/{path}", "value": measure.get("value"), "n": measure.get("n"),
                         "std": measure.get("std")})
    return rows


def write_metrics(folder: Path, report: Mapping[str, Any]) -> None:
    """``metrics.csv`` (columns path, value, n, std; an empty std cell where none was measured)
    and ``metrics.json`` (the same rows as a list) beside the report."""
    import csv
    import io

    rows = metrics_rows(report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["path", "value", "n", "std"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(Path(folder) / METRICS_CSV, buffer.getvalue())
    write_text(Path(folder) / METRICS_JSON, dumps_json(rows))


# ---------------------------------------------------------------------------- numbers
_fmt = fmt


def change(raw: float | None, opt: float | None) -> str:
    if raw is None or opt is None or not math.isfinite(raw) or not math.isfinite(opt):
        return ""
    delta = opt - raw
    if float(delta).is_integer() and (abs(delta) >= 2 or isinstance(raw, int) and isinstance(opt, int)):
        return f"{int(delta):+d}"  # counts, and numbers that are whole anyway
    return f"{delta:+.4g}" if delta != 0 and abs(delta) < 1e-3 else f"{delta:+.4f}"  # (as fmt: small ones in 4 digits)


def change_table(measures: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One evaluator's raw-vs-optimised table, ``(header, rows)``: each ``raw/X`` and ``optimised/X``
    (`before_after`), the change, and, in a column only where the evaluator recorded any, the
    interval of ``delta/X`` (``utility``'s paired bootstrap), the one that says if it is noise."""
    pairs = before_after(measures)
    rows: list[list[Any]] = [[name, _fmt(raw), _fmt(opt), change(raw, opt)] for name, raw, opt in pairs]
    intervals = [measure_interval(measures.get(f"delta/{name}")) for name, _, _ in pairs]
    if not any(intervals):
        return ["metric", "raw", "optimised", "change"], rows
    return (["metric", "raw", "optimised", "change", "interval of the change"],
            [row + ["" if i is None else f"{i[0]:+.4f} to {i[1]:+.4f}"] for row, i in zip(rows, intervals)])


def before_after(measures: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """``raw/X`` and ``optimised/X`` pairs of one evaluator (X a single segment), in a stable order."""
    names = sorted({p.split("/", 1)[1] for p in measures if p.startswith(("raw/", "optimised/")) and p.count("/") == 1})
    rows = []
    for name in names:
        raw, opt = measures.get(f"raw/{name}"), measures.get(f"optimised/{name}")
        if raw is not None and opt is not None:
            rows.append((name, measure_value(raw), measure_value(opt)))
    return rows


def count_table(classes: Sequence[str], columns: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Rows ``[class, n_col1, n_col2, ...]`` plus a total row, for counts keyed by class name."""
    rows = [[str(c)] + [str(int(col.get(c, 0))) for col in columns.values()] for c in classes]
    rows.append(["total"] + [str(sum(int(v) for v in col.values())) for col in columns.values()])
    return rows


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [line(header)] + [line(r) for r in rows]


# ---------------------------------------------------------------------------- summary
def format_summary(report: Mapping[str, Any], run_dir: Path | str, timings: Mapping[str, Any] | None = None) -> str:
    """What the command line prints after a run: counts per class before and after, each step,
    every evaluator's raw-vs-optimised numbers (``raw/X`` against ``optimised/X``) and tables."""
    lines = []
    took = f", {timings['total']:.1f} s" if timings and isinstance(timings.get("total"), (int, float)) else ""
    lines.append(f"setforge run -> {run_dir}  (seed {report.get('seed')}, device {report.get('device')}{took})")
    source = report.get("source", {})
    split = report.get("split", {})
    rows = split.get("rows", {})
    lines.append(f"source {source.get('name')}: {source.get('rows')} rows; split ({split.get('method')}): "
                 f"train {rows.get('train')} | val {rows.get('val')} | test {rows.get('test')}")
    extra = []
    dropped = source.get("dropped_invalid") or {}
    if dropped:
        extra.append("dropped invalid rows: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    if source.get("duplicates_dropped"):
        extra.append(f"{source.get('deduplicate', 'exact')} duplicates dropped: {source['duplicates_dropped']}")
    if split.get("leaked_dropped"):
        extra.append(f"training rows duplicating a test row dropped: {split['leaked_dropped']}")
    lines += [f"  {e}" for e in extra]
    classes = report.get("classes", [])
    counts = report.get("counts", {})
    if classes and counts:
        lines.append("")
        lines.append("training rows per class:")
        columns = {"raw": counts.get("raw_train", {}).get("by_class", {}),
                   "optimised": counts.get("optimised", {}).get("by_class", {})}
        lines += ["  " + ln for ln in _text_table(["class", "raw", "optimised"], count_table(classes, columns))]
    steps = report.get("steps", [])
    if steps:
        lines.append("")
        lines.append("steps:")
        for step in steps:
            by_origin = step.get("counts", {}).get("by_origin", {})
            origin_text = ", ".join(f"{k} {v}" for k, v in sorted(by_origin.items()) if v)
            line = f"  [{step['index']}] {step['kind']} {step['name']}: {step['rows_in']} -> {step['rows_out']} rows"
            if origin_text:
                line += f" ({origin_text})"
            if step.get("resumed"):
                line += " [resumed]"
            lines.append(line)
            if step.get("note"):
                lines.append(f"      {step['note']}")
            if isinstance(step.get("details", {}).get("summary"), str):
                lines.append(f"      {step['details']['summary']}")
    measures = report.get("metrics", {}).get("measures", {})
    for evaluator in sorted(measures):
        header, table = change_table(measures[evaluator])
        if not table:
            continue
        lines.append("")
        info = report.get("evaluators", {}).get(evaluator, {})
        detail = info.get("summary") or ""
        lines.append(f"{evaluator}" + (f" ({detail})" if detail else "") + ": raw training set vs optimised")
        lines += ["  " + ln for ln in _text_table(header, [[row[0].replace("_", " "), *row[1:]] for row in table])]
    tables = report.get("metrics", {}).get("tables", {})
    for evaluator in sorted(tables):
        for name, table in sorted(tables[evaluator].items()):
            lines.append("")
            lines.append(f"{evaluator}: {name}")
            lines += ["  " + ln for ln in _text_table(table["header"], table["rows"])]
    skipped = report.get("metrics", {}).get("skipped", {})
    for evaluator in sorted(skipped):
        for path, reason in sorted(skipped[evaluator].items()):
            lines.append(f"  skipped {evaluator}/{path}: {reason}")
    for warning in report.get("warnings", []):
        lines.append(f"warning: {warning}")
    head = headline(report)
    if head is not None:
        lines.append("")
        lines.append(f"headline: {head.text()}")
    lines.append("")
    lines.append(f"run folder: {run_dir} (report.json, report.html)")
    return "\n".join(lines)


def summarize_run_dir(run_dir: str | Path) -> str:
    """The summary of a finished run (what ``setforge report RUN_DIR`` prints); rewrites report.html."""
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    timings = None
    if (run_dir / TIMINGS_FILE).is_file():
        try:
            timings = json.loads((run_dir / TIMINGS_FILE).read_text(encoding="utf-8"))
        except ValueError:
            timings = None
        timings = timings if isinstance(timings, dict) else None  # (unreadable timings: the report without them)
    with writing("the report", *(run_dir / name for name in (METRICS_CSV, METRICS_JSON, HTML_FILE))):
        write_metrics(run_dir, report)
        write_text(run_dir / HTML_FILE, render_html(report, run_dir, timings))
    return format_summary(report, run_dir, timings)
