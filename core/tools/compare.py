"""``setforge compare RUN_A RUN_B [...]``: finished runs side by side, for the question "did changing
one word help?" — the run-file values that differ, the rows per class, every metric the runs share
(with n and std) and, against the first run, which is better.

"Better" needs a direction, and the evaluator that recorded a number declares it
(``Metrics.add(..., better="higher" | "lower")``, stored as the measure's ``better``); a number
without one (counts, or runs recorded before directions were) gets no verdict, nor does a number
that is not one (NaN, stored as a string). Where the evaluator
can pair the two runs on the same rows (``Evaluator.compare_runs``: ``utility`` pairs its models on
the same test rows and seeds), the difference's interval decides: better or worse when it excludes
0, else "within noise". Elsewhere a difference within the larger of the two standard deviations is
"within noise"; with no std recorded (one seed) the verdict says so. The std covers the seeds
only, not which rows the test split holds: the paired verdict is the one to trust.

Run-file values are compared resolved: ``report.json`` keeps component params as given, so a param
one run leaves unset is read from the component's ``Params`` defaults (or shown as ``default`` when
the plugin is not installed here).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..context import interval_verdict
from ..errors import ConfigError
from ..output import _safe_part
from ..record import read_report, write_text
from .headline import headline, measure_value
from .report import writing

__all__ = ["compare_runs", "direction", "format_comparison", "comparison_html"]

def direction(measure: Mapping[str, Any]) -> int:
    """+1 when a higher value of the stored `measure` is better, -1 when lower is, 0 when its
    evaluator did not say."""
    return {"higher": 1, "lower": -1}.get(measure.get("better") if isinstance(measure, Mapping) else None, 0)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(_flat(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, (Mapping, list)) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(_flat(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _judgeable(a: float | None, b: float | None, sign: int) -> bool:
    # (a number stored as "nan" is no number: neither better nor worse than another)
    return a is not None and b is not None and sign != 0 and not math.isnan(a) and not math.isnan(b)


def _verdict(base: Mapping[str, Any], other: Mapping[str, Any], sign: int) -> str:
    a, b = measure_value(base), measure_value(other)
    if not _judgeable(a, b, sign):
        return ""
    if a == b:
        return "same"
    stds = [float(m["std"]) for m in (base, other) if m.get("std") is not None]
    better = (b - a) * sign > 0
    word = "better" if better else "worse"
    if not stds:
        return f"{word} (no spread)"
    return "within noise" if abs(b - a) <= max(stds) else word


def _paired_verdict(base: Mapping[str, Any], other: Mapping[str, Any], paired: Mapping[str, Any], sign: int) -> str:
    """The verdict of an evaluator's paired comparison (`Evaluator.compare_runs`): by its interval."""
    a, b = measure_value(base), measure_value(other)
    if not _judgeable(a, b, sign):
        return ""
    if a == b:
        return "same"
    low, high = (float(v) for v in paired["interval"])
    lower, upper = sorted((low * sign, high * sign))  # (the change in the better direction: higher, or lower)
    word = interval_verdict((lower, upper))
    return f"{word} (paired: {low:+.4f} to {high:+.4f})"


def _paired(run_dirs: Sequence[str | Path], reports: Sequence[Mapping[str, Any]], registry: Any,
            warnings: list[str]) -> list[dict[str, Mapping[str, Any]]]:
    """For each run after the first, ``{flat metric path: paired result}`` from every evaluator that
    ran under the same scope and name in both and pairs runs (`Evaluator.compare_runs`, given each
    run's folder of that evaluator). An evaluator not installed here pairs nothing; one that fails
    is named in `warnings`."""
    out: list[dict[str, Mapping[str, Any]]] = [{} for _ in run_dirs[1:]]
    for scope, entry in reports[0].get("evaluators", {}).items():
        name = entry.get("name") if isinstance(entry, Mapping) else None
        try:
            cls = registry.get("evaluate", name).cls
        except Exception:  # noqa: BLE001 (not installed here: its std verdicts stand)
            continue
        for i, (run, report) in enumerate(zip(run_dirs[1:], reports[1:])):
            if (report.get("evaluators", {}).get(scope) or {}).get("name") != name:
                continue
            try:
                found = cls.compare_runs(Path(run_dirs[0]) / "evaluate" / _safe_part(scope),
                                         Path(run) / "evaluate" / _safe_part(scope))
                out[i].update({f"{scope}/{path}": result for path, result in found.items()
                               if len(result.get("interval") or ()) == 2})
            except Exception as error:  # noqa: BLE001 (a plugin's failure costs its paired verdicts only)
                warnings.append(f"evaluator {name!r} could not pair {run_dirs[0]} with {run}: {error}")
    return out


