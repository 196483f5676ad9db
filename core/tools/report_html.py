"""``report.html``: one self-contained page a person reads first.

What it shows, top to bottom: the headline (raw against optimised on the real test split, and the
step that earned it), warnings, the run's facts, rows per class before and after (stacked by
origin), sample grids per class and origin, generated rows beside their nearest real row, the
steps with their training curves and last sample grid, the ablation chart, every metric with its
n and std, evaluator tables and figures, the resolved run file and versions.

Every image is embedded as base64 PNG data, nothing is fetched, and every string that comes from
data or config goes through ``html.escape``. Figures are drawn by `setforge.tools.plots`
(matplotlib, imported only here).
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .headline import headline, measure_value

__all__ = ["render_html"]

_GRID_COLUMNS = 8  # images per class in a sample grid
_GRID_CLASSES = 20  # classes shown in a sample grid (the first ones, in class order)
_PAIRS_PER_CLASS = 4  # generated rows shown beside their nearest real row, per class

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.5em;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child,td.t{text-align:left}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}
.headline{font-size:1.15em;padding:.8em 1em;border-radius:6px;background:#eef4fb;border-left:6px solid #4c72b0}
.headline.worse{background:#fdeeee;border-left-color:#c44e52}.headline.noise{background:#f6f6f6;border-left-color:#999}
.note{color:#a60}.skip{color:#888}figure{margin:.5em 0 1.5em}figcaption{color:#555;font-size:.9em}
img{max-width:100%;height:auto}table.facts td{text-align:left}table.facts td+td{word-break:break-all}img.pixels{image-rendering:pixelated}
details{margin:.5em 0 1em}summary{cursor:pointer;color:#245}"""


