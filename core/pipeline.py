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

The host owns how many rows a step makes (DESIGN, "Step semantics owned by the host"):

- augment: ``copies`` augmented copies of each selected row (originals stay); the rows of
  ``classes``, or with ``minority: true`` of every class below the largest, else all rows;
- generate: ``target: balance`` fills every (selected) class up to the current largest class,
  ``per_class: N`` up to N rows; both count every row of the step's input whatever its origin.
  ``multiply: K`` generates ``round(K * r_c)`` rows for class c, r_c its real rows in the step's
  input. The generator is fitted once (on the input's real rows, or all rows with
  ``fit_on: all``), then ``sample(labels)``; when there is nothing to generate it is not fitted
  at all and the report says so.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import importlib.resources
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .components import Chain, Component
from .context import Cache, EvalContext, Event, Metrics, StepContext, StepRecord, resolve_device
from .dataset import Dataset, Origin, Splits
from .errors import ConfigError, DataError, OutputError, PluginError
from .formats import FORMATS, dataset_from_state, dataset_state, get_format, write_npz_file
from .output import RunFolder, _safe_part
from .record import TrainingLog, write_report
from .rng import Rng

__all__ = ["RunResult", "run", "dry_run"]
#: Errors writing the run folder that are the machine's, not a bug: reported as `OutputError` (exit 5).
_WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG,
                           errno.EIO, errno.ENOTDIR, errno.ENAMETOOLONG})
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


# ------------------------------------------------------------------------------ helpers
def _counts(ds: Dataset) -> dict[str, Any]:
    """Rows per class, per origin and per class and origin (keys: class names, origin labels)."""
    n_origins = len(Origin)
    table = torch.bincount((ds.y * n_origins + ds.origin).cpu(), minlength=ds.num_classes * n_origins)
    table = table.view(ds.num_classes, n_origins).tolist()
    return {
        "rows": len(ds),
        "by_class": {name: int(sum(row)) for name, row in zip(ds.classes, table)},
        "by_origin": {o.label: int(sum(row[int(o)] for row in table)) for o in Origin},
        "by_class_origin": {name: {o.label: int(row[int(o)]) for o in Origin} for name, row in zip(ds.classes, table)},
    }


def _row_keys(ds: Dataset, with_label: bool = True) -> np.ndarray:
    """One opaque, comparable key per row: its exact content (and label)."""
    n = len(ds)
    if ds.modality == "text":
        keys = [hashlib.sha256(s.encode("utf-8") + (b"\0%d" % int(label) if with_label else b"")).digest()
                for s, label in zip(ds.x, ds.y.tolist())]
        return np.frombuffer(b"".join(keys), dtype=np.dtype((np.void, 32))) if n else np.zeros(0, dtype="V32")
    x = (ds.x.detach() + 0.0).cpu().reshape(n, -1).contiguous().numpy()  # + 0.0: -0.0 and 0.0 are one value
    parts = [x.view(np.uint8).reshape(n, -1)]
    if with_label:
        parts.append(ds.y.cpu().numpy().astype("<i8").view(np.uint8).reshape(n, -1))
    rows = np.ascontiguousarray(np.concatenate(parts, axis=1))
    return rows.view(np.dtype((np.void, rows.shape[1]))).reshape(n)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("setforge", "torch", "numpy", "scikit-learn", "imbalanced-learn", "pydantic", "pluggy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def _check_device(name: str) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(problems=[("device", f"{name!r} was asked for, but CUDA is not available here; "
                                                  "use device: auto or cpu")])
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(problems=[("device", f"{name!r}: this machine has {torch.cuda.device_count()} "
                                                  "CUDA device(s)")])
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(problems=[("device", "'mps' was asked for, but it is not available here")])
    return device


@dataclass
class _Step:
    index: int
    kind: str
    name: str
    config: Any
    component: Any
    classes: list[int] | None = None


