"""A run's record: ``report.json`` (what was run and measured, built by `build_report`) and ``timings.json`` (kept apart so
that two runs' reports compare byte for byte), written atomically; ``report.html`` beside them is
rendered by `setforge.tools.report`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["dumps_json", "write_text", "write_report", "read_report", "unfinished_hint", "build_report", "counts_of", "Tally", "versions",
           "file_hash", "TrainingLog", "REPORT_FILE", "TIMINGS_FILE", "HTML_FILE",
           "METRICS_CSV", "METRICS_JSON"]

REPORT_FILE = "report.json"
TIMINGS_FILE = "timings.json"
HTML_FILE = "report.html"
METRICS_CSV = "metrics.csv"  # every measure, one row each, for pandas and spreadsheets
METRICS_JSON = "metrics.json"


def dumps_json(value: Any) -> str:
    """JSON with sorted keys and a trailing newline: equal content, equal bytes."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(folder: Path, report: Mapping[str, Any], timings: Mapping[str, Any] | None = None,
                 train: Any = None) -> None:
    """Write ``report.json``, ``timings.json`` (when given), ``metrics.csv``/``metrics.json`` and
    ``report.html`` into `folder` (the page reads the run's figures, and unless `train` gives the
    written training set, the data, from `folder`)."""
    from .tools.report import render_html, write_metrics

    folder = Path(folder)
    write_text(folder / REPORT_FILE, dumps_json(report))
    if timings is not None:
        write_text(folder / TIMINGS_FILE, dumps_json(timings))
    write_metrics(folder, report)
    write_text(folder / HTML_FILE, render_html(report, folder, timings, train=train))


def unfinished_hint(run_dir: str | Path) -> str:
    """" (<run_dir>.partial exists: ...)" when a run into `run_dir` did not finish, else ""."""
    partial = Path(run_dir).resolve().parent / f"{Path(run_dir).resolve().name}.partial"  # (not with_name: '/')
    return (f" ({partial} exists: the run did not finish; `setforge run FILE --resume` continues it)"
            if partial.is_dir() else "")