# ------------------------------------------------------------------------------ helpers
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number as the report prints it: whole numbers whole, others with `digits` decimals."""
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


def _is_number(value: Any) -> bool:
    try:
        float(str(value).replace("±", "").split()[0])
    except (ValueError, IndexError):
        return False
    return True


def _interval(interval: Any) -> str:
    if not isinstance(interval, Sequence) or isinstance(interval, str) or len(interval) != 2:
        return ""
    return f"[{fmt(measure_value({'value': interval[0]}))}, {fmt(measure_value({'value': interval[1]}))}]"


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" if _is_number(v) else f"<td class='t'>{_e(v)}</td>"
                                    for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, alt: str, caption: str, pixels: bool = False) -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = " class='pixels'" if pixels else ""
    return (f"<figure><img{cls} alt='{_e(alt)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _inside(folder: Path, relpath: str) -> Path | None:
    """`folder / relpath` when it is a file inside `folder` (paths come from report.json)."""
    if Path(relpath).is_absolute() or ".." in Path(relpath).parts:
        return None
    path = Path(folder) / relpath
    return path if path.is_file() else None


def _try(parts: list[str], title: str, build: Any) -> None:
    """Append a section; a figure that cannot be drawn becomes a note, never a failed report."""
    try:
        html_text = build()
    except Exception as error:  # noqa: BLE001 - a report must not fail a finished run
        parts.append(f"<p class='skip'>{_e(title)}: not drawn ({_e(type(error).__name__)}: {_e(error)})</p>")
        return
    if html_text:
        parts.append(html_text)


# ----------------------------------------------------------------------------- sections
def _headline_html(report: Mapping[str, Any]) -> str:
    head = headline(report)
    if head is None:
        return ("<p class='headline noise'>No <code>utility</code> evaluator ran, so this run does not say "
                "whether the optimised set trains a better model (add <code>utility</code> to "
                "<code>evaluate</code>).</p>")
    undecided = head.verdict == "within noise" or head.verdict.startswith("cannot judge")  # (one seed: no spread)
    cls = "worse" if head.worse else ("noise" if undecided else "")
    return f"<p class='headline {cls}'>{_e(head.text())}</p>"


def _facts(report: Mapping[str, Any], timings: Mapping[str, Any] | None) -> str:
    source, split = report.get("source", {}), report.get("split", {})
    rows = [["seed", report.get("seed")], ["device", report.get("device")],
            ["source", source.get("name")], ["rows read", source.get("rows")],
            ["split", split.get("method")],
            ["train / val / test", " / ".join(str(split.get("rows", {}).get(k)) for k in ("train", "val", "test"))],
            ["test split fingerprint", split.get("fingerprints", {}).get("test")]]
    for reason, n in sorted((source.get("dropped_invalid") or {}).items()):
        rows.append([f"dropped invalid: {reason}", n])
    if source.get("duplicates_dropped"):
        rows.append([f"{source.get('deduplicate', 'exact')} duplicates dropped", source["duplicates_dropped"]])
    if split.get("leaked_dropped"):
        rows.append(["training rows duplicating a test row dropped", split["leaked_dropped"]])
    if timings and isinstance(timings.get("total"), (int, float)):
        rows.append(["time (s)", fmt(float(timings["total"]), 3)])
    # left-aligned and wrapping, so a phone shows every value (the fingerprint is 64 characters)
    return _table(["", ""], rows).replace("<table>", "<table class='facts'>", 1)


def _class_counts(report: Mapping[str, Any]) -> str:
    from .report import count_table

    classes, counts = report.get("classes", []), report.get("counts", {})
    if not classes or not counts:
        return ""
    parts = ["<h2>Rows per class</h2>"]
    after = counts.get("optimised", {}).get("by_class_origin")
    if after:
        from .plots import class_distribution

        png = class_distribution(classes, counts.get("raw_train", {}).get("by_class", {}), after)
        parts.append(_img(png, "rows per class", "rows per class in the raw training split and in the optimised "
                                                  "training set, by origin"))
    columns = {"raw train": counts.get("raw_train", {}).get("by_class", {})}
    for step in report.get("steps", []):
        columns[f"after [{step['index']}] {step['name']}"] = step.get("counts", {}).get("by_class", {})
    columns["val"] = counts.get("val", {}).get("by_class", {})
    columns["test"] = counts.get("test", {}).get("by_class", {})
    parts.append(_table(["class", *columns], count_table(classes, columns)))
    by_origin = counts.get("optimised", {}).get("by_origin", {})
    if by_origin:
        parts.append(_table(["origin (optimised set)", "rows"], sorted(by_origin.items())))
    return "\n".join(parts)


def _spread(index: Any, k: int) -> Any:
    """At most `k` entries of `index`, evenly spaced (deterministic, first and last included)."""
    import torch

    if len(index) <= k:
        return index
    return index[torch.linspace(0, len(index) - 1, k).round().long()]


def _sample_grids(report: Mapping[str, Any], train: Any) -> str:
    import torch

    from ..dataset import Origin
    from .plots import image_grid

    classes = list(train.classes)[:_GRID_CLASSES]
    x, y, origin = train.x, train.y.cpu(), train.origin.cpu()
    blank = torch.ones_like(x[:1])
    parts = ["<h2>Samples by class and origin</h2>",
             f"<p>Each row is one class ({_e(', '.join(map(str, classes)))}"
             f"{' …' if train.num_classes > len(classes) else ''}), up to {_GRID_COLUMNS} rows each, "
             "spread evenly over the rows of that class and origin.</p>"]
    for o in Origin:
        mask = origin == int(o)
        if not bool(mask.any()):
            continue
        cells = []
        for c in range(len(classes)):
            index = _spread(torch.nonzero(mask & (y == c)).flatten(), _GRID_COLUMNS)
            picked = x[index.to(x.device)] if len(index) else x[:0]
            cells.append(torch.cat([picked, blank.expand(_GRID_COLUMNS - len(picked), *x.shape[1:])]))
        png = image_grid(torch.cat(cells), nrow=_GRID_COLUMNS, row_labels=[str(c) for c in classes])
        parts.append(_img(png, f"{o.label} samples", f"{o.label} rows ({int(mask.sum())} in all); a blank row: "
                                                    f"no {o.label} rows of that class", pixels=True))
    return "\n".join(parts)


def _nearest_pairs(train: Any) -> str:
    """Generated rows beside their nearest real training row of the same class (pixel distance):
    a generator that copies its training data shows twins here."""
    import torch

    from ..dataset import Origin
    from .plots import image_grid

    y, origin = train.y.cpu(), train.origin.cpu()
    generated = origin == int(Origin.GENERATED)
    if not bool(generated.any()):
        return ""
    flat = train.x.flatten(1).float()
    cells, distances = [], []
    for c in range(train.num_classes):
        fakes = _spread(torch.nonzero(generated & (y == c)).flatten(), _PAIRS_PER_CLASS)
        reals = torch.nonzero((origin == int(Origin.REAL)) & (y == c)).flatten()
        if len(fakes) == 0 or len(reals) == 0:
            continue
        d = torch.cdist(flat[fakes.to(flat.device)], flat[reals.to(flat.device)])
        best, where = d.min(dim=1)
        for fake, real, dist in zip(fakes.tolist(), reals[where.cpu()].tolist(), best.tolist()):
            cells += [train.x[fake], train.x[real]]
            distances.append(dist)
    if not cells:
        return ""
    png = image_grid(torch.stack(cells), nrow=2 * _PAIRS_PER_CLASS)
    caption = (f"generated row (left of each pair) and the nearest real training row of its class (right), "
               f"up to {_PAIRS_PER_CLASS} per class; pixel L2 distance median {statistics.median(distances):.3f}")
    return "<h2>Generated rows and their nearest real rows</h2>" + _img(png, "nearest real pairs", caption, pixels=True)


def _training(folder: Path | None, step: Mapping[str, Any]) -> str:
    """A generate step's loss curves and checkpoint-selection curve (``step["training"]``, recorded
    by the host from ``train_progress`` events) and its last sample grid (from the step folder)."""
    from .plots import line_chart

    parts = []
    log = step.get("training_log") or {}
    iterations, losses = log.get("iterations") or [], log.get("losses") or {}
    if iterations and losses:
        series = {name: (iterations, values) for name, values in sorted(losses.items()) if len(values) == len(iterations)}
        if series:
            parts.append(_img(line_chart(series, f"[{step['index']}] {step['name']}: training losses", "iteration", "loss"),
                              "losses", f"step [{step['index']}] {step['name']}: losses over training"))
    # the generator's own training report: the quality monitor's curve (Frechet distance to the
    # real val split at each checkpoint) and the checkpoint it chose
    training = step.get("training") or {}
    curve = [c for c in training.get("curve") or [] if isinstance(c, Mapping) and c.get("fd") is not None]
    sel_it, sel_values = [c["iteration"] for c in curve], [c["fd"] for c in curve]
    if sel_it:
        chosen = training.get("chosen_iteration")
        mark = None if chosen is None else (float(chosen), f"chosen: {chosen}")
        metric = "Frechet distance to the real val split"
        parts.append(_img(line_chart({metric: (sel_it, sel_values)}, f"[{step['index']}] checkpoint selection",
                                     "iteration", metric, mark=mark),
                          "selection", f"step [{step['index']}] {step['name']}: {metric} at each checkpoint"))
    if folder is not None:
        step_dir = Path(folder) / "steps"
        if step_dir.is_dir():
            prefix = f"{int(step['index']):02d}-"
            grids = sorted(p for d in step_dir.iterdir() if d.is_dir() and d.name.startswith(prefix)
                           for p in d.glob("samples-*.png"))
            if grids:
                parts.append(f"<p>{len(grids)} sample grid{'s' if len(grids) != 1 else ''} written during training; "
                             "the last one:</p>")
                parts.append(_img(grids[-1].read_bytes(), "training samples",
                                  f"step [{step['index']}] {step['name']}: {grids[-1].name}", pixels=True))
    return "\n".join(parts)


def _guard_text(guard: Any) -> str | None:
    """A generate step's guard in words (``report.json`` ``steps[i].guard``)."""
    if not isinstance(guard, Mapping) or guard.get("generated") is None:
        return None
    verdict = "passed" if guard.get("passed") else "FAILED (warned)"
    ratio = "none: its judge learnt nothing" if guard.get("ratio") is None else f"{guard['ratio']:.2f}"
    return (f"guard {verdict}: generated rows agree with their class {guard['generated']:.3f} vs real val recall "
            f"{guard['reference']:.3f} (ratio {ratio}, min {guard['min_cas_ratio']})")


