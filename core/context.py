"""What the host hands to components: `StepContext`, `EvalContext`, and what comes back from
evaluators (`Metrics`, `Measure`) and from observers (`Event`)."""

from __future__ import annotations

import hashlib
import math
import numbers
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rng import Rng

if TYPE_CHECKING:
    import torch

    from .dataset import Dataset

__all__ = ["Event", "EVENT_KINDS", "Measure", "Metrics", "StepContext", "EvalContext", "StepRecord", "Cache",
           "resolve_device", "available_device", "interval_verdict"]

EVENT_KINDS = ("run_started", "step_started", "step_finished", "train_progress", "samples", "run_finished")


@dataclass(frozen=True)
class Event:
    """Something that happened in a run, sent to every ``setforge_on_event`` implementation.

    ``kind`` is one of, with its ``data``:

    - ``run_started``: ``{"seed", "device", "dir", "resume"}`` (``dir``: the run folder it will be);
    - ``step_started``: ``{"kind"}``; ``step_finished``: ``{"kind", "rows_in", "rows_out", "counts"}``;
    - ``train_progress``: ``{"iteration", "total", "losses"}`` (a generator in training, every
      ``log_every`` steps; the run's training log also reads an optional ``selection``,
      ``{"metric", "value", "chosen"}``, for a plugin that scores its checkpoints);
    - ``samples``: ``{"iteration", "images", "labels", "path"}`` (a sample grid, written under
      ``<dir>.partial/``);
    - ``run_finished``: ``{"metrics", "dir"}``. Observers receive it before the run folder is
      committed; ``setforge_on_event`` implementations after, so their failure on it is printed
      but is not in ``report.json``.

    ``step`` is the pipeline position (None outside steps) and ``name`` the component involved.
    ``ablation`` trains steps again to leave one out: their ``train_progress`` and ``samples``
    come again after the step's ``step_finished`` (a step's curve is what came before it).
    """

    kind: str
    step: int | None = None
    name: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"Event.kind must be one of {list(EVENT_KINDS)}, got {self.kind!r}")


def resolve_device(device: Any = "auto") -> "torch.device":
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device``."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def available_device(name: str) -> "torch.device":
    """`resolve_device`, refusing a device this machine does not have with a `ConfigError` at the
    run file's ``device`` key (CUDA absent or its index too high, MPS absent)."""
    import torch

    from .errors import ConfigError

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


def _ignore(event: Event) -> None:
    return None


@dataclass
class StepContext:
    """Everything a component needs from the host for one call.

    ``rng`` (the step's `Rng`), ``device``, ``workdir`` (this step's folder inside
    ``<dir>.partial/``: checkpoints, sample grids), ``resume`` (continue from what ``workdir``
    holds), ``emit`` (send an `Event`), ``batch_size`` (rows per batch for streaming work),
    ``step`` (pipeline position) and ``name`` (the component's name). For generate steps the
    host also passes ``val`` (the real val split, never trained on: a generator may measure
    itself against it, e.g. to select a checkpoint) and ``cache`` (the run's content-keyed
    `Cache`, kept on disk for plain values, so a resumed run reuses what it holds); both are
    None elsewhere and in `from_seed` unless given. ``unlabelled``: the source's unlabelled rows
    (`Splits.unlabelled`, preprocessed like the training split), None when it has none; their
    ``y`` carries no meaning.
    """

    rng: Rng
    device: "torch.device"
    workdir: Path | None = None
    resume: bool = False
    emit: Callable[[Event], None] = _ignore
    batch_size: int = 4096
    step: int = -1
    name: str | None = None
    progress: bool = False
    val: "Dataset | None" = None
    cache: "Cache | None" = None
    unlabelled: "Dataset | None" = None

    @classmethod
    def from_seed(cls, seed: int, device: Any = "cpu", workdir: str | Path | None = None, **kwargs: Any) -> "StepContext":
        """A context for code that calls a component directly (tests, notebooks, other libraries)."""
        device = resolve_device(device)
        return cls(rng=Rng(seed, device=device), device=device,
                   workdir=None if workdir is None else Path(workdir), **kwargs)

    def ensure_workdir(self) -> Path:
        """The step's folder, created on first use (a fresh temporary folder when none was given)."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="setforge-step-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir


@dataclass(frozen=True)
class Measure:
    """One number with the sample size behind it, and where it has them: its spread (``std``),
    an uncertainty ``interval`` ``(low, high)``, the ``estimator`` that produced it (a short
    name such as ``frechet-class-weighted`` or ``kid-unbiased-bootstrap``) and which way is
    ``better`` (``"higher"`` or ``"lower"``; None for counts and other numbers with no better side),
    which ``setforge compare`` uses to say which run is better."""

    value: float
    n: int
    std: float | None = None
    estimator: str | None = None
    interval: tuple[float, float] | None = None
    better: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _json_float(self.value), "n": int(self.n)}
        if self.std is not None:
            out["std"] = _json_float(self.std)
        if self.estimator is not None:
            out["estimator"] = self.estimator
        if self.interval is not None:
            out["interval"] = [_json_float(v) for v in self.interval]
        if self.better is not None:
            out["better"] = self.better
        return out


def interval_verdict(interval: tuple[float, float], up: str = "better", down: str = "worse") -> str:
    """The verdict on a change (later minus earlier) from its uncertainty interval: `up` when the
    interval lies above 0, `down` below it, ``within noise`` when it holds 0. The built-in
    evaluators' verdicts, the headline and ``setforge compare`` all judge by it."""
    return up if interval[0] > 0 else down if interval[1] < 0 else "within noise"


