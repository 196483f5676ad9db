"""Base classes of the six component kinds.

The host calls a public, final method that validates input, moves data to the device, batches,
keeps provenance and hands out randomness; that method calls the one protected method a plugin
author writes:

=========== ============================================== ===========================================
kind        the host calls                                 the author writes
=========== ============================================== ===========================================
source      ``load(ctx) -> Dataset | Splits``              ``_load(ctx)``
preprocess  ``fit(train, ctx)``, ``transform``, ``inverse`` ``_fit``, ``_transform``, ``_inverse``
augment     ``augment(ds, ctx)``; ``forward(x, y)``        ``_make_params(x, y, generator)``, ``_transform``
resample    ``resample(ds, ctx) -> Dataset``               ``_resample(ds, ctx)``
generate    ``fit(ds, ctx)``, ``sample(labels, ctx)``      ``_fit(ds, ctx)``, ``_sample(labels, ctx)``
evaluate    ``evaluate(ectx) -> Metrics``                  ``_evaluate(ectx)``
=========== ============================================== ===========================================

Every component has a kebab-case ``name`` unique within its kind, the ``modalities`` it accepts,
a nested pydantic ``Params`` model (extra keys forbidden, every field with a default, bounds in
``Field``) and a docstring whose first line ``setforge plugins list`` shows. The host builds it as
``cls(params)``.

The `Component` base lives in `setforge.base` and the `Augmenter` base in `setforge.augmenter`;
both are importable from here with the other kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, Field

from .augmenter import Augmenter, take_params
from .base import NAME_PATTERN, Component, ExistingPath, MustExist, read_weights
from .context import EvalContext, Metrics, StepContext
from .dataset import Dataset, Origin, Splits
from .errors import ConfigError, DataError, PluginError
from .hookspecs import KINDS

__all__ = ["KINDS", "Component", "Source", "Preprocessor", "Augmenter", "Resampler", "Generator",
           "Evaluator", "Observer", "take_params", "ResampleResult", "SourceScan", "BASE_FOR_KIND", "NAME_PATTERN", "ExistingPath", "MustExist",
           "read_weights"]

# ----------------------------------------------------------------------------- source
@dataclass(frozen=True)
class SourceScan:
    """What a streaming source knows before it reads any row's data (`Source.scan`).

    ``labels``: ``(N,)`` int64 class ids of the source's rows, ``-1`` for an unlabelled row and
    ``-2`` for a row already found invalid (dropped and counted); ``split``: ``(N,)`` strings
    ``train`` / ``val`` / ``test`` when the source has its own split; ``groups``: ``(N,)`` group
    ids or None. ``read(rows)`` reads the rows at the sorted source indices `rows` (a batch) as a
    `Dataset` of real rows whose ``row_id`` holds their source indices, leaving out (through
    ``Source._invalid``) rows it cannot read.
    """

    labels: np.ndarray
    classes: tuple[str, ...]
    modality: str
    shape: tuple[int, ...]
    read: Callable[[np.ndarray], Dataset]
    split: np.ndarray | None = None
    groups: np.ndarray | None = None
    features: Any = None

    @property
    def nbytes(self) -> int:
        """What the labelled rows take in memory as float32."""
        return int((self.labels >= 0).sum()) * math.prod(self.shape) * 4


class Source(Component):
    """Reads a dataset. Author: ``_load(ctx) -> Dataset | Splits``.

    Invalid rows (NaN, missing values, labels outside the class list, unreadable files, ragged
    lines) go through ``self._invalid(where, reason)``: with ``on_invalid="error"`` (the default)
    it raises a `DataError` naming the place; with ``"drop"`` it counts the row in
    ``self.dropped`` (``{reason: count}``, reported by the host) and the source leaves it out.
    """

    kind = "source"

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None):
        super().__init__(params)
        self.on_invalid = "error"
        self.dropped: dict[str, int] = {}

    def load(self, ctx: StepContext, on_invalid: str = "error") -> Dataset | Splits:
        """Read the data: a `Dataset` of real rows, or the source's own `Splits`."""
        if on_invalid not in ("error", "drop"):
            raise ConfigError(problems=[("source.on_invalid", f"must be 'error' or 'drop', got {on_invalid!r}")])
        self.on_invalid, self.dropped = on_invalid, {}
        result = self._load(ctx)
        if not isinstance(result, (Dataset, Splits)):
            raise PluginError(f"source '{self.name}' returned {type(result).__name__}, not a Dataset or Splits")
        for part in [result] if isinstance(result, Dataset) else [result.train, result.val, result.test]:
            if part is not None:
                self._check_modality(part)
                if bool((part.origin != int(Origin.REAL)).any()):
                    raise PluginError(f"source '{self.name}' returned rows that are not Origin.REAL")
        return result

    def scan(self, ctx: StepContext, on_invalid: str = "error") -> SourceScan:
        """For a streaming run (a source with ``streams = True``): the rows' labels and layout, and
        how to read them a batch at a time."""
        self.on_invalid, self.dropped = on_invalid, {}
        scan = self._scan(ctx)
        if not isinstance(scan, SourceScan):
            raise PluginError(f"source '{self.name}'._scan returned {type(scan).__name__}, not a SourceScan")
        return scan

    def _scan(self, ctx: StepContext) -> SourceScan:
        raise NotImplementedError

    def _invalid(self, where: str, reason: str) -> None:
        """Report an invalid row at `where` (file, row, column): raise, or count it as dropped."""
        if self.on_invalid == "error":
            raise DataError(f"source '{self.name}': {where}: {reason} "
                            f"(fix the data, or set source.on_invalid: drop to drop and count such rows)")
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _load(self, ctx: StepContext) -> Dataset | Splits:
        raise NotImplementedError