def _steps(report: Mapping[str, Any], folder: Path | None) -> str:
    steps = report.get("steps", [])
    if not steps:
        return ""
    rows = [[s["index"], s["kind"], s["name"], json.dumps(s.get("params", {}), sort_keys=True), s["rows_in"],
             s["rows_out"], "; ".join(t for t in (s.get("note"), (s.get("details") or {}).get("summary"),
                                                 _guard_text(s.get("guard")),
                                                 ((s.get("training") or {}).get("budget") or {}).get("rule"))
                                if isinstance(t, str) and t)]
            for s in steps]
    parts = ["<h2>Steps</h2>", _table(["#", "kind", "component", "params", "rows in", "rows out", "note"], rows)]
    for step in steps:
        if folder is not None:  # what a step shows of itself (a quality gate's rejected rows)
            for name, relpath in sorted((step.get("figures") or {}).items()):
                path = _inside(folder, relpath)
                if path is not None:
                    parts.append(_img(path.read_bytes(), name, f"step [{step['index']}] {step['name']}: {name}",
                                      pixels=True))
        _try(parts, f"training of step [{step['index']}]", lambda step=step: _training(folder, step))
    return "\n".join(parts)


def _ablation(report: Mapping[str, Any]) -> str:
    from .plots import ablation_chart

    measures = report.get("metrics", {}).get("measures", {})
    parts = []
    for evaluator, info in sorted(report.get("evaluators", {}).items()):
        # an evaluator that scores cumulative pipeline prefixes reports cumulative/<k>/<score>
        score = str(info.get("params", {}).get("score", "balanced_accuracy"))
        points = []
        for path, measure in measures.get(evaluator, {}).items():
            bits = path.split("/")
            if len(bits) == 3 and bits[0] == "cumulative" and bits[2] == score:
                points.append((bits[1], measure_value(measure), measure.get("std") or 0.0))
        points = [p for p in points if p[1] is not None]
        if len(points) < 2:
            continue
        # in pipeline order (10 after 9), labelled as the ablation table labels them: cumulative/0 is
        # the raw set, cumulative/k the set after step k - 1
        points.sort(key=lambda p: (int(p[0]) if p[0].isdigit() else -1, p[0]))
        names = {int(step["index"]): str(step["name"]) for step in report.get("steps", [])}
        labels = ["raw" if k == "0" else f"{int(k) - 1}-{names.get(int(k) - 1, '?')}" if k.isdigit() else k
                  for k, _, _ in points]
        png = ablation_chart(labels, [p[1] for p in points], [float(p[2]) for p in points], score)
        parts.append(_img(png, f"{evaluator}-cumulative", f"{evaluator}: {score.replace('_', ' ')} after each "
                                                          "cumulative pipeline prefix, mean ± std over seeds"))
    return "<h2>Ablation</h2>" + "\n".join(parts) if parts else ""