# ------------------------------------------------------------------------------- splitting
def _carve(index: np.ndarray, y: np.ndarray, groups: np.ndarray | None, shares: Mapping[str, float],
           rng: np.random.Generator, stratify: bool, num_classes: int) -> dict[str, np.ndarray]:
    """Divide the rows `index` into the parts named in `shares` (shares of these rows) and ``rest``.

    Stratified: per class, ``round(n_c * share)`` rows to each part, at least one row of every class
    left in ``rest``. With `groups`: whole groups, in a random order, fill each part up to its
    share of rows (group sizes make it approximate); no group is in two parts.
    """
    names = list(shares)
    out: dict[str, list[np.ndarray]] = {name: [] for name in [*names, "rest"]}
    if groups is not None:
        unique, inverse = np.unique(groups[index], return_inverse=True)
        by_group = index[np.argsort(inverse, kind="stable")]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(unique)))])
        targets = {name: _round_half_up(len(index) * shares[name]) for name in names}
        filled = dict.fromkeys(names, 0)
        for g in rng.permutation(len(unique)).tolist():
            rows = by_group[bounds[g]:bounds[g + 1]]
            target = next((name for name in names if filled[name] < targets[name]), "rest")
            out[target].append(rows)
            if target != "rest":
                filled[target] += len(rows)
    elif stratify:
        for c in range(num_classes):
            members = rng.permutation(index[y[index] == c])
            n_c = len(members)
            wanted = [_round_half_up(n_c * shares[name]) for name in names]
            # Keep at least one row of every class for training: take back from the last parts first.
            for k in reversed(range(len(wanted))):
                excess = sum(wanted) - max(n_c - 1, 0)
                if excess > 0:
                    wanted[k] = max(0, wanted[k] - excess)
            start = 0
            for name, count in zip(names, wanted):
                out[name].append(members[start:start + count])
                start += count
            out["rest"].append(members[start:])
    else:
        members = rng.permutation(index)
        start = 0
        for name in names:
            count = _round_half_up(len(index) * shares[name])
            out[name].append(members[start:start + count])
            start += count
        out["rest"].append(members[start:])
    return {name: np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            for name, parts in out.items()}