# ------------------------------------------------------------------------- preprocess
class Preprocessor(Component):
    """Fitted on the training split only, then applied to every split.

    Author: ``_fit(train, ctx)``, ``_transform(ds)``; when it changes units (``changes_units =
    True``) also ``_inverse(ds)`` so writers give data back in original units; ``_state_dict()``
    and ``_load_state_dict(state)`` for the fitted state saved in the run folder (plain numbers,
    lists and tensors).
    """

    kind = "preprocess"
    changes_units: ClassVar[bool] = False

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None):
        super().__init__(params)
        self.fitted = False

    def fit(self, train: Dataset, ctx: StepContext) -> "Preprocessor":
        """Learn the state from the training split."""
        self._check_modality(train)
        self._fit(train.to(ctx.device), ctx)
        self.fitted = True
        return self

    def transform(self, ds: Dataset) -> Dataset:
        """Apply the fitted state; the rows, their labels and provenance stay."""
        if not self.fitted:
            raise PluginError(f"preprocess '{self.name}': transform() called before fit()")
        self._check_modality(ds)
        return self._checked(self._transform(ds), ds, "transform")

    def inverse(self, ds: Dataset) -> Dataset:
        """Give data back in the units it had before `transform` (identity unless units change)."""
        if not self.changes_units:
            return ds
        if not self.fitted:
            raise PluginError(f"preprocess '{self.name}': inverse() called before fit()")
        return self._checked(self._inverse(ds), ds, "inverse")

    def state_dict(self) -> dict[str, Any]:
        """The fitted state, for the run folder."""
        return self._state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> "Preprocessor":
        self._load_state_dict(state)
        self.fitted = True
        return self

    def _checked(self, out: Any, ds: Dataset, what: str) -> Dataset:
        if not isinstance(out, Dataset):
            raise PluginError(f"preprocess '{self.name}'.{what} returned {type(out).__name__}, not a Dataset")
        if len(out) != len(ds) or not torch.equal(out.y, ds.y) or not torch.equal(out.origin, ds.origin):
            raise PluginError(f"preprocess '{self.name}'.{what} must keep every row, its label and provenance")
        return out

    def _fit(self, train: Dataset, ctx: StepContext) -> None:
        return None

    def _transform(self, ds: Dataset) -> Dataset:
        raise NotImplementedError

    def _inverse(self, ds: Dataset) -> Dataset:
        raise NotImplementedError

    def _state_dict(self) -> dict[str, Any]:
        return {}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