def _metrics(report: Mapping[str, Any], folder: Path | None) -> str:
    from .report import change_table

    metrics = report.get("metrics", {})
    measures, tables = metrics.get("measures", {}), metrics.get("tables", {})
    parts = ["<h2>Metrics</h2>"] if measures or tables else []
    for evaluator in sorted(set(measures) | set(tables)):
        detail = report.get("evaluators", {}).get(evaluator, {}).get("summary") or ""
        parts.append(f"<h3>{_e(evaluator)}</h3>" + (f"<p>{_e(detail)}</p>" if detail else ""))
        for name, table in sorted(tables.get(evaluator, {}).items()):
            parts.append(f"<h4>{_e(evaluator)}: {_e(name)}</h4>" + _table(table.get("header", []), table.get("rows", [])))
        header, changes = change_table(measures.get(evaluator, {}))
        if changes:
            parts.append(_table(header, changes))
        rows = [[path, fmt(measure_value(m)), m.get("n"), "" if m.get("std") is None else fmt(m.get("std")),
                 _interval(m.get("interval")), m.get("estimator") or ""]
                for path, m in sorted(measures.get(evaluator, {}).items())]
        if rows:
            parts.append(f"<details><summary>all {len(rows)} numbers of {_e(evaluator)} (value, n, std, interval, "
                         "estimator)</summary>"
                         + _table(["path", "value", "n", "std", "interval", "estimator"], rows) + "</details>")
    skipped = metrics.get("skipped", {})
    if skipped:
        parts.append("<h3>Not computed</h3>")
        parts.append(_table(["metric", "reason"], [[f"{ev}/{p}", r] for ev in sorted(skipped)
                                                    for p, r in sorted(skipped[ev].items())]))
    figures = metrics.get("figures", {})
    if figures and folder is not None:
        shown = []
        for evaluator in sorted(figures):
            for name, relpath in sorted(figures[evaluator].items()):
                path = _inside(Path(folder), relpath)
                if path is not None:
                    shown.append(_img(path.read_bytes(), name, f"{evaluator}: {name}", pixels=True))
        if shown:
            parts.append("<h2>Evaluator figures</h2>" + "\n".join(shown))
    return "\n".join(parts)