# ---------------------------------------------------------------------------------- the run
class _Run:
    """One run of a config (or a dry run): holds the components, the data and the report."""

    def __init__(self, config: Any, registry: Any, *, force: bool = False, resume: bool = False,
                 progress: bool = False, dry: bool = False):
        self.config = config
        self.registry = registry
        self.force, self.resume, self.progress, self.dry = force, resume, progress, dry
        self.training_log = TrainingLog()  # train_progress events per step, for the report's curves
        self.seed = int(config.seed)
        self.device = _check_device(config.device)
        self.folder = RunFolder(Path(config.output.dir))
        self.timings: dict[str, Any] = {"steps": {}, "evaluate": {}}
        self.warnings: list[str] = []
        self.report: dict[str, Any] = {}
        if config.output.format not in FORMATS:
            raise ConfigError(problems=[("output.format", f"{config.output.format!r} has no writer installed yet; "
                                                          f"available: {', '.join(sorted(FORMATS))}")])
        if config.source.stream:
            self.warnings.append("source.stream: streaming is not implemented yet; the data was read at once")

    # ------------------------------------------------------------------------ plumbing
    def emit(self, event: Event) -> None:
        if self.dry:
            return
        if event.kind == "train_progress":
            self.training_log.observe(event.step, event.data)
        for failure in self.registry.emit(event):
            self.warnings.append(f"an observer failed on {event.kind}: {failure}")

    def guard(self, component: Any, action: str) -> Any:
        return self.registry.guard(component, action)

    def _ctx(self, key: tuple[Any, ...], workdir: Path | None, step: int = -1, name: str | None = None) -> StepContext:
        if workdir is not None and not self.dry:
            workdir.mkdir(parents=True, exist_ok=True)
        return StepContext(rng=Rng(self.seed, key, device=self.device), device=self.device,
                           workdir=None if self.dry else workdir, resume=self.resume, emit=self.emit,
                           batch_size=self.config.batch_size, step=step, name=name, progress=self.progress)

    # ------------------------------------------------------------------------ building
    def build(self) -> None:
        """Every component, with every problem in the run file's params reported at once."""
        config, registry = self.config, self.registry
        problems: list[tuple[str, str]] = []

        def make(kind: str, ref: Any, place: str) -> Any:
            try:
                return registry.create(kind, ref.name, ref.params, place=place)
            except ConfigError as error:
                problems.extend(error.problems or [(place, str(error))])
                return None

        self.source = make("source", config.source, "source")
        self.preprocessors = [make("preprocess", ref, f"preprocess[{i}]") for i, ref in enumerate(config.preprocess)]
        self.steps: list[_Step] = []
        for i, step in enumerate(config.pipeline):
            refs = step.component_refs()
            if step.is_chain:
                ops = [make("augment", ref, f"pipeline[{i}].augment[{j}]") for j, ref in enumerate(refs)]
                component = None
                if all(op is not None for op in ops):
                    try:
                        component = Chain(ops) if len(ops) > 1 else ops[0]
                    except ConfigError as error:
                        problems.extend((f"pipeline[{i}].{p}", m) for p, m in error.problems)
                name = "+".join(ref.name for ref in refs)
            else:
                component = make(step.kind, refs[0], f"pipeline[{i}].{step.kind}")
                name = refs[0].name
            self.steps.append(_Step(i, step.kind, name, step, component))
        self.evaluators: list[tuple[str, Any]] = []
        seen: dict[str, int] = {}
        for j, ref in enumerate(config.evaluate):
            evaluator = make("evaluate", ref, f"evaluate[{j}]")
            seen[ref.name] = seen.get(ref.name, 0) + 1
            # Two evaluators of one name (e.g. utility with two models) are filed apart.
            scope = ref.name if seen[ref.name] == 1 else f"{ref.name}-{seen[ref.name]}"
            self.evaluators.append((scope, evaluator))
        if problems:
            raise ConfigError(problems=problems)

    def _components_used(self) -> list[dict[str, str]]:
        used: list[Any] = [self.source, *self.preprocessors]
        for step in self.steps:
            used.extend(step.component.ops if isinstance(step.component, Chain) else [step.component])
        used.extend(e for _, e in self.evaluators)
        rows, seen = [], set()
        for component in used:
            info = self.registry.info_for(component)
            if info is None or (info.kind, info.name) in seen:
                continue
            seen.add((info.kind, info.name))
            rows.append({"kind": info.kind, "name": info.name, "plugin": info.plugin,
                         "distribution": info.distribution, "version": info.version})
        return rows

    # ---------------------------------------------------------------------------- data
    def load_source(self) -> None:
        config = self.config
        ctx = self._ctx(("source",), self.folder.partial / "source", name=self.source.name)
        with self.guard(self.source, "load"):
            result = self.source.load(ctx, on_invalid=config.source.on_invalid)
        parts = {"all": result} if isinstance(result, Dataset) else \
            {k: getattr(result, k) for k in ("train", "val", "test") if getattr(result, k) is not None}
        first = next(iter(parts.values()))
        if any((p.groups is None) != (first.groups is None) for p in parts.values()):
            raise DataError(f"source '{self.source.name}': either every part of its split has groups or none does")
        for name, part in parts.items():
            if len(part) == 0 and name in ("all", "train"):
                raise DataError(f"source '{self.source.name}' gave no rows" + ("" if name == "all" else " for training"))
        self.own_split = isinstance(result, Splits)
        self.part_names = list(parts)
        self.part_sizes = [len(p) for p in parts.values()]
        self.all = Dataset.concat([p.to(self.device) for p in parts.values()]).replace(row_id=None)
        self.part_of = np.repeat(np.arange(len(parts)), self.part_sizes)
        self.dropped = dict(sorted(getattr(self.source, "dropped", {}).items()))
        present = [name for name, n in zip(self.all.classes, self.all.class_counts()) if n]
        if len(present) < 2:
            raise DataError(f"source '{self.source.name}': every row is of class {present[0]!r}; setforge optimises "
                            f"training sets of classifiers, which need rows of at least two classes "
                            f"(the class list is {list(self.all.classes)})")
        if config.split.group_by and self.all.groups is None:
            raise DataError(f"split.group_by: source '{self.source.name}' gives no groups to keep together")

    def deduplicate(self) -> np.ndarray:
        """Indices (into the source's rows) kept after exact or near de-duplication; keeps the copy
        in the test part, then val, then train, so that no copy straddles two parts."""
        n = len(self.all)
        self.duplicate_index = np.zeros(0, dtype=np.int64)
        dedup = self.config.source.deduplicate
        if dedup.method == "none" or n == 0:
            return np.arange(n)
        priority = {"test": 0, "val": 1, "train": 2, "all": 2}
        rank = np.array([priority[self.part_names[p]] for p in self.part_of])
        if dedup.method == "near":
            # The `deduplicate` resampler's definition, found through the registry (core names no plugin).
            component = self.registry.create("resample", "deduplicate", {"method": "near", "threshold": dedup.threshold},
                                             place="source.deduplicate")
            with self.guard(component, "deduplicate"):
                dup_of = component.duplicates(self.all, priority=torch.as_tensor(rank, device=self.all.device))
            keep = np.flatnonzero(dup_of.cpu().numpy() < 0)
            self.duplicate_index = np.setdiff1d(np.arange(n), keep)
            return keep
        order = np.lexsort((np.arange(n), rank))
        keys = _row_keys(self.all)[order]
        _, first = np.unique(keys, return_index=True)
        keep = np.sort(order[first])
        self.duplicate_index = np.setdiff1d(np.arange(n), keep)
        return keep

    def split(self, keep: np.ndarray) -> None:
        split = self.config.split
        y = self.all.y.cpu().numpy()
        groups = None if not split.group_by else self.all.groups.cpu().numpy()
        rng = Rng(self.seed, ("split",))
        num_classes = self.all.num_classes
        index: dict[str, np.ndarray] = {}
        if not self.own_split:
            carved = _carve(keep, y, groups, {"test": split.test, "val": split.val}, rng.spawn("all").numpy,
                            split.stratify, num_classes)
            index = {"train": carved["rest"], "val": carved["val"], "test": carved["test"]}
            self.split_method = "grouped" if groups is not None else ("stratified" if split.stratify else "random")
            self.carved = ["val", "test"]
        else:
            part_index = {name: keep[self.part_of[keep] == k] for k, name in enumerate(self.part_names)}
            missing = {name: getattr(split, name) for name in ("test", "val") if name not in part_index}
            train = part_index["train"]
            if missing:
                carved = _carve(train, y, groups, missing, rng.spawn("train").numpy, split.stratify, num_classes)
                train = carved["rest"]
                part_index.update({name: carved[name] for name in missing})
            index = {"train": train, "val": part_index["val"], "test": part_index["test"]}
            self.split_method = "source" + (f" (carved {', '.join(sorted(missing))} from train)" if missing else "")
            self.carved = sorted(missing)
        self.leaked_index = np.zeros(0, dtype=np.int64)
        if split.drop_leaked and len(index["test"]) and len(index["train"]):
            train_part, test_part = (self.all[torch.as_tensor(index[k], dtype=torch.int64)] for k in ("train", "test"))
            if self.all.modality == "text":  # exact copies only: near-duplicates need numeric rows
                leaked = np.isin(_row_keys(train_part, with_label=False), _row_keys(test_part, with_label=False))
            else:
                # The `leakage` evaluator's definition (exact and near copies), with its run-file params if listed.
                params = next((ref.params for ref in self.config.evaluate if ref.name == "leakage"), {})
                leakage = self.registry.create("evaluate", "leakage", params, place="split.drop_leaked")
                with self.guard(leakage, "drop_leaked"):
                    leaked = leakage.leaked_mask(train_part, test_part).cpu().numpy()
            self.leaked_index = index["train"][leaked]
            index["train"] = index["train"][~leaked]
        if len(index["train"]) == 0:
            raise DataError("the split left no training rows; lower split.test and split.val or add data")
        self.index = index
        parts = {name: self.all[torch.as_tensor(idx, dtype=torch.int64)].replace(row_id=None)
                 for name, idx in index.items()}
        self.raw_train, self.val, self.test = parts["train"], parts["val"], parts["test"]
        missing_classes = [c for c, n in zip(self.raw_train.classes, self.raw_train.class_counts()) if n == 0]
        if missing_classes:
            self.warnings.append(f"classes with no training rows: {missing_classes}")

    def preprocess(self) -> None:
        self.preprocess_files: list[str] = []
        for i, (ref, pre) in enumerate(zip(self.config.preprocess, self.preprocessors)):
            ctx = self._ctx(("preprocess", i), None, name=pre.name)
            with self.guard(pre, "fit"):
                pre.fit(self.raw_train, ctx)
            with self.guard(pre, "transform"):
                self.raw_train, self.val, self.test = (pre.transform(d) for d in (self.raw_train, self.val, self.test))
            if not self.dry:
                relpath = f"preprocess/{i:02d}-{_safe_part(ref.name)}.pt"
                path = self.folder.partial / relpath
                path.parent.mkdir(parents=True, exist_ok=True)
                with self.guard(pre, "state_dict"):
                    state = pre.state_dict()
                torch.save({"name": ref.name, "params": ref.params, "state": state}, path)
                self.preprocess_files.append(relpath)

    def resolve_classes(self) -> None:
        """Turn each step's ``classes`` (names or ids) into ids, before any step runs."""
        classes = self.all.classes
        problems = []
        for step in self.steps:
            if step.config.classes is None:
                continue
            ids = []
            for j, value in enumerate(step.config.classes):
                place = f"pipeline[{step.index}].classes[{j}]"
                if isinstance(value, str) and value in classes:
                    ids.append(classes.index(value))
                elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
                    ids.append(value)
                else:
                    what = "name" if isinstance(value, str) else "id"
                    problems.append((place, f"unknown class {what} {value!r}; the classes are {list(classes)} "
                                            f"(ids 0..{len(classes) - 1})"))
            step.classes = sorted(set(ids))
        if problems:
            raise ConfigError(problems=problems)

    # --------------------------------------------------------------------------- steps
    def _selected(self, step: _Step, counts: Sequence[int]) -> list[int]:
        if step.classes is not None:
            return step.classes
        if step.kind == "augment" and step.config.minority:
            largest = max(counts) if counts else 0
            return [c for c, n in enumerate(counts) if n < largest]
        return list(range(len(counts)))

    def generation_plan(self, step: _Step, ds_counts: Sequence[int], real_counts: Sequence[int]) -> list[int]:
        """Rows to generate per class for a generate step, from the host-owned keys."""
        cfg = step.config
        chosen = set(self._selected(step, ds_counts))
        need = []
        for c, (count, real) in enumerate(zip(ds_counts, real_counts)):
            if c not in chosen:
                need.append(0)
            elif cfg.per_class is not None:
                need.append(max(0, int(cfg.per_class) - count))
            elif cfg.multiply is not None:
                need.append(_round_half_up(float(cfg.multiply) * real))
            else:  # target: balance
                need.append(max(ds_counts) - count)
        return need

    def run_step(self, step: _Step, ds: Dataset) -> tuple[Dataset, str | None]:
        ctx = self._ctx(("step", step.index), self.folder.step_dir(step.index, step.kind, step.name),
                        step=step.index, name=step.name)
        component, cfg = step.component, step.config
        note = None
        if step.kind == "augment":
            selected = self._selected(step, ds.class_counts())
            rows = torch.isin(ds.y, torch.tensor(selected, dtype=torch.int64, device=ds.device)).nonzero().flatten()
            if rows.numel() == 0:
                note = "no rows selected: nothing to augment"
            with self.guard(component, "augment"):
                out = component.augment(ds, ctx, copies=cfg.copies, rows=rows)
        elif step.kind == "resample":
            with self.guard(component, "resample"):
                out = component.resample(ds, ctx)
        else:
            need = self.generation_plan(step, ds.class_counts(), ds.class_counts(Origin.REAL))
            if sum(need) == 0:
                out = ds
                note = "nothing to generate: every selected class already has the rows asked for"
            else:
                fit_on = ds if cfg.fit_on == "all" else ds[ds.origin == int(Origin.REAL)]
                with self.guard(component, "fit"):
                    component.fit(fit_on, ctx)
                labels = torch.repeat_interleave(torch.arange(len(need), device=ds.device),
                                                 torch.tensor(need, device=ds.device))
                with self.guard(component, "sample"):
                    generated = component.sample(labels, ctx)
                out = Dataset.concat([ds, generated.to(ds.device)])
                if ctx.workdir is not None:
                    try:
                        component.save(ctx.workdir / "generator.pt")
                    except (PluginError, NotImplementedError):
                        pass  # a generator without _state_dict cannot be saved; nothing to keep
        label = self.registry.label(component)
        if not isinstance(out, Dataset):
            raise PluginError(f"{label}: returned {type(out).__name__}, not a Dataset")
        for what in ("classes", "modality", "shape", "features"):
            if getattr(out, what) != getattr(ds, what):
                raise PluginError(f"{label}: changed the data's {what} from {getattr(ds, what)!r} to {getattr(out, what)!r}")
        return out.to(self.device), note

    def run_steps(self, bar: Any) -> None:
        ds = self.raw_train
        self.records: list[StepRecord] = []
        self.step_reports: list[dict[str, Any]] = []
        for step in self.steps:
            bar.set_postfix_str(f"{step.kind} {step.name}")
            started = time.perf_counter()
            self.emit(Event("step_started", step=step.index, name=step.name, data={"kind": step.kind}))
            snapshot = self.folder.step_dir(step.index, step.kind, step.name) / _SNAPSHOT
            snapshot.parent.mkdir(parents=True, exist_ok=True)
            self.training_log.attach(step.index, snapshot.parent)
            key = Cache.key(ds.fingerprint(), step.config.model_dump_json(), self.seed, step.index, str(self.device))
            out, note, resumed = None, None, False
            if self.resume and snapshot.is_file():
                try:
                    saved = torch.load(snapshot, map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - unreadable or not plain data: nothing in it runs; redo the step
                    saved = {}
                    self.warnings.append(f"step {step.index}: its resume snapshot could not be read; it ran again")
                if isinstance(saved, dict) and saved.get("key") == key:
                    out, note, resumed = dataset_from_state(saved["dataset"], self.device), saved.get("note"), True
            if out is None:
                out, note = self.run_step(step, ds)
                snapshot.parent.mkdir(parents=True, exist_ok=True)
                tmp = snapshot.with_name(snapshot.name + ".tmp")
                torch.save({"key": key, "dataset": dataset_state(out), "note": note}, tmp)
                tmp.replace(snapshot)
            self._check_test(f"step {step.index} ({self.registry.label(step.component)})")
            counts = _counts(out)
            self.records.append(StepRecord(step.index, step.kind, step.name, out, counts))
            refs = step.config.component_refs()
            self.step_reports.append({
                "index": step.index, "kind": step.kind, "name": step.name,
                "params": refs[0].params if len(refs) == 1 else [{"name": r.name, "params": r.params} for r in refs],
                "rows_in": len(ds), "rows_out": len(out), "counts": counts, "note": note, "resumed": resumed,
                "added_by_class": {name: int(b - a) for name, a, b in
                                   zip(out.classes, ds.class_counts(), out.class_counts())},
            })
            training = self.training_log.for_step(step.index)
            if training is not None:
                self.step_reports[-1]["training"] = training
            self.timings["steps"][f"{step.index}-{step.kind}-{step.name}"] = time.perf_counter() - started
            self.emit(Event("step_finished", step=step.index, name=step.name,
                            data={"kind": step.kind, "rows_in": len(ds), "rows_out": len(out), "counts": counts}))
            ds = out
            bar.update(1)
        self.train = ds

    def _check_test(self, after: str) -> None:
        if self.test.fingerprint() != self.test_fingerprint:
            raise PluginError(f"the real test split changed after {after}; components must never modify "
                              "the data they are given in place")

    # ------------------------------------------------------------------------ evaluate
    def evaluate(self, bar: Any) -> None:
        self.metrics = Metrics()
        for scope, evaluator in self.evaluators:
            bar.set_postfix_str(f"evaluate {scope}")
            started = time.perf_counter()
            workdir = self.folder.evaluator_dir(scope)
            workdir.mkdir(parents=True, exist_ok=True)
            ectx = EvalContext(raw_train=self.raw_train, train=self.train, test=self.test if len(self.test) else None,
                               val=self.val if len(self.val) else None, steps=list(self.records), device=self.device,
                               rng=Rng(self.seed, ("evaluate", scope), device=self.device), workdir=workdir,
                               cache=Cache(self.folder.cache_dir), emit=self.emit, name=scope)
            with self.guard(evaluator, "evaluate"):
                result = evaluator.evaluate(ectx)
            if scope != evaluator.name:
                for store in ("measures", "skipped", "figures"):
                    table = getattr(result, store)
                    if evaluator.name in table:
                        table[scope] = table.pop(evaluator.name)
            self.metrics.merge(result)
            self._check_test(f"evaluator {self.registry.label(evaluator)}")
            self.timings["evaluate"][scope] = time.perf_counter() - started
            bar.update(1)

    # --------------------------------------------------------------------------- write
    def _inverse(self, ds: Dataset) -> Dataset:
        for pre in reversed(self.preprocessors):
            with self.guard(pre, "inverse"):
                ds = pre.inverse(ds)
        return ds

    def write(self) -> None:
        partial = self.folder.partial
        fmt = get_format(self.config.output.format)
        files: list[Path] = []
        for name, ds in (("train", self.train), ("val", self.val), ("test", self.test)):
            files += fmt.write(partial, name, self._inverse(ds), shard_rows=self.config.output.shard_rows)
        all_y = self.all.y.cpu().numpy()
        arrays = {"source_parts": np.asarray(self.part_names, dtype=np.str_),
                  "source_part_sizes": np.asarray(self.part_sizes, dtype=np.int64),
                  "source_part": self.part_of.astype(np.int64), "source_y": all_y.astype(np.int64)}
        for name in ("train", "val", "test"):
            arrays[f"{name}_index"] = self.index[name].astype(np.int64)
        arrays["duplicate_index"] = self.duplicate_index.astype(np.int64)
        arrays["leaked_index"] = self.leaked_index.astype(np.int64)
        if self.all.groups is not None:
            arrays["source_groups"] = self.all.groups.cpu().numpy().astype(np.int64)
        files.append(write_npz_file(partial / "splits.npz", arrays))
        figures: dict[str, dict[str, str]] = {}
        used: set[str] = set()
        for evaluator, named in sorted(self.metrics.figures.items()):
            for name, png in sorted(named.items()):
                stem, n = f"figures/{_safe_part(evaluator)}-{_safe_part(name)}", 1
                relpath = f"{stem}.png"
                while relpath.lower() in used:  # names that differ only in characters a file name cannot hold
                    n += 1
                    relpath = f"{stem}-{n}.png"
                used.add(relpath.lower())
                (partial / "figures").mkdir(exist_ok=True)
                (partial / relpath).write_bytes(png)
                figures.setdefault(evaluator, {})[name] = relpath
        self.file_hashes = {str(p.relative_to(partial)): _file_hash(p) for p in sorted(files)}
        self.figures = figures

    def build_report(self) -> dict[str, Any]:
        metrics = self.metrics.to_dict()
        metrics["figures"] = self.figures
        return {
            "setforge": {"version": _versions().get("setforge"), "api_version": _api_version()},
            "versions": _versions(),
            "components": self._components_used(),
            "seed": self.seed,
            "device": str(self.device),
            "config": self.config.model_dump(mode="json"),
            "output": {"format": self.config.output.format, "shard_rows": self.config.output.shard_rows},
            "modality": self.all.modality,
            "classes": list(self.all.classes),
            "row_shape": list(self.all.shape),
            "features": None if self.all.features is None else self.all.features.to_dict(),
            "source": {"name": self.source.name, "rows": len(self.all), "own_split": self.own_split,
                       "parts": dict(zip(self.part_names, self.part_sizes)), "dropped_invalid": self.dropped,
                       "duplicates_dropped": int(len(self.duplicate_index)),
                       "deduplicate": self.config.source.deduplicate.method},
            "split": {"method": self.split_method, "carved": self.carved,
                      "rows": {"train": len(self.raw_train), "val": len(self.val), "test": len(self.test)},
                      "leaked_dropped": int(len(self.leaked_index)),
                      "fingerprints": {"raw_train": self.raw_train.fingerprint(), "val": self.val.fingerprint(),
                                       "test": self.test_fingerprint}},
            "preprocess": [{"name": ref.name, "params": ref.params, "changes_units": bool(pre.changes_units),
                            "state_file": path}
                           for ref, pre, path in zip(self.config.preprocess, self.preprocessors, self.preprocess_files)],
            "counts": {"raw_train": _counts(self.raw_train), "optimised": _counts(self.train),
                       "val": _counts(self.val), "test": _counts(self.test)},
            "steps": self.step_reports,
            "evaluators": {scope: {"name": e.name, "params": e.params.model_dump(mode="json"),
                                   "summary": _evaluator_detail(e)} for scope, e in self.evaluators},
            "metrics": metrics,
            "files": self.file_hashes,
            "warnings": self.warnings,
        }

    # ---------------------------------------------------------------------------- whole
    def prepare_data(self) -> None:
        started = time.perf_counter()
        self.load_source()
        self.timings["load"] = time.perf_counter() - started
        started = time.perf_counter()
        keep = self.deduplicate()
        self.split(keep)
        self.resolve_classes()
        self.timings["split"] = time.perf_counter() - started
        started = time.perf_counter()
        self.preprocess()
        self.timings["preprocess"] = time.perf_counter() - started
        get_format(self.config.output.format).check(self.raw_train)  # before hours of steps, not after
        self.test_fingerprint = self.test.fingerprint()

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

    def _execute(self) -> RunResult:
        from tqdm.auto import tqdm

        begun = time.perf_counter()
        self.folder.check(self.force)
        self.build()
        self.folder.open(force=self.force, resume=self.resume)
        self.emit(Event("run_started", data={"seed": self.seed, "device": str(self.device),
                                             "dir": str(self.folder.final), "resume": self.resume}))
        self.prepare_data()
        with tqdm(total=len(self.steps) + len(self.evaluators), desc="setforge", unit="stage",
                  disable=not self.progress, file=sys.stderr, leave=False) as bar:
            self.run_steps(bar)
            self.evaluate(bar)
        started = time.perf_counter()
        self.write()
        report = self.build_report()
        self.timings["write"] = time.perf_counter() - started
        self.timings["total"] = time.perf_counter() - begun
        write_report(self.folder.partial, report, self.timings)
        run_dir = self.folder.commit(force=self.force)
        self.emit(Event("run_finished", data={"metrics": self.metrics, "dir": str(run_dir)}))
        return RunResult(run_dir=run_dir, report=report, timings=self.timings, metrics=self.metrics,
                         raw_train=self.raw_train, train=self.train, val=self.val, test=self.test,
                         steps=list(self.records))

    def dry_text(self) -> str:
        self.build()
        self.prepare_data()
        classes = list(self.all.classes)
        counts = self.raw_train.class_counts()
        real = self.raw_train.class_counts(Origin.REAL)
        columns: dict[str, list[str]] = {"raw train": [str(n) for n in counts]}
        lines = [f"dry run: source {self.source.name}, {len(self.all)} rows; split ({self.split_method}): "
                 f"train {len(self.raw_train)} | val {len(self.val)} | test {len(self.test)}"]
        if self.dropped:
            lines.append("  dropped invalid rows: " + ", ".join(f"{k} {v}" for k, v in self.dropped.items()))
        if len(self.duplicate_index):
            lines.append(f"  {self.config.source.deduplicate.method} duplicates dropped: {len(self.duplicate_index)}")
        known = True
        notes = []
        for step in self.steps:
            title = f"[{step.index}] {step.kind} {step.name}"
            if step.kind == "augment":
                selected = set(self._selected(step, counts))
                added = [n * step.config.copies if c in selected else 0 for c, n in enumerate(counts)]
                counts = [n + a for n, a in zip(counts, added)]
            elif step.kind == "generate":
                need = self.generation_plan(step, counts, real)
                if sum(need) == 0:
                    notes.append(f"{title}: nothing to generate")
                counts = [n + a for n, a in zip(counts, need)]
            else:
                expected = getattr(step.component, "expected_counts", None)
                after = expected(list(counts), classes) if callable(expected) else None
                if after is not None:
                    counts = [int(n) for n in after]
                    real = [min(r, n) for r, n in zip(real, counts)]
                else:
                    known = False
                    notes.append(f"{title}: counts depend on the sampler and the data; shown unchanged")
            columns[title] = [str(n) if known else f"{n}?" for n in counts]
        columns["val"] = [str(n) for n in self.val.class_counts()]
        columns["test"] = [str(n) for n in self.test.class_counts()]
        header = ["class", *columns]
        rows = [[name, *(col[c] for col in columns.values())] for c, name in enumerate(classes)]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines.append("")
        for row in [header, *rows]:
            lines.append("  " + "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                                          for i, (v, w) in enumerate(zip(row, widths))))
        lines += [""] + notes if notes else []
        evaluators = ", ".join(scope for scope, _ in self.evaluators) or "none"
        lines.append(f"evaluators: {evaluators}")
        exists = " (exists: needs --force)" if self.folder.final.exists() else ""
        lines.append(f"run folder: {self.folder.final}{exists}")
        return "\n".join(lines)


def _api_version() -> int:
    from . import API_VERSION

    return API_VERSION


def _evaluator_detail(evaluator: Component) -> str:
    """A short description of an evaluator's main params for the summary (e.g. its model)."""
    fields = evaluator.params.model_dump(mode="json")
    model = fields.get("model")
    return "" if model is None else f"model {model}"


def _default_registry(config: Any) -> Any:
    from .registry import Registry

    return Registry(local=list(config.plugins), disabled=list(config.plugins_deny), allow=config.plugins_allow,
                    base_dir=config.base_dir).load()


# ------------------------------------------------------------------------------ entry points
def run(config: Any, registry: Any = None, *, force: bool = False, resume: bool = False,
        progress: bool = True) -> RunResult:
    """Run a validated `RunConfig` into its run folder and return the `RunResult`.

    `registry`: the loaded plugin `Registry` (default: one built from the config's plugin
    options). `force` replaces an existing run folder; `resume` continues in ``<dir>.partial/``
    (finished steps whose input and config are unchanged are reused; generators continue from
    their checkpoints). `progress` shows progress bars on stderr.
    """
    registry = _default_registry(config) if registry is None else registry
    return _Run(config, registry, force=force, resume=resume, progress=progress).execute()


def dry_run(config: Any, registry: Any = None) -> str:
    """Validate, load the source, split, and show the class counts each step would produce,
    without running any step (a resampler's counts are shown unchanged, marked ``?``, unless its
    ``expected_counts(counts, classes)`` knows them). Writes nothing."""
    registry = _default_registry(config) if registry is None else registry
    return _Run(config, registry, dry=True).dry_text()