# -------------------------------------------------------------------------- resample
ResampleResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class Resampler(Component):
    """Over-, under- or cleaning-sampling of the training split.

    Author: ``_resample(ds, ctx) -> (kept_index, new_x, new_y, new_parent)``: which input rows
    stay (indices into `ds`), the new rows and, for each, the index in `ds` of the row it grew
    from (-1 for none). The host keeps the provenance of kept rows and marks new rows
    ``Origin.RESAMPLED`` with ``parent`` traced back to the raw training split.
    """

    kind = "resample"
    #: The origin of the rows a sampler adds (``PSEUDO_LABELLED`` for a step that labels unlabelled rows).
    new_origin: ClassVar[Origin] = Origin.RESAMPLED

    def resample(self, ds: Dataset, ctx: StepContext) -> Dataset:
        """Run the sampler on `ds` (on ``ctx.device``) and return the resampled dataset."""
        self._check_modality(ds)
        ds = ds.to(ctx.device)
        result = self._resample(ds, ctx)
        if not isinstance(result, tuple) or len(result) != 4:
            raise PluginError(f"resample '{self.name}' must return (kept_index, new_x, new_y, new_parent)")
        kept, new_x, new_y, new_parent = (torch.as_tensor(v, device=ds.device) if not isinstance(v, list) else v
                                          for v in result)
        kept = kept.to(torch.int64).flatten()
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= len(ds)):
            raise PluginError(f"resample '{self.name}' kept row indices outside 0..{len(ds) - 1}")
        new_y = new_y.to(torch.int64).flatten()
        new_parent = new_parent.to(torch.int64).flatten()
        m = new_y.numel()
        if ds.modality != "text":
            if new_x.dtype != torch.float32 or tuple(new_x.shape) != (m, *ds.shape):
                raise PluginError(f"resample '{self.name}' returned new_x {tuple(new_x.shape)} {new_x.dtype}, "
                                  f"expected {(m, *ds.shape)} float32")
        if new_parent.numel() != m:
            raise PluginError(f"resample '{self.name}' returned {new_parent.numel()} parents for {m} new rows")
        if m and (int(new_parent.max()) >= len(ds) or int(new_parent.min()) < -1):
            raise PluginError(f"resample '{self.name}' returned parents outside -1..{len(ds) - 1}")
        lineage = ds.lineage()
        parent = torch.where(new_parent >= 0, lineage[new_parent.clamp(min=0)], -1)
        # Over-samplers keep every row in order: reuse the input instead of copying all of it.
        keeps_all = kept.numel() == len(ds) and torch.equal(kept, torch.arange(len(ds), device=kept.device))
        kept_ds = ds if keeps_all else ds[kept]
        if m == 0:
            return kept_ds
        groups = None
        if ds.groups is not None:
            groups = torch.where(new_parent >= 0, ds.groups[new_parent.clamp(min=0)], -1)
        try:
            new = ds.replace(x=new_x, y=new_y, origin=torch.full_like(new_y, int(self.new_origin)),
                             step=torch.full_like(new_y, ctx.step), parent=parent, row_id=None, groups=groups)
        except DataError as error:
            raise PluginError(f"resample '{self.name}' returned invalid rows: {error}") from None
        return Dataset.concat([kept_ds, new])

    def expected_counts(self, counts: list[int], classes: Sequence[str]) -> list[int] | None:
        """Rows per class after this sampler, from the class `counts` alone (``--dry-run`` shows
        them); None (the default) when they depend on the data."""
        return None

    def _resample(self, ds: Dataset, ctx: StepContext) -> ResampleResult:
        raise NotImplementedError