def _load_train(report: Mapping[str, Any], folder: Path | None, train: Any) -> Any:
    if train is not None or folder is None or report.get("modality") != "image" or report.get("stream"):
        return train  # a streamed training set is not read back whole for its sample grids
    from ..output import load

    return load(folder, "train")


# --------------------------------------------------------------------------------- page
def render_html(report: Mapping[str, Any], folder: Path | None = None, timings: Mapping[str, Any] | None = None,
                train: Any = None) -> str:
    """The report as one self-contained HTML page.

    `folder` is the run folder (figures, step folders and, for image data, the optimised training
    set are read from it); `train` may pass the optimised training set in memory instead.
    """
    folder = None if folder is None else Path(folder)
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>setforge report: {_e(report.get('source', {}).get('name', ''))}</title>",
             f"<style>{_CSS}</style></head><body>", "<h1>setforge report</h1>", _headline_html(report)]
    warnings = report.get("warnings", [])
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='note'>{_e(w)}</li>" for w in warnings) + "</ul>")
    parts.append(_facts(report, timings))
    _try(parts, "rows per class", lambda: _class_counts(report))
    if report.get("modality") == "image":
        holder: dict[str, Any] = {}

        def loaded() -> Any:
            if "train" not in holder:
                holder["train"] = _load_train(report, folder, train)
            return holder["train"]

        _try(parts, "sample grids", lambda: loaded() is not None and _sample_grids(report, loaded()))
        _try(parts, "nearest real pairs", lambda: loaded() is not None and _nearest_pairs(loaded()))
    parts.append(_steps(report, folder))
    _try(parts, "ablation chart", lambda: _ablation(report))
    parts.append(_metrics(report, folder))
    parts.append("<h2>Run file (resolved)</h2>")
    parts.append(f"<pre>{_e(json.dumps(report.get('config', {}), indent=2, sort_keys=True))}</pre>")
    parts.append("<h2>Versions</h2>")
    parts.append(_table(["package", "version"], sorted(report.get("versions", {}).items())))
    components = report.get("components", [])
    if components:
        parts.append(_table(["kind", "name", "plugin", "distribution", "version"],
                            [[c.get("kind"), c.get("name"), c.get("plugin"), c.get("distribution"),
                              c.get("version")] for c in components]))
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)
