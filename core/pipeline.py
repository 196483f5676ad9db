"""Running a validated run file: seed, device, source, de-duplication, split, preprocessing, the
steps, evaluation and the run folder.

    result = setforge.pipeline.run(config, registry)      # -> RunResult
    print(result.summary())

The flow (DESIGN.md): the source's rows (invalid ones refused or dropped and counted by the
source) -> exact duplicates dropped (``source.deduplicate: exact``) -> split (the source's own
`Splits`, a missing part carved from train; else stratified ``split.test``/``split.val`` shares,
or whole groups with ``split.group_by``) -> preprocessors fitted on train only and applied to
every split -> the steps, in order, on the training split only -> evaluators -> the run folder.

Randomness: every stage draws from its own `Rng` made from the run seed and a key: the split
``("split",)``, preprocessor ``i`` ``("preprocess", i)``, step ``i`` ``("step", i)``, evaluator
``("evaluate", name)``. So the same file and seed give the same data files and metrics (on the
CPU), and a step's draws do not depend on what ran before it.

The host owns how many rows a step makes: `setforge.steps` (one module for every kind's keys,
plans and calls). The split is `setforge.split`, the run folder `setforge.output`, the report
`setforge.record`; this module puts them in order.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .build import Built, Step, build
from .chain import Chain
from . import distributed, streaming
from .context import Cache, EvalContext, Event, Metrics, StepContext, StepRecord, available_device
from .dataset import Dataset, Splits
from .errors import ConfigError, DataError, OutputError, PluginError
from .formats import dataset_from_state, dataset_state
from .hookspecs import SERVICE_HOOKS
from .output import RunFolder, _safe_part, write_data
from .record import TrainingLog, build_report, counts_of, write_report
from .registry import registry_for
from .rng import Rng
from .checks import format_problems
from .split import SourceRows, SplitResult, exact_keep, source_rows, split_rows
from .steps import KIND, guard_generated, resolve_classes

__all__ = ["RunResult", "run", "progress_shown"]
#: Errors writing the run folder that are the machine's, not a bug: reported as `OutputError` (exit 5).
_WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO,
                           errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOENT, errno.ELOOP})
_SNAPSHOT = "_setforge_output.pt"


@dataclass
class RunResult:
    """What a finished run gives back: its folder, report, metrics and the datasets in memory."""

    run_dir: Path
    report: dict[str, Any]
    timings: dict[str, Any]
    metrics: Metrics
    raw_train: Dataset
    train: Dataset
    val: Dataset
    test: Dataset
    steps: list[StepRecord] = field(default_factory=list)

    def summary(self) -> str:
        """Counts per class before and after, each step, raw vs optimised numbers, the run folder."""
        from .tools.report import format_summary

        return format_summary(self.report, self.run_dir, self.timings)


def progress_shown(asked: bool) -> bool:
    """Progress bars go to stderr only when asked for and stderr is a terminal, so that error
    lines in a log are never glued to a bar."""
    return bool(asked) and getattr(sys.stderr, "isatty", lambda: False)()


class _Run:
    """One run of a config (or, with `dry`, its data only, for `tools.dryrun`): the components, the
    data as it goes, the record."""

    def __init__(self, config: Any, registry: Any, *, force: bool = False, resume: bool = False,
                 progress: bool = False, dry: bool = False):
        self.config, self.registry = config, registry
        self.force, self.resume, self.progress, self.dry = force, resume, progress, dry
        self.training_log = TrainingLog()  # train_progress events per step, for the report's curves
        self.guard_results: dict[int, dict[str, Any] | None] = {}  # generate steps' guard scores
        self._open_observers: list[Any] = []  # the run file's observers, once opened
        self.seed = int(config.seed)
        # under torchrun: one process group, a GPU per rank; ranks but 0 work in a scratch folder
        self.device = available_device(config.device) if dry else distributed.setup(available_device(config.device))
        self.main = distributed.is_main()
        self.progress = progress and self.main
        self.folder = RunFolder(Path(config.output.dir) if self.main else distributed.scratch_dir() / "run")
        self.timings: dict[str, Any] = {"steps": {}, "evaluate": {}}
        self.warnings: list[str] = []
        if found := format_problems(config.output.format, registry):  # (validate finds it first)
            raise ConfigError(problems=found)
        self.format = registry.formats()[config.output.format]
        self.built: Built
        self.rows: SourceRows
        self.parts: SplitResult
        self.raw_train = self.val = self.test = self.train = None  # type: ignore[assignment]
        self.preprocess_files: list[str] = []
        self.records: list[StepRecord] = []
        self.step_reports: list[dict[str, Any]] = []
        self.step_figures: dict[int, dict[str, bytes]] = {}
        # One cache per run: evaluators share what they train (feature networks, the raw baseline), replays too.
        self.cache = Cache(self.folder.cache_dir)
        self.metrics = Metrics()
        self.file_hashes: dict[str, str] = {}
        self.figures: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------------ plumbing
    def emit(self, event: Event) -> None:
        if self.dry or not self.main:
            return
        if event.kind == "train_progress":
            self.training_log.observe(event.step, event.data)
        failures = [f"an observer failed on {event.kind}: {failure}" for failure in self.registry.emit(event)]
        self.warnings += [w for w in failures if w not in self.warnings]  # (once, not once per event)
        if event.kind != "run_finished":  # observers get it before the run folder is committed
            self._observe(event)

    def _observe(self, event: Event) -> None:
        for observer in self._open_observers:
            try:
                with self.guard(observer, f"observe({event.kind})"):
                    observer.observe(event)
            except Exception as error:  # noqa: BLE001 - an observer never stops a run
                if (message := f"an observer failed on {event.kind}: {error}") not in self.warnings:
                    self.warnings.append(message)  # (once, not once per event)

    def guard(self, component: Any, action: str) -> Any:
        return self.registry.guard(component, action)

    def _ctx(self, key: tuple[Any, ...], workdir: Path | None, step: int = -1, name: str | None = None,
             **extra: Any) -> StepContext:
        if workdir is not None and not self.dry:
            workdir.mkdir(parents=True, exist_ok=True)
        return StepContext(rng=Rng(self.seed, key, device=self.device), device=self.device,
                           workdir=None if self.dry else workdir, resume=self.resume, emit=self.emit,
                           batch_size=self.config.batch_size, step=step, name=name,
                           progress=progress_shown(self.progress), unlabelled=getattr(self, "unlabelled", None), **extra)

    # ---------------------------------------------------------------------------- data
    def load_source(self) -> None:
        source = self.built.source
        ctx = self._ctx(("source",), self.folder.partial / "source", name=source.name)
        # A source's warnings (a `UserWarning`: an id column taken for a feature) go to the terminal
        # as before, through the caller's filters, also when the load then fails, and into
        # report.json, which outlives the terminal.
        try:
            with self.guard(source, "load"), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")  # (a fresh filter: the same warning in a second run in this process shows again)
                result = source.load(ctx, on_invalid=self.config.source.on_invalid)
        finally:
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                self.warnings += [f"source {source.name}: {w.message}"] if issubclass(w.category, UserWarning) else []
        self.rows = source_rows(source.name, result, self.device, self.config.split.group_by,
                                getattr(source, "dropped", {}))
        pool = result.unlabelled if isinstance(result, Splits) else None
        self.unlabelled = None if pool is None or len(pool) == 0 else pool.to(self.device).replace(row_id=None)

    def deduplicate(self) -> np.ndarray:
        """Indices (into the source's rows) kept after exact or near de-duplication."""
        n, dedup = len(self.rows.all), self.config.source.deduplicate
        if dedup.method == "none" or n == 0:
            return np.arange(n)
        if dedup.method == "exact":
            return exact_keep(self.rows)
        rank = torch.as_tensor(self.rows.rank(), device=self.rows.all.device)
        if (dup_of := self.registry.first_result(SERVICE_HOOKS["source.deduplicate"], ds=self.rows.all, method=dedup.method,
                                                 threshold=dedup.threshold, priority=rank)) is None:
            # validation refuses this; a registry handed over without a provider lands here
            raise ConfigError(problems=[("source.deduplicate", f"no plugin provides {dedup.method} de-duplication")])
        return np.flatnonzero(torch.as_tensor(dup_of).cpu().numpy() < 0)

    def leaked(self, train: Dataset, test: Dataset) -> np.ndarray:
        """Which training rows copy a test row (``split.drop_leaked``)."""
        if train.modality == "text":  # exact copies only: near-duplicates need numeric rows
            return np.isin(train.row_keys(with_label=False), test.row_keys(with_label=False))
        if (mask := self.registry.first_result(SERVICE_HOOKS["split.drop_leaked"], train=train, test=test, evaluate=[
                (ref.name, dict(ref.params)) for ref in self.config.evaluate])) is None:
            raise ConfigError(problems=[("split.drop_leaked", "no plugin provides leak detection")])
        return torch.as_tensor(mask).cpu().numpy().astype(bool)

    def split(self, keep: np.ndarray) -> None:
        self.parts = split_rows(self.rows, keep, self.config.split, self.seed, self.leaked)
        self.raw_train, self.val, self.test = self.parts.raw_train, self.parts.val, self.parts.test
        if self.unlabelled is not None and len(held := Dataset.concat([self.val, self.test])):
            # unlabelled rows that copy a val or test row would reach training through pseudo-label
            copies = self.leaked(self.unlabelled, held) if self.config.split.drop_leaked else \
                np.isin(self.unlabelled.row_keys(with_label=False), held.row_keys(with_label=False))  # (near: exact too)
            if self.config.split.group_by and self.unlabelled.groups is not None and held.groups is not None:
                copies |= np.isin(self.unlabelled.groups.cpu().numpy(), held.groups.cpu().numpy())  # their groups too
            if copies.any():
                self.warnings.append(f"{int(copies.sum())} unlabelled row(s) copy a val or test row"
                                     f"{' or share its group' if self.config.split.group_by else ''}: left out")
                self.unlabelled = self.unlabelled[torch.as_tensor(~copies, device=self.device)]
        if missing := [c for c, n in zip(self.raw_train.classes, self.raw_train.class_counts()) if n == 0]:
            self.warnings.append(f"classes with no training rows: {missing}")
        for part in ("val", "test"):  # too few rows, or groups too large, for the share asked
            if part in self.parts.carved and getattr(self.config.split, part) > 0 and not len(self.parts.index[part]):
                self.warnings.append(f"split.{part}: {getattr(self.config.split, part)} of the rows gave no {part} rows")

    def resolve_classes(self, classes: Sequence[str] | None = None) -> None:
        """Turn each step's ``classes`` (names or ids) into ids, and check the classes its params
        name (`Component.check_classes`) and, once there is a preprocessed training split, that it
        takes the data's modality and the data (`Component.check_data`; key "": the step's name),
        before any step runs."""
        problems, names = [], classes or self.rows.all.classes
        for step in self.built.steps:
            if step.config.classes is not None:
                step.classes, found = resolve_classes(step.config.classes, names, f"pipeline[{step.index}].classes")
                problems += found
            with self.guard(step.component, "check_classes and check_data"):
                found = step.component.check_classes(names)
                if (data := self.raw_train) is not None:  # (a source of several modalities: known only now)
                    found += step.component.check_data(data) if data.modality in step.component.modalities else [
                        ("", f"{step.kind} '{step.component.name}' accepts {', '.join(step.component.modalities)} "
                             f"data, and source '{self.built.source.name}' gives {data.modality} data")]
            problems += [(f"pipeline[{step.index}]{f'.params.{key}' if key else '.' + step.kind}", text) for key, text in found]
        if problems:
            raise ConfigError(problems=problems)

    def preprocess(self) -> None:
        for i, (ref, pre) in enumerate(zip(self.config.preprocess, self.built.preprocessors)):
            ctx = self._ctx(("preprocess", i), None, name=pre.name)
            with self.guard(pre, "fit"):
                pre.fit(self.raw_train, ctx)
            with self.guard(pre, "transform"):
                self.raw_train, self.val, self.test = (pre.transform(d) for d in (self.raw_train, self.val, self.test))
                if self.unlabelled is not None:
                    self.unlabelled = pre.transform(self.unlabelled)
            if not self.dry:
                relpath = f"preprocess/{i:02d}-{_safe_part(ref.name)}.pt"
                path = self.folder.partial / relpath
                path.parent.mkdir(parents=True, exist_ok=True)
                with self.guard(pre, "state_dict"):
                    state = pre.state_dict()
                torch.save({"name": ref.name, "params": ref.params, "state": state}, path)
                self.preprocess_files.append(relpath)

    def prepare_data(self) -> None:
        started = time.perf_counter()
        self.load_source()
        self.timings["load"] = time.perf_counter() - started
        started = time.perf_counter()
        self.split(self.deduplicate())
        self.timings["split"] = time.perf_counter() - started
        started = time.perf_counter()
        self.preprocess()
        self.timings["preprocess"] = time.perf_counter() - started
        self.resolve_classes()  # what the steps and the format take: before hours of steps, not after
        self.format.check_data(self.raw_train, self.built.source.name, self.registry.formats())
        self.test_fingerprint = self.test.fingerprint()

    # --------------------------------------------------------------------------- steps
    def run_step(self, step: Step, ds: Dataset, workdir: Path | None = None) -> tuple[Dataset, str | None]:
        workdir = self.folder.step_dir(step.index, step.kind, step.name) if workdir is None else workdir
        # generate steps may measure themselves against the real val split and keep work in the run's cache
        extra = ({"val": self.val if len(self.val) else None, "cache": self.cache} if step.kind == "generate" else {})
        ctx = self._ctx(("step", step.index), workdir, step=step.index, name=step.name, **extra)
        try:
            out, note = KIND[step.kind].run(step.config, step.classes, step.component, ds, ctx, self.guard)
        except (DataError, PluginError) as error:  # a step's failure names its place in the run file
            error.args = error.args if str(error).startswith("pipeline[") else (f"pipeline[{step.index}]: {error}",)
            raise
        label = self.registry.label(step.component)
        if not isinstance(out, Dataset):
            raise PluginError(f"{label}: returned {type(out).__name__}, not a Dataset")
        for what in ("classes", "modality", "shape", "features"):
            if getattr(out, what) != getattr(ds, what):
                raise PluginError(f"{label}: changed the data's {what} from {getattr(ds, what)!r} to {getattr(out, what)!r}")
        return out.to(self.device), note

    def _resumed(self, snapshot: Path, key: str) -> tuple[Dataset, str | None, dict, dict, dict | None] | None:
        if not (self.resume and snapshot.is_file()):
            return None
        try:
            saved = torch.load(snapshot, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - unreadable or not plain data: nothing in it runs; redo the step
            self.warnings.append(f"step {snapshot.parent.name}: its resume snapshot could not be read; it ran again")
            return None
        if isinstance(saved, dict) and saved.get("key") == key:
            figures = {name: bytes(t.numpy()) for name, t in (saved.get("figures") or {}).items()}
            if (guard := json.loads(saved.get("guard") or "null")) is not None:
                self.guard_results[int(saved.get("index", -1))] = guard
                self.warnings += [guard["warning"]] if guard.get("warning") else []
            return (dataset_from_state(saved["dataset"], self.device), saved.get("note"), saved.get("details") or {},
                    figures, saved.get("training"))
        return None

    def run_steps(self, bar: Any) -> None:
        ds = self.raw_train
        for step in self.built.steps:
            bar.set_postfix_str(f"{step.kind} {step.name}")
            started = time.perf_counter()
            self.emit(Event("step_started", step=step.index, name=step.name, data={"kind": step.kind}))
            snapshot = self.folder.step_dir(step.index, step.kind, step.name) / _SNAPSHOT
            snapshot.parent.mkdir(parents=True, exist_ok=True)
            self.training_log.attach(step.index, snapshot.parent)
            key = Cache.key(ds.fingerprint(), step.config.model_dump_json(), self.seed, step.index, str(self.device),
                            self.config.batch_size, self.unlabelled.fingerprint() if self.unlabelled is not None else "")
            resumed = distributed.from_main(lambda: self._resumed(snapshot, key), self.device)
            if resumed is not None:
                out, note, details, figures, training = resumed
                out = out.to(self.device)  # under torchrun: rank 0's rows, on this rank's device
            else:
                out, note = self.run_step(step, ds)
                if KIND[step.kind].guarded:  # the run's own steps only, not ablation's replays
                    self.guard_results[step.index] = guard_generated(
                        step.config.guard_config, f"pipeline[{step.index}]", self.registry.label(step.component),
                        ds, out[out.step == step.index], self.val, self.registry, self.warnings,
                        Rng(self.seed, ("guard", step.index), device=self.device))
                # What the step says it did (e.g. rows a gate rejected), for the report.
                with self.guard(step.component, "report_details"):
                    details = dict(step.component.report_details())
                    figures = {str(k): bytes(v) for k, v in step.component.report_figures().items()}
                # what a generator's training did (plain values), for the step's report
                training = getattr(step.component, "training_report", None) if step.kind == "generate" else None
                tmp = snapshot.with_name(snapshot.name + ".tmp")
                torch.save({"key": key, "dataset": dataset_state(out), "note": note, "details": details,
                            "figures": {k: torch.frombuffer(bytearray(v), dtype=torch.uint8)
                                        for k, v in figures.items()}, "training": training,
                            "index": step.index, "guard": json.dumps(self.guard_results.get(step.index))}, tmp)
                tmp.replace(snapshot)
            self._check_test(f"step {step.index} ({self.registry.label(step.component)})")
            counts = counts_of(out)
            self.records.append(StepRecord(step.index, step.kind, step.name, out, counts))
            refs = step.config.component_refs()
            self.step_reports.append({
                "index": step.index, "kind": step.kind, "name": step.name,
                "params": refs[0].params if len(refs) == 1 else [{"name": r.name, "params": r.params} for r in refs],
                "rows_in": len(ds), "rows_out": len(out), "counts": counts, "note": note, "resumed": resumed is not None,
                "added_by_class": {name: int(b - a) for name, a, b in
                                   zip(out.classes, ds.class_counts(), out.class_counts())},
                **({"details": details} if details else {}),
                **({"training": training} if training is not None else {}),
                **({"guard": guard} if (guard := self.guard_results.get(step.index)) is not None else {}),
                **({"training_log": log} if (log := self.training_log.for_step(step.index)) is not None else {}),
            })
            self.step_figures[step.index] = figures
            for warning in (training or {}).get("warnings", []):
                self.warnings.append(f"step {step.index} ({step.kind} {step.name}): {warning}")
            self.timings["steps"][f"{step.index}-{step.kind}-{step.name}"] = time.perf_counter() - started
            self.emit(Event("step_finished", step=step.index, name=step.name,
                            data={"kind": step.kind, "rows_in": len(ds), "rows_out": len(out), "counts": counts}))
            self.training_log.finish(step.index)  # ablation's retraining of the step is not its curve
            ds = out
            bar.update(1)
        self.train = ds

    def _fresh(self, step: Step) -> Step:
        """`step` with a new component built from its run-file params (nothing fitted yet)."""
        ops = [self.registry.create(step.kind, ref.name, ref.checked_params, place=f"pipeline[{step.index}]")
               for ref in step.config.component_refs()]
        component = Chain(ops) if step.config.is_chain and len(ops) > 1 else ops[0]
        return Step(step.index, step.kind, step.name, step.config, component, step.classes)

    def replay(self, indices: Sequence[int]) -> Dataset:
        """The training set when only the steps at `indices` run, in pipeline order, on the raw
        training split (`EvalContext.replay`). The longest prefix that the run itself ran is taken
        from its outputs; every later step runs as a fresh component with its own `Rng` key, in a
        work folder under ``replay/``. Results are kept in the run's cache (by content), so two
        evaluators asking for one replay run it once."""
        steps = self.built.steps
        chosen = sorted({int(i) for i in indices})
        if any(not 0 <= i < len(steps) for i in chosen):
            raise ValueError(f"replay: step positions must lie in 0..{len(steps) - 1}, got {list(indices)}")
        prefix = next((k for k, i in enumerate(chosen) if i != k), len(chosen))  # steps 0..prefix-1: the run's own
        ds = self.records[prefix - 1].output if prefix else self.raw_train
        name = "-".join(map(str, chosen)) or "none"
        for i in chosen[prefix:]:
            step = steps[i]
            key = Cache.key("replay", ds.fingerprint(), step.config.model_dump_json(), self.seed, i, str(self.device),
                            self.config.batch_size, self.unlabelled.fingerprint() if self.unlabelled is not None else "")
            workdir = self.folder.partial / "replay" / name / f"{i:02d}-{step.kind}-{_safe_part(step.name)}"

            def run_fresh(step: Step = step, ds: Dataset = ds, workdir: Path = workdir) -> dict[str, Any]:
                return dataset_state(self.run_step(self._fresh(step), ds, workdir)[0])

            ds = dataset_from_state(self.cache.get_or_compute(key, run_fresh), self.device)
            self._check_test(f"replaying step {i} ({self.registry.label(step.component)})")
        return ds

    def _check_test(self, after: str) -> None:
        if self.test.fingerprint() != self.test_fingerprint:
            raise PluginError(f"the real test split changed after {after}; components must never modify "
                              "the data they are given in place")

    # ------------------------------------------------------------------------ evaluate
    def evaluate(self, bar: Any) -> None:
        for scope, evaluator in sorted(self.built.evaluators, key=lambda item: not item[1].runs_first):
            bar.set_postfix_str(f"evaluate {scope}")
            started = time.perf_counter()
            workdir = self.folder.evaluator_dir(scope)
            workdir.mkdir(parents=True, exist_ok=True)
            ectx = EvalContext(raw_train=self.raw_train, train=self.train, test=self.test if len(self.test) else None,
                               val=self.val if len(self.val) else None, steps=list(self.records), device=self.device,
                               rng=Rng(self.seed, ("evaluate", scope), device=self.device), workdir=workdir,
                               cache=self.cache, emit=self.emit, name=scope,
                               shared_rng=Rng(self.seed, ("evaluate",), device=self.device), replay=self.replay)
            with self.guard(evaluator, "evaluate"):
                result = evaluator.evaluate(ectx)
            self.metrics.merge(result.scoped(scope))  # (filed under its scope: utility.raw, ...)
            self._check_test(f"evaluator {self.registry.label(evaluator)}")
            self.timings["evaluate"][scope] = time.perf_counter() - started
            bar.update(1)

    # --------------------------------------------------------------------------- write
    def _inverse(self, ds: Dataset) -> Dataset:
        for pre in reversed(self.built.preprocessors):
            with self.guard(pre, "inverse"):
                ds = pre.inverse(ds)
        return ds

    def write(self) -> Dataset:
        """Write the data and figures; returns the training set as written (the report's grids show it)."""
        parts = {name: self._inverse(ds) for name, ds in (("train", self.train), ("val", self.val), ("test", self.test))}
        steps = {f"step-{s.index:02d}-{s.name}": self.step_figures.get(s.index) or {} for s in self.built.steps}
        self.file_hashes, written = write_data(self.folder.partial, self.format, parts,
                                               self.config.output.shard_rows, self.rows, self.parts,
                                               {**self.metrics.figures, **{k: v for k, v in steps.items() if v}})
        for report, key in zip(self.step_reports, steps):
            if key in written:  # a step's figures (report_figures) go under the step in report.json
                report["figures"] = written.pop(key)
        self.figures = written
        return parts["train"]

    # ---------------------------------------------------------------------------- whole
    def execute(self) -> RunResult:
        try:
            return self._execute()
        except OSError as error:
            if error.errno not in _WRITE_ERRNOS:
                raise
            where = f" {error.filename}" if error.filename else ""
            partial = (f"; what was done is kept in {self.folder.partial} (rerun with --resume)"
                       if self.folder.partial.is_dir() else "")
            raise OutputError(f"cannot write{where}: {error.strerror}; {self.folder.final} was left as it was"
                              f"{partial}. Free some space or choose an output.dir you can write to",
                              errno=error.errno) from error
        finally:
            self.close_observers()

    def _execute(self) -> RunResult:
        from tqdm.auto import tqdm

        begun = time.perf_counter()
        self.folder.check(self.force)
        self.built = build(self.config, self.registry)
        if self.main and not self.resume and (self.folder.partial / "steps").is_dir():  # (open() starts afresh)
            self.warnings.append(f"{self.folder.partial}: an earlier try's work was removed (--resume would have reused it)")
        self.folder.open(force=self.force, resume=self.resume)
        self._open_run_observers()
        self.emit(Event("run_started", data={"seed": self.seed, "device": str(self.device),
                                             "dir": str(self.folder.final), "resume": self.resume}))
        try:
            if (scan := streaming.scan_if_streaming(self)) is not None:  # data larger than memory: setforge.streaming
                return streaming.run_streaming(self, scan)
            self.prepare_data()
        except ConfigError:
            # a run file that does not fit the data (a class it names, say), found before any step's
            # work could be kept: exit 2 leaves nothing behind
            if not self.resume:
                shutil.rmtree(self.folder.partial, ignore_errors=True)
            raise
        with tqdm(total=len(self.built.steps) + len(self.built.evaluators), desc="setforge", unit="stage",
                  disable=not progress_shown(self.progress), file=sys.stderr, leave=False) as bar:
            with distributed.collective():
                self.run_steps(bar)
            distributed.barrier()  # rank 0 commits only once every rank got through the steps
            if not self.main:  # rank 0 evaluates and writes the run folder
                return RunResult(Path(self.config.output.dir), {}, self.timings, self.metrics, self.raw_train,
                                 self.train, self.val, self.test, list(self.records))
            self.evaluate(bar)
        started = time.perf_counter()
        train = self.write()
        # Observers finish (and close their files) inside <dir>.partial, so <dir> is complete once renamed,
        # and before the report, whose warnings list an observer that failed doing so.
        self._observe(Event("run_finished", data={"metrics": self.metrics, "dir": str(self.folder.final)}))
        self.close_observers()
        report = build_report(self)
        self.timings["write"] = time.perf_counter() - started
        self.timings["total"] = time.perf_counter() - begun
        write_report(self.folder.partial, report, self.timings, train=train.to("cpu"))  # not read back from disk
        run_dir = self.folder.commit(force=self.force)
        self.emit(Event("run_finished", data={"metrics": self.metrics, "dir": str(run_dir)}))
        return RunResult(run_dir=run_dir, report=report, timings=self.timings, metrics=self.metrics,
                         raw_train=self.raw_train, train=self.train, val=self.val, test=self.test,
                         steps=list(self.records))

    def _open_run_observers(self) -> None:
        for j, observer in enumerate(self.built.observers if self.main else []):
            ctx = self._ctx(("observe", j), self.folder.partial / "observe" / _safe_part(observer.name),
                            name=observer.name)
            try:
                with self.guard(observer, "open"):
                    observer.open(ctx)
            except Exception as error:  # noqa: BLE001 - an observer never stops a run
                self.warnings.append(f"an observer failed to open: {error}")
                continue
            self._open_observers.append(observer)

    def close_observers(self) -> None:
        """Close every open observer (also after a failed run); failures become warnings."""
        for observer in self._open_observers:
            try:
                with self.guard(observer, "close"):
                    observer.close()
            except Exception as error:  # noqa: BLE001
                self.warnings.append(f"an observer failed to close: {error}")
        self._open_observers = []


# ------------------------------------------------------------------------------ entry points
def run(config: Any, registry: Any = None, *, force: bool = False, resume: bool = False,
        progress: bool = True) -> RunResult:
    """Run a validated `RunConfig` into its run folder and return the `RunResult`.

    `registry`: the loaded plugin `Registry` (default: one built from the config's plugin
    options). `force` replaces an existing run folder; `resume` continues in ``<dir>.partial/``
    (finished steps whose input and config are unchanged are reused; generators continue from
    their checkpoints). `progress` shows progress bars on stderr.
    """
    registry = registry_for(config) if registry is None else registry
    return _Run(config, registry, force=force, resume=resume, progress=progress).execute()