def _json_float(value: float) -> float | int | str:
    if isinstance(value, int):  # a count
        return value
    value = float(value)
    return value if math.isfinite(value) else str(value)


class Metrics:
    """What evaluators report: ``{evaluator: {path: Measure}}``.

    An evaluator's `_evaluate` builds one with paths relative to itself (``generated/by_class/ring``)
    and the host files them under the evaluator's name (``fid/generated/by_class/ring``). Numbers
    that could not be computed go to ``skipped`` with the reason; figures are PNG bytes by name;
    tables are small text tables by name (a verdict per step, rejected rows) that the summary and
    the HTML report show as they are.
    """

    _STORES = ("measures", "skipped", "figures", "tables")

    def __init__(self) -> None:
        self.measures: dict[str, dict[str, Measure]] = {}
        self.skipped: dict[str, dict[str, str]] = {}
        self.figures: dict[str, dict[str, bytes]] = {}
        self.tables: dict[str, dict[str, dict[str, list]]] = {}
        self._scope = ""

    def add(self, path: str, value: float, n: int, std: float | None = None, estimator: str | None = None,
            interval: tuple[float, float] | None = None, better: str | None = None) -> None:
        """Record one number at `path` computed from `n` rows (with its spread, the estimator that
        made it, an uncertainty interval ``(low, high)`` and which way is better, ``"higher"`` or
        ``"lower"``, where it has them). An integer (a count of rows) is kept as one, so reports
        print it whole; anything else is a float."""
        if better not in (None, "higher", "lower"):
            raise ValueError(f"Metrics.add {path!r}: better must be 'higher', 'lower' or None, not {better!r}")
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)  # a count stays one
        self.measures.setdefault(self._scope, {})[path] = Measure(
            int(value) if whole else float(value), int(n), None if std is None else float(std), estimator,
            None if interval is None else (float(interval[0]), float(interval[1])), better)

    def skip(self, path: str, reason: str) -> None:
        """Record that `path` could not be computed, and why."""
        self.skipped.setdefault(self._scope, {})[path] = reason

    def figure(self, name: str, png: bytes) -> None:
        """Attach a PNG figure for the report."""
        self.figures.setdefault(self._scope, {})[name] = bytes(png)

    def table(self, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Attach a small table for the report: column names and rows of cells (shown as text)."""
        header = [str(h) for h in header]
        rows = [[str(cell) for cell in row] for row in rows]
        if any(len(row) != len(header) for row in rows):
            raise ValueError(f"Metrics.table {name!r}: every row needs {len(header)} cells")
        self.tables.setdefault(self._scope, {})[name] = {"header": header, "rows": rows}

    def scoped(self, evaluator: str) -> "Metrics":
        """This evaluator-relative result filed under `evaluator` (done by the host)."""
        out = Metrics()
        for store_name in self._STORES:
            store = getattr(self, store_name)
            merged: dict[str, Any] = {}
            for values in store.values():
                merged.update(values)
            if merged:
                getattr(out, store_name)[evaluator] = merged
        return out

    def merge(self, other: "Metrics") -> None:
        for store_name in self._STORES:
            for evaluator, values in getattr(other, store_name).items():
                getattr(self, store_name).setdefault(evaluator, {}).update(values)

    def get(self, path: str) -> Measure:
        """A measure by its full path, ``evaluator/relative/path``."""
        evaluator, _, rest = path.partition("/")
        if evaluator in self.measures and rest in self.measures[evaluator]:
            return self.measures[evaluator][rest]
        if "" in self.measures and path in self.measures[""]:
            return self.measures[""][path]
        raise KeyError(path)

    def __contains__(self, path: str) -> bool:
        try:
            self.get(path)
        except KeyError:
            return False
        return True

    def flat(self) -> dict[str, Measure]:
        """Every measure by its full path."""
        return {(f"{ev}/{p}" if ev else p): m for ev, values in self.measures.items() for p, m in values.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: measures, skipped reasons and tables, sorted so two runs compare byte for byte."""
        out: dict[str, Any] = {
            "measures": {ev: {p: self.measures[ev][p].to_dict() for p in sorted(self.measures[ev])}
                         for ev in sorted(self.measures)},
            "skipped": {ev: dict(sorted(self.skipped[ev].items())) for ev in sorted(self.skipped)},
        }
        if self.tables:
            out["tables"] = {ev: dict(sorted(self.tables[ev].items())) for ev in sorted(self.tables)}
        return out


@dataclass(frozen=True)
class StepRecord:
    """One pipeline step as evaluators see it: its position, kind, component name, output dataset."""

    index: int
    kind: str
    name: str
    output: "Dataset"
    counts: Mapping[str, Any] = field(default_factory=dict)


class Cache:
    """A content-keyed cache for expensive results (trained feature networks, features).

    ``get_or_compute(key, fn)`` returns the value stored under `key`, computing and keeping it
    on first use. Keys should be built from content hashes (`Dataset.fingerprint`) and the
    parameters that matter, so that a cached value is never reused for different data. When the
    cache has a folder, values made of tensors, numbers, strings and lists, tuples and dicts of
    them are also kept on disk (``torch.save``), so a resumed run reuses them; they are read back
    with ``torch.load(weights_only=True)``, so no code in a file runs, and a file that does not
    read back (corrupt, or something planted) is computed afresh. Other values (a trained
    module) are kept in memory only.
    """

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._memory: dict[str, Any] = {}

    @staticmethod
    def key(*parts: Any) -> str:
        """A stable key from strings, numbers and fingerprints."""
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def get_or_compute(self, key: str, fn: Callable[[], Any]) -> Any:
        if key in self._memory:
            return self._memory[key]
        import torch

        path = None if self.folder is None else self.folder / f"{key}.pt"
        value = _MISSING
        if path is not None and path.is_file():
            try:
                value = torch.load(path, weights_only=True)
            except Exception:  # noqa: BLE001 - unreadable or not plain data: compute it afresh
                value = _MISSING
        if value is _MISSING:
            value = fn()
            if path is not None and _plain(value):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(value, tmp)
                tmp.replace(path)
        self._memory[key] = value
        return value


_MISSING = object()


def _plain(value: Any) -> bool:
    """True for what ``torch.load(weights_only=True)`` reads back: tensors, numbers, strings, None
    and lists, tuples and dicts (with plain keys) of them."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return False


@dataclass
class EvalContext:
    """What an evaluator sees: the raw and optimised training sets, each step's output (for
    ablation), the untouched real ``val`` and ``test`` splits, the device, its `Rng`, its
    ``workdir`` and a content-keyed ``cache``.

    ``shared_rng`` is the randomness every evaluator of a run shares (the seeds of downstream
    models that several evaluators train alike, such as the raw baseline, so that it trains once
    per run and every evaluator reports the same baseline); it defaults to ``rng``.

    ``replay(indices)``, when the host provides it, returns the training set that the pipeline
    gives when only the steps at those positions run, in pipeline order, on ``raw_train``: each
    step a fresh component with its own run-file params and its own `Rng` (the one it had in the
    run), so a step's draws change only through its changed input. Outputs the run already holds
    (a prefix of the pipeline) are reused, not recomputed. It is None outside a pipeline run; an
    evaluator that needs it (``ablation``'s leave-one-step-out) skips what it cannot measure.
    """

    raw_train: "Dataset"
    train: "Dataset"
    test: "Dataset | None" = None
    val: "Dataset | None" = None
    steps: list[StepRecord] = field(default_factory=list)
    device: "torch.device | str" = "cpu"
    rng: Rng | None = None
    workdir: Path | None = None
    cache: Cache = field(default_factory=Cache)
    emit: Callable[[Event], None] = _ignore
    name: str | None = None
    shared_rng: Rng | None = None
    replay: "Callable[[Sequence[int]], Dataset] | None" = None

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        if self.rng is None:
            self.rng = Rng(0, device=self.device)
        if self.shared_rng is None:
            self.shared_rng = self.rng

    @classmethod
    def from_seed(cls, seed: int, raw_train: "Dataset", train: "Dataset | None" = None, **kwargs: Any) -> "EvalContext":
        """A context for calling an evaluator directly."""
        device = resolve_device(kwargs.pop("device", "cpu"))
        return cls(raw_train=raw_train, train=raw_train if train is None else train,
                   rng=Rng(seed, device=device), device=device, **kwargs)