# -------------------------------------------------------------------------- generate
class Generator(Component):
    """Learns the training distribution and samples new rows for requested labels.

    Author: ``_fit(ds, ctx)`` and ``_sample(labels, ctx) -> x`` (one batch of at most
    ``ctx.batch_size`` labels, so that sampling streams). To support the shared ``checkpoint``
    param (reuse a fitted generator), also ``_state_dict()`` / ``_load_state_dict(state)``.
    """

    kind = "generate"
    streams = True  # sampled batch by batch; a streaming run fits it from params.checkpoint only

    class Params(Component.Params):
        """Shared generator params."""

        checkpoint: ExistingPath | None = Field(None, description="a fitted generator saved by an earlier run: "
                                                          "load it instead of training")

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None):
        super().__init__(params)
        self.fitted = False
        self.classes: tuple[str, ...] = ()
        self.modality = ""
        self.row_shape: tuple[int, ...] = ()
        self.features = None
        #: What training did, for the step's report (plain values; set by `_fit`, None: nothing to
        #: report). Its ``warnings`` entry, a list of strings, also goes to the run's warnings.
        self.training_report: dict[str, Any] | None = None

    def fit(self, ds: Dataset, ctx: StepContext) -> "Generator":
        """Train on `ds` (or load ``params.checkpoint``)."""
        self._check_modality(ds)
        if len(ds) == 0:
            raise DataError(f"generate '{self.name}': nothing to fit on (0 rows)")
        self.classes, self.modality, self.row_shape, self.features = ds.classes, ds.modality, ds.shape, ds.features
        if self.params.checkpoint is not None:
            self.load(self.params.checkpoint, map_location=ctx.device)
        else:
            self._fit(ds.to(ctx.device), ctx)
        self.fitted = True
        return self

    def sample(self, labels: torch.Tensor | Sequence[int], ctx: StepContext) -> Dataset:
        """New rows for `labels`, in batches of ``ctx.batch_size``: ``Origin.GENERATED``, parent -1."""
        if not self.fitted:
            raise PluginError(f"generate '{self.name}': sample() called before fit()")
        labels = torch.as_tensor(labels, dtype=torch.int64, device=ctx.device).flatten()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            raise DataError(f"generate '{self.name}': labels must lie in 0..{len(self.classes) - 1}")
        xs = []
        with torch.no_grad():
            for start in range(0, labels.numel(), ctx.batch_size):
                batch = labels[start:start + ctx.batch_size]
                x = self._sample(batch, ctx)
                if not isinstance(x, torch.Tensor) or tuple(x.shape) != (len(batch), *self.row_shape) \
                        or x.dtype != torch.float32:
                    got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
                    raise PluginError(f"generate '{self.name}' returned {got}, expected "
                                      f"{(len(batch), *self.row_shape)} float32")
                xs.append(x.to(ctx.device))
        x = torch.cat(xs) if xs else torch.zeros((0, *self.row_shape), device=ctx.device)
        try:
            return Dataset(x=x, y=labels, classes=self.classes, modality=self.modality, features=self.features,
                           origin=torch.full_like(labels, int(Origin.GENERATED)),
                           step=torch.full_like(labels, ctx.step), parent=torch.full_like(labels, -1),
                           row_id=torch.full_like(labels, -1))
        except DataError as error:
            raise PluginError(f"generate '{self.name}' returned invalid rows: {error}") from None

    def save(self, path: str | Path) -> Path:
        """Save the fitted generator (tensors and plain values only) to `path`."""
        path = Path(path)
        state = {"setforge_generator": self.name, "classes": list(self.classes), "modality": self.modality,
                 "row_shape": list(self.row_shape), "columns": _column_names(self.features),
                 "state": self._state_dict()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    def load(self, path: str | Path, map_location: Any = "cpu") -> "Generator":
        """Load a generator saved by `save` (``weights_only=True``: no code runs)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"generate '{self.name}': checkpoint {path} does not exist")
        state = read_weights(path, f"generate '{self.name}': the checkpoint", map_location)
        if not isinstance(state, dict) or state.get("setforge_generator") != self.name:
            held = state.get("setforge_generator") if isinstance(state, dict) else None
            raise DataError(f"generate '{self.name}': {path} holds " + (f"a '{held}' generator" if held else
                                                                          "no setforge generator"))
        if self.classes and tuple(state["classes"]) != tuple(self.classes):
            raise DataError(f"generate '{self.name}': {path} was fitted on classes {state['classes']}, "
                            f"the data has {list(self.classes)}")
        if self.modality:  # (fitting on data: the checkpoint's rows must be this data's rows)
            saved = (state["modality"], tuple(state["row_shape"]), state.get("columns", _column_names(self.features)))
            data = (self.modality, tuple(self.row_shape), _column_names(self.features))
            if saved != data:
                raise DataError(f"generate '{self.name}': {path} was fitted on {_rows_text(*saved)}; the data has "
                                f"{_rows_text(*data)} (resize or select the data as for that run, or train anew)")
        self.classes, self.modality = tuple(state["classes"]), state["modality"]
        self.row_shape = tuple(state["row_shape"])
        self._load_state_dict(state["state"])
        self.fitted = True
        return self

    def _fit(self, ds: Dataset, ctx: StepContext) -> None:
        raise NotImplementedError

    def _sample(self, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def _state_dict(self) -> dict[str, Any]:
        raise PluginError(f"generate '{self.name}' cannot be saved (it has no _state_dict)")

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise PluginError(f"generate '{self.name}' cannot load a checkpoint (it has no _load_state_dict)")


# -------------------------------------------------------------------------- evaluate
def _column_names(features: Any) -> list[str] | None:
    return None if features is None else list(features.names)


def _rows_text(modality: str, shape: tuple[int, ...], columns: list[str] | None) -> str:
    text = f"{modality} rows of shape {shape}"
    return text + (f" (columns {', '.join(columns)})" if columns else "")


class Evaluator(Component):
    """Measures the optimised set. Author: ``_evaluate(ectx) -> Metrics`` with relative paths."""

    kind = "evaluate"
    #: Whether other evaluators read what this one leaves in the run's cache (the run's downstream
    #: model, which they train alike): the host runs such evaluators before the rest, each group in
    #: ``evaluate`` order, so the run file's order does not change what the others find.
    runs_first: ClassVar[bool] = False

    def evaluate(self, ectx: EvalContext) -> Metrics:
        """Run the evaluator; its measures are filed under its name."""
        self._check_modality(ectx.train)
        result = self._evaluate(ectx)
        if not isinstance(result, Metrics):
            raise PluginError(f"evaluate '{self.name}' returned {type(result).__name__}, not Metrics")
        return result.scoped(self.name)

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        raise NotImplementedError

    @classmethod
    def compare_runs(cls, base: Path, other: Path) -> dict[str, dict[str, Any]]:
        """Paired comparisons of two finished runs that only this evaluator can make, from what it
        wrote into its folder (``ectx.workdir``) in each: `base` in the first run, `other` in
        another. ``{path: {"value", "interval", "estimator"}}``: ``path`` as in its metrics (no
        scope), ``value`` the other run's number minus the first's, ``interval`` ``[low, high]``
        the uncertainty of that difference. ``setforge compare`` judges these paths by the
        interval instead of by the two runs' std. The default has none: ``{}``."""
        return {}


# --------------------------------------------------------------------------- observe
class Observer(Component):
    """Watches a run that enables it (``observe: [NAME]``). Author: ``_open(ctx)``, ``_observe(event)``
    and ``_close()``; ``ctx.workdir`` is the observer's own folder inside the run folder."""

    kind = "observe"
    modalities = ("image", "tabular", "audio", "text")

    def open(self, ctx: StepContext) -> "Observer":
        """Called once, when the run starts."""
        self._open(ctx)
        return self

    def observe(self, event: Any) -> None:
        """Called for every event of the run (`setforge.Event`)."""
        self._observe(event)

    def close(self) -> None:
        """Called once at the end of the run, whether it finished or failed."""
        self._close()

    def _open(self, ctx: StepContext) -> None:
        return None

    def _observe(self, event: Any) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        return None


BASE_FOR_KIND: dict[str, type[Component]] = {
    "source": Source, "preprocess": Preprocessor, "augment": Augmenter,
    "resample": Resampler, "generate": Generator, "evaluate": Evaluator, "observe": Observer,
}
