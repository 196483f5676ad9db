"""What people read of a run: ``report.html`` and the summary that ``setforge run``, ``setforge
demo`` and ``setforge report`` print, both from the run record (``report.json``, ``timings.json``;
written by `setforge.record`).

Every string that reaches the HTML page (class names, config values, metric paths, messages) goes
through ``html.escape``; figures are embedded as base64 PNG data, never as paths from data.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..record import HTML_FILE, TIMINGS_FILE, read_report, write_text

__all__ = ["render_html", "format_summary", "count_table", "summarize_run_dir"]


# ---------------------------------------------------------------------------- numbers
def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) >= 2:  # row counts and ratios like 10x read better whole
            return str(int(value))
        return f"{value:.{digits}g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else f"{value:.{digits}f}"
    return str(value)


def _measure_value(measure: Any) -> float | None:
    if not isinstance(measure, Mapping):
        return None
    value = measure.get("value")
    if isinstance(value, str):  # non-finite numbers are stored as strings
        try:
            return float(value)
        except ValueError:
            return None
    return None if value is None else float(value)


def _change(raw: float | None, opt: float | None) -> str:
    if raw is None or opt is None or not math.isfinite(raw) or not math.isfinite(opt):
        return ""
    delta = opt - raw
    return f"{int(delta):+d}" if delta.is_integer() and abs(delta) >= 2 else f"{delta:+.4f}"


def _before_after(measures: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """``raw/X`` and ``optimised/X`` pairs of one evaluator (X a single segment), in a stable order."""
    names = sorted({p.split("/", 1)[1] for p in measures if p.startswith(("raw/", "optimised/")) and p.count("/") == 1})
    rows = []
    for name in names:
        raw, opt = measures.get(f"raw/{name}"), measures.get(f"optimised/{name}")
        if raw is not None and opt is not None:
            rows.append((name, _measure_value(raw), _measure_value(opt)))
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
    and every evaluator's raw-vs-optimised numbers (``raw/X`` against ``optimised/X``)."""
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
    measures = report.get("metrics", {}).get("measures", {})
    for evaluator in sorted(measures):
        pairs = _before_after(measures[evaluator])
        if not pairs:
            continue
        lines.append("")
        info = report.get("evaluators", {}).get(evaluator, {})
        detail = info.get("summary") or ""
        lines.append(f"{evaluator}" + (f" ({detail})" if detail else "") + ": raw training set vs optimised")
        table = []
        for name, raw, opt in pairs:
            table.append([name.replace("_", " "), _fmt(raw), _fmt(opt), _change(raw, opt)])
        lines += ["  " + ln for ln in _text_table(["metric", "raw", "optimised", "change"], table)]
    skipped = report.get("metrics", {}).get("skipped", {})
    for evaluator in sorted(skipped):
        for path, reason in sorted(skipped[evaluator].items()):
            lines.append(f"  skipped {evaluator}/{path}: {reason}")
    for warning in report.get("warnings", []):
        lines.append(f"warning: {warning}")
    lines.append("")
    lines.append(f"run folder: {run_dir} (report.json, report.html)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- html
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:1em;overflow:auto}
.note{color:#a60}.skip{color:#888}img{max-width:100%;image-rendering:pixelated}"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: Mapping[str, Any], folder: Path | None = None, timings: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page (figures embedded from `folder`)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>setforge report</title>",
             f"<style>{_CSS}</style></head><body>", "<h1>setforge report</h1>"]
    source, split = report.get("source", {}), report.get("split", {})
    info_rows = [["seed", report.get("seed")], ["device", report.get("device")],
                 ["source", source.get("name")], ["rows read", source.get("rows")],
                 ["split", split.get("method")],
                 ["train / val / test", " / ".join(str(split.get("rows", {}).get(k)) for k in ("train", "val", "test"))],
                 ["test split fingerprint", split.get("fingerprints", {}).get("test")]]
    for reason, n in sorted((source.get("dropped_invalid") or {}).items()):
        info_rows.append([f"dropped invalid: {reason}", n])
    if source.get("duplicates_dropped"):
        info_rows.append([f"{source.get('deduplicate', 'exact')} duplicates dropped", source["duplicates_dropped"]])
    if split.get("leaked_dropped"):
        info_rows.append(["training rows duplicating a test row dropped", split["leaked_dropped"]])
    if timings and "total" in timings:
        info_rows.append(["time (s)", _fmt(float(timings["total"]), 3)])
    parts.append(_html_table(["", ""], info_rows))

    classes = report.get("classes", [])
    counts = report.get("counts", {})
    if classes and counts:
        parts.append("<h2>Rows per class</h2>")
        columns = {"raw train": counts.get("raw_train", {}).get("by_class", {})}
        for step in report.get("steps", []):
            columns[f"after [{step['index']}] {step['name']}"] = step.get("counts", {}).get("by_class", {})
        columns["val"] = counts.get("val", {}).get("by_class", {})
        columns["test"] = counts.get("test", {}).get("by_class", {})
        parts.append(_html_table(["class", *columns], count_table(classes, columns)))
        by_origin = counts.get("optimised", {}).get("by_origin", {})
        if by_origin:
            parts.append("<h3>Optimised training set by origin</h3>")
            parts.append(_html_table(["origin", "rows"], sorted(by_origin.items())))

    steps = report.get("steps", [])
    if steps:
        parts.append("<h2>Steps</h2>")
        rows = [[s["index"], s["kind"], s["name"], json.dumps(s.get("params", {}), sort_keys=True), s["rows_in"],
                 s["rows_out"], s.get("note") or ""] for s in steps]
        parts.append(_html_table(["#", "kind", "component", "params", "rows in", "rows out", "note"], rows))

    metrics = report.get("metrics", {})
    measures = metrics.get("measures", {})
    if measures:
        parts.append("<h2>Metrics</h2>")
    for evaluator in sorted(measures):
        parts.append(f"<h3>{_e(evaluator)}</h3>")
        pairs = _before_after(measures[evaluator])
        if pairs:
            parts.append(_html_table(["metric", "raw", "optimised", "change"],
                                     [[n, _fmt(r), _fmt(o), _change(r, o)] for n, r, o in pairs]))
        rows = [[path, _fmt(m.get("value")), m.get("n"), "" if m.get("std") is None else _fmt(m.get("std"))]
                for path, m in sorted(measures[evaluator].items())]
        parts.append(_html_table(["path", "value", "n", "std"], rows))
    skipped = metrics.get("skipped", {})
    if skipped:
        parts.append("<h3>Not computed</h3>")
        parts.append(_html_table(["metric", "reason"], [[f"{ev}/{p}", r] for ev in sorted(skipped)
                                                          for p, r in sorted(skipped[ev].items())]))
    figures = metrics.get("figures", {})
    if figures and folder is not None:
        parts.append("<h2>Figures</h2>")
        for evaluator in sorted(figures):
            for name, relpath in sorted(figures[evaluator].items()):
                path = Path(folder) / relpath
                if not path.is_file() or Path(relpath).is_absolute() or ".." in Path(relpath).parts:
                    continue
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append(f"<figure><img alt='{_e(name)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{_e(evaluator)}: {_e(name)}</figcaption></figure>")
    warnings = report.get("warnings", [])
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='note'>{_e(w)}</li>" for w in warnings) + "</ul>")
    parts.append("<h2>Run file (resolved)</h2>")
    parts.append(f"<pre>{_e(json.dumps(report.get('config', {}), indent=2, sort_keys=True))}</pre>")
    parts.append("<h2>Versions</h2>")
    parts.append(_html_table(["package", "version"], sorted(report.get("versions", {}).items())))
    components = report.get("components", [])
    if components:
        parts.append(_html_table(["kind", "name", "plugin", "distribution", "version"],
                                 [[c.get("kind"), c.get("name"), c.get("plugin"), c.get("distribution"),
                                   c.get("version")] for c in components]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


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
    write_text(run_dir / HTML_FILE, render_html(report, run_dir, timings))
    return format_summary(report, run_dir, timings)