def _applicable(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """`config` with each step's keys cut to those of its kind: ``report.json`` records every step
    field with its default (``guard`` on a resample step), which would read as a difference."""
    from ..steps import HOST_KEYS

    if not isinstance(config, Mapping) or not isinstance(config.get("pipeline"), list):
        return config
    steps = []
    for step in config["pipeline"]:
        kind = next((k for k in HOST_KEYS if isinstance(step, Mapping) and step.get(k) is not None), None)
        steps.append(step if kind is None else {k: v for k, v in step.items()
                                                if k in (kind, "params", *HOST_KEYS[kind])})
    return {**config, "pipeline": steps}


def _components(config: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(flat path of its params, kind, params)`` of every component a recorded `config` names:
    the source, preprocessors, steps (each augmenter of a chain), evaluators and observers."""
    from ..steps import HOST_KEYS

    found = []
    listed = lambda key: enumerate(v if isinstance(v := config.get(key), list) else [])  # noqa: E731

    def add(path: str, kind: str, ref: Any) -> None:
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            found.append((f"{path}.params", kind, ref))

    add("source", "source", config.get("source"))
    for key in ("preprocess", "evaluate", "observe"):
        for i, ref in listed(key):
            add(f"{key}[{i}]", key, ref)
    for i, step in listed("pipeline"):
        kind = next((k for k in HOST_KEYS if isinstance(step, Mapping) and step.get(k) is not None), None)
        if kind is not None and isinstance(step[kind], str):
            add(f"pipeline[{i}]", kind, {"name": step[kind], "params": step.get("params")})
        elif kind is not None and isinstance(step[kind], list):  # a chain: each augmenter with its own params
            for j, ref in enumerate(step[kind]):
                add(f"pipeline[{i}].{kind}[{j}]", kind, ref)
    return found


def _resolve(configs: list[Mapping[str, Any]], registry: Any) -> tuple[list[dict[str, Any]], list[set[str]]]:
    """`configs` flattened, each component's params completed with the defaults of its ``Params``
    (report.json records params as given) for the keys another run gives at the same place, so
    that ``k_neighbors: auto`` against an unset one reads as against 5, not null; with the flat
    keys per config whose default is unknown (the plugin is not installed here, or its Params
    no longer take the recorded ones)."""
    found = [{path: (kind, ref) for path, kind, ref in _components(c)} for c in configs]
    given: dict[str, set[str]] = {}
    for components in found:
        for path, (_, ref) in components.items():
            given.setdefault(path, set()).update(ref.get("params") or {})
    flats, unknown = [], []
    for config, components in zip(configs, found):
        flat, missing = _flat(config), set()
        for path, (kind, ref) in components.items():
            params = dict(ref.get("params") or {})
            wanted = [k for k in sorted(given[path]) if k not in params]
            if not wanted:
                continue
            try:
                defaults = registry.get(kind, ref["name"]).cls.Params(**params).model_dump(mode="json")
            except Exception:  # noqa: BLE001 (not installed here, or params this version refuses)
                missing.update(f"{path}.{k}" for k in wanted)
                continue
            flat.update(_flat({k: defaults[k] for k in wanted if k in defaults}, path))
        flats.append(flat)
        unknown.append(missing)
    return flats, unknown


def _differs(key: str, configs: Sequence[Mapping[str, Any]], unknown: Sequence[set[str]]) -> bool:
    """Whether `key` differs between the flat `configs`: a key one config lacks reads as null or
    [] (a list left empty, the default of every run-file list, beside another run's items, which
    their own ``[i]`` keys compare), and a default not known here as itself."""
    seen = set()
    for config, missing in zip(configs, unknown):
        if key in missing:
            seen.add("default")
        elif key in config:
            seen.add(json.dumps(config[key], sort_keys=True))
    absent = any(key not in c and key not in m for c, m in zip(configs, unknown))
    return len(seen) > 1 or (absent and not seen <= {"null", "[]"})


def _shown(difference: Mapping[str, Any]) -> list[str]:
    """The values of a config difference as printed: JSON, or ``default`` where it is not known."""
    defaults = difference.get("default") or [False] * len(difference["values"])
    return ["default" if d else json.dumps(v) for v, d in zip(difference["values"], defaults)]


def compare_runs(run_dirs: Sequence[str | Path], registry: Any = None) -> dict[str, Any]:
    """The comparison as plain data: runs, config differences, counts, shared metrics, verdicts
    of every run against the first. A config difference's ``values`` are resolved: a component
    param one run leaves unset is its default, from the component's ``Params`` in `registry`
    (the installed plugins by default); where that is not known its ``default`` flag is true."""
    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two run folders")
    reports = [read_report(d) for d in run_dirs]
    names = [str(d) for d in run_dirs]
    if registry is None:
        from ..registry import default_registry

        registry = default_registry()
    configs, unknown = _resolve([_applicable(r.get("config", {})) for r in reports], registry)
    keys = sorted(set().union(*configs, *unknown))
    config_diff = [{"key": k, "values": [c.get(k) for c in configs], "default": [k in m for m in unknown]}
                   for k in keys if _differs(k, configs, unknown)]
    classes = list(dict.fromkeys(c for r in reports for c in r.get("classes", [])))
    counts = {c: [r.get("counts", {}).get("optimised", {}).get("by_class", {}).get(c) for r in reports]
              for c in classes}
    totals = [r.get("counts", {}).get("optimised", {}).get("rows") for r in reports]
    flat_measures = [{f"{ev}/{p}": m for ev, ms in r.get("metrics", {}).get("measures", {}).items()
                      for p, m in ms.items()} for r in reports]
    shared = sorted(set(flat_measures[0]).intersection(*flat_measures[1:]))
    tests = {r.get("split", {}).get("fingerprints", {}).get("test") for r in reports} - {None}
    warnings = [f"the runs were measured on {len(tests)} different test splits (another seed, split or source): a metric "
                f"that differs may differ by its test rows, not by the change"] if len(tests) > 1 else []
    paired = _paired(run_dirs, reports, registry, warnings)
    metrics = []
    for path in shared:
        signs = {direction(fm[path]) for fm in flat_measures}
        sign = signs.pop() if len(signs) == 1 else 0  # runs that disagree on the direction get no verdict
        row = {"path": path, "direction": sign,
               "values": [{"value": measure_value(fm[path]), "n": fm[path].get("n"), "std": fm[path].get("std")}
                          for fm in flat_measures],
               "verdicts": [_paired_verdict(flat_measures[0][path], fm[path], pairs[path], sign) if path in pairs
                            else _verdict(flat_measures[0][path], fm[path], sign)
                            for fm, pairs in zip(flat_measures[1:], paired)],
               "paired": [pairs.get(path) for pairs in paired]}
        metrics.append(row)
    heads = [headline(r) for r in reports]
    return {"runs": names, "config_differences": config_diff, "classes": classes, "counts": counts,
            "total_rows": totals, "metrics": metrics, "warnings": warnings,
            "headlines": [None if h is None else h.text() for h in heads]}


def _cell(value: Mapping[str, Any]) -> str:
    if value["value"] is None:
        return "-"
    text = f"{value['value']:.4f}" if abs(value["value"]) < 1e4 else f"{value['value']:.4g}"
    if value.get("std") is not None:
        text += f" ± {float(value['std']):.4f}"
    return text


def _rows(comparison: Mapping[str, Any], only_verdicts: bool) -> list[list[str]]:
    rows = []
    for m in comparison["metrics"]:
        if only_verdicts and m["direction"] == 0:
            continue
        rows.append([m["path"], *[_cell(v) for v in m["values"]], *m["verdicts"]])
    return rows


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]


def format_comparison(comparison: Mapping[str, Any], all_metrics: bool = False) -> str:
    """What ``setforge compare`` prints: config differences, rows per class, and the shared
    metrics that have a direction (every shared metric with `all_metrics`)."""
    runs = comparison["runs"]
    labels = [f"[{i}]" for i in range(len(runs))]
    lines = ["runs:"] + [f"  {label} {run}" for label, run in zip(labels, runs)]
    lines += [f"warning: {w}" for w in comparison.get("warnings", [])]
    lines.append("")
    if comparison["config_differences"]:
        lines.append("run-file values that differ:")
        rows = [[d["key"], *_shown(d)] for d in comparison["config_differences"]]
        lines += ["  " + ln for ln in _text_table(["key", *labels], rows)]
    else:
        lines.append("the run files are the same")
    lines.append("")
    lines.append("optimised training rows per class:")
    rows = [[str(c), *["-" if n is None else str(n) for n in ns]] for c, ns in comparison["counts"].items()]
    rows.append(["total", *["-" if n is None else str(n) for n in comparison["total_rows"]]])
    lines += ["  " + ln for ln in _text_table(["class", *labels], rows)]
    lines.append("")
    verdict_labels = [f"{label} vs [0]" for label in labels[1:]]
    rows = _rows(comparison, only_verdicts=not all_metrics)
    if rows:
        what = "shared metrics" if all_metrics else "shared metrics with a direction (--all for every one)"
        lines.append(f"{what}:")
        lines += ["  " + ln for ln in _text_table(["metric", *labels, *verdict_labels], rows)]
    else:
        lines.append("the runs share no metric")
    for label, head in zip(labels, comparison["headlines"]):
        if head:
            lines.append(f"headline {label}: {head}")
    return "\n".join(lines)


def comparison_html(comparison: Mapping[str, Any]) -> str:
    """The comparison as a self-contained HTML page (every string escaped)."""
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    labels = [f"[{i}]" for i in range(len(comparison["runs"]))]

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'><title>setforge compare</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em;display:block;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}th{background:#f3f3f3}</style></head><body>",
             "<h1>setforge compare</h1>",
             "<ul>" + "".join(f"<li>{e(label)} {e(run)}</li>" for label, run in zip(labels, comparison["runs"])) + "</ul>"]
    parts += [f"<p><b>warning:</b> {e(w)}</p>" for w in comparison.get("warnings", [])]
    for label, head in zip(labels, comparison["headlines"]):
        if head:
            parts.append(f"<p><b>{e(label)}</b> {e(head)}</p>")
    parts.append("<h2>Run-file values that differ</h2>")
    parts.append(table(["key", *labels], [[d["key"], *_shown(d)] for d in comparison["config_differences"]]))
    parts.append("<h2>Optimised training rows per class</h2>")
    parts.append(table(["class", *labels], [[c, *["-" if n is None else n for n in ns]]
                                            for c, ns in comparison["counts"].items()]))
    parts.append("<h2>Shared metrics</h2>")
    parts.append(table(["metric", *labels, *[f"{label} vs [0]" for label in labels[1:]]],
                       _rows(comparison, only_verdicts=False)))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_comparison(comparison: Mapping[str, Any], path: str | Path) -> Path:
    """Write the comparison page to `path` (``.html``) and its data beside it (``.json``)."""
    path = Path(path)
    data = path.with_suffix(".json")
    if data == path:
        raise ConfigError(problems=[("compare --output", f"{path} would be both the page and its data, which is "
                                                         f"written beside the page as .json: name an .html file")])
    with writing("the comparison", path, data):
        write_text(path, comparison_html(comparison))
        write_text(data, json.dumps(comparison, indent=2, sort_keys=True) + "\n")
    return path