def read_report(run_dir: str | Path) -> dict[str, Any]:
    """``report.json`` of a finished run folder."""
    if not (path := Path(run_dir) / REPORT_FILE).is_file():
        raise DataError(f"{run_dir} is not a finished setforge run folder: no {REPORT_FILE}{unfinished_hint(run_dir)}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not isinstance(report, dict):
        raise DataError(f"{path} holds a JSON {type(report).__name__}, not a run's report (an object)")
    return report


# ------------------------------------------------------------------------------- the record
def counts_of(ds: Any) -> dict[str, Any]:
    """Rows per class, per origin and per class and origin (keys: class names, origin labels)."""
    (tally := Tally(ds.classes)).add(ds)
    return tally.counts()


class Tally:
    """`counts_of` counted a batch at a time (``add(ds)`` returns `ds`; ``counts()``)."""

    def __init__(self, classes: Any):
        from .dataset import Origin

        self.classes, self.origins = tuple(classes), list(Origin)
        self.table = np.zeros((len(self.classes), len(self.origins)), dtype=np.int64)

    def add(self, ds: Any) -> Any:
        codes = ds.y.cpu().numpy() * len(self.origins) + ds.origin.cpu().numpy()
        self.table += np.bincount(codes, minlength=self.table.size).reshape(self.table.shape)
        return ds

    def counts(self) -> dict[str, Any]:
        table, origins = self.table.tolist(), self.origins
        return {"rows": int(self.table.sum()), "by_class": {name: int(sum(row)) for name, row in zip(self.classes, table)},
                "by_origin": {o.label: int(self.table[:, int(o)].sum()) for o in origins},
                "by_class_origin": {name: {o.label: int(row[int(o)]) for o in origins}
                                    for name, row in zip(self.classes, table)}}


def versions() -> dict[str, str]:
    """Python's version and those of setforge and the libraries a run's numbers depend on."""
    found = {"python": platform.python_version()}
    for dist in ("setforge", "torch", "numpy", "scikit-learn", "imbalanced-learn", "pydantic", "pluggy"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def file_hash(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _evaluator_detail(evaluator: Any) -> str:
    """A short description of an evaluator's main params for the summary (e.g. its model)."""
    model = evaluator.params.model_dump(mode="json").get("model")
    return "" if model is None else f"model {model}"


def report_head(run: Any, like: Any) -> dict[str, Any]:
    """What every ``report.json`` starts with: versions, components, seed, device, the run file,
    the output format and the kind of rows (`like`: a dataset of the run's kind)."""
    from . import API_VERSION

    config, found = run.config, versions()
    return {"setforge": {"version": found.get("setforge"), "api_version": API_VERSION}, "versions": found,
            "components": run.built.used(run.registry), "seed": run.seed, "device": str(run.device),
            "config": config.model_dump(mode="json"),
            "output": {"format": config.output.format, "shard_rows": config.output.shard_rows},
            "modality": like.modality, "classes": list(like.classes), "row_shape": list(like.shape),
            "features": None if like.features is None else like.features.to_dict()}


def build_report(run: Any) -> dict[str, Any]:
    """``report.json`` of a finished run (`setforge.pipeline`'s run, after it wrote its files)."""
    config, rows, parts = run.config, run.rows, run.parts
    metrics = run.metrics.to_dict()
    metrics["figures"] = run.figures
    return {
        **report_head(run, rows.all),
        "source": {"name": run.built.source.name, "rows": len(rows.all), "own_split": rows.own_split,
                   "parts": dict(zip(rows.part_names, rows.part_sizes)), "dropped_invalid": rows.dropped,
                   "duplicates_dropped": int(len(parts.duplicate_index)), "deduplicate": config.source.deduplicate.method,
                   **({"unlabelled": len(run.unlabelled)} if getattr(run, "unlabelled", None) is not None else {})},
        "split": {"method": parts.method, "carved": parts.carved,
                  "rows": {"train": len(run.raw_train), "val": len(run.val), "test": len(run.test)},
                  "leaked_dropped": int(len(parts.leaked_index)),
                  "fingerprints": {"raw_train": run.raw_train.fingerprint(), "val": run.val.fingerprint(),
                                   "test": run.test_fingerprint}},
        "preprocess": [{"name": ref.name, "params": ref.params, "changes_units": bool(pre.changes_units), "state_file": path}
                       for ref, pre, path in zip(config.preprocess, run.built.preprocessors, run.preprocess_files)],
        "counts": {"raw_train": counts_of(run.raw_train), "optimised": counts_of(run.train),
                   "val": counts_of(run.val), "test": counts_of(run.test)}, "steps": run.step_reports,
        "evaluators": {scope: {"name": e.name, "params": e.params.model_dump(mode="json"),
                               "summary": _evaluator_detail(e)} for scope, e in run.built.evaluators},
        "metrics": metrics, "files": run.file_hashes, "warnings": run.warnings,
    }


class TrainingLog:
    """What each step's training reported through ``train_progress`` events, for the report's
    curves: ``{"iterations": [...], "losses": {name: [...]}}`` per step, plus ``"selection"``
    (``{"metric", "iterations", "values", "chosen"}``) when the events carry a checkpoint-selection
    score (``data["selection"] = {"metric", "value"}``, and ``"chosen"`` once known).

    Entries are keyed by iteration, so the iterations a resumed run replays overwrite the same
    values, and the log is kept in the step's folder (``training-log.json``), so a run killed in
    training and resumed reports the whole curve, as an uninterrupted one does.
    """

    FILE = "training-log.json"

    def __init__(self) -> None:
        self._steps: dict[int, dict[str, Any]] = {}
        self._folders: dict[int, Path] = {}
        self._finished: set[int] = set()

    def attach(self, step: int, folder: Path) -> None:
        """Keep step `step`'s log in `folder`, continuing what a previous attempt wrote there."""
        self._folders[step] = Path(folder)
        if step not in self._steps and (path := Path(folder) / self.FILE).is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                self._steps[step] = {"losses": {int(k): v for k, v in saved.get("losses", {}).items()},
                                     "selection": {int(k): v for k, v in saved.get("selection", {}).items()},
                                     "metric": saved.get("metric"), "chosen": saved.get("chosen")}
            except (OSError, ValueError, AttributeError):
                pass  # an unreadable log only loses the curve's start, never the run

    def finish(self, step: int) -> None:
        """Step `step` is done: its later ``train_progress`` events (ablation training it again) are
        not its curve and change neither the report nor ``training-log.json``, which a resume reads."""
        self._finished.add(step)

    def observe(self, step: int | None, data: Mapping[str, Any]) -> None:
        """Record one ``train_progress`` event of step `step` (unless the step is finished)."""
        if step is None or "iteration" not in data or step in self._finished:
            return
        entry = self._steps.setdefault(step, {"losses": {}, "selection": {}, "metric": None, "chosen": None})
        iteration = int(data["iteration"])
        if losses := data.get("losses"):
            entry["losses"][iteration] = {str(k): float(v) for k, v in losses.items()}
        selection = data.get("selection")
        if isinstance(selection, Mapping):
            if selection.get("value") is not None:
                entry["selection"][iteration] = float(selection["value"])
                entry["metric"] = str(selection.get("metric", entry["metric"] or "selection"))
            if selection.get("chosen") is not None:
                entry["chosen"] = int(selection["chosen"])
        folder = self._folders.get(step)
        if folder is not None and folder.is_dir():
            write_text(folder / self.FILE, dumps_json({
                "losses": {str(k): v for k, v in sorted(entry["losses"].items())},
                "selection": {str(k): v for k, v in sorted(entry["selection"].items())},
                "metric": entry["metric"], "chosen": entry["chosen"]}))

    def for_step(self, step: int) -> dict[str, Any] | None:
        """The step's curves for ``report.json`` (None when it reported no training)."""
        if not (entry := self._steps.get(step)) or not entry["losses"]:
            return None
        iterations = sorted(entry["losses"])
        names = sorted({name for values in entry["losses"].values() for name in values})
        out: dict[str, Any] = {"iterations": iterations,
                               "losses": {n: [entry["losses"][i].get(n) for i in iterations] for n in names}}
        if entry["selection"]:
            chosen_iterations = sorted(entry["selection"])
            out["selection"] = {"metric": entry["metric"], "iterations": chosen_iterations,
                                "values": [entry["selection"][i] for i in chosen_iterations], "chosen": entry["chosen"]}
        return out
