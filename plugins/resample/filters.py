"""Cleaning steps on the training split: drop near-duplicate rows, drop outliers per class.

Both only remove rows (no new rows), and both say what they removed: after a call the component's
``removed`` attribute holds ``{"rows", "of", "share", "by_class": {class: {"removed", "of"}}}``,
and, when the step has a work folder (a pipeline run), the same goes to ``removed.json`` there.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from setforge import DataError, Dataset, Origin, Resampler, StepContext

from .._shared.duplicates import DistanceSpace, duplicate_of
from .._shared.knn import DEFAULT_BLOCK_SIZE

__all__ = ["Deduplicate", "OutlierFilter"]

_SPACE_DESCRIPTION = ("where distances are measured: raw values, standardized numeric columns (fitted on the "
                      "step's input), or auto (standardized for tabular data, raw for images and audio)")


def _categorical(ds: Dataset) -> list[int]:
    return [] if ds.features is None else ds.features.categorical_indices


def _record_removed(component: Resampler, ds: Dataset, removed: torch.Tensor, ctx: StepContext,
                    **extra: Any) -> None:
    """Keep (and, inside a run, write) what a cleaning step removed, per class."""
    total = torch.bincount(ds.y, minlength=ds.num_classes).tolist()
    gone = torch.bincount(ds.y[removed], minlength=ds.num_classes).tolist()
    n, rows = len(ds), int(removed.sum())
    component.removed = {
        "rows": rows, "of": n, "share": rows / n if n else 0.0,
        "by_class": {name: {"removed": gone[c], "of": total[c]} for c, name in enumerate(ds.classes)},
        **extra,
    }
    if ctx.workdir is not None:
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        (ctx.workdir / "removed.json").write_text(json.dumps(component.removed, indent=2, sort_keys=True) + "\n",
                                                  encoding="utf-8")


class Deduplicate(Resampler):
    """Drop exact or near-duplicate rows (closer than a distance threshold), keeping real rows first.

    Two rows are near-duplicates when the root-mean-square difference per value between them is
    below ``threshold`` in the chosen feature space (images: pixel values in [0, 1]; tabular:
    standardized numeric columns, categorical columns must be equal). Rows are kept greedily: real
    rows before derived ones, then in row order; a row is dropped when it duplicates a row
    already kept. The neighbour search is blocked exact k-NN on the step's device. What was
    removed is in ``removed`` (and ``removed.json`` in the step's folder).
    """

    name = "deduplicate"
    modalities = ("image", "tabular", "audio")
    testing_params = {"threshold": 0.2}

    class Params(Resampler.Params):
        """Which rows count as duplicates."""

        method: Literal["exact", "near"] = Field("near", description="exact: equal values only; near: closer "
                                                                     "than threshold")
        threshold: float = Field(0.05, gt=0.0, le=10.0, description="near: RMS difference per value below which two "
                                                                   "rows are duplicates")
        space: Literal["auto", "raw", "standardized"] = Field("auto", description=_SPACE_DESCRIPTION)
        within_class: bool = Field(False, description="only rows of the same class can be duplicates (keeps "
                                                      "conflicting copies with different labels)")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.removed: dict[str, Any] = {}

    def duplicates(self, ds: Dataset, priority: torch.Tensor | None = None,
                   block_size: int = DEFAULT_BLOCK_SIZE) -> torch.Tensor:
        """For each row of `ds`, -1 when it is kept, else the index of the kept row it duplicates.

        `priority`: ``(N,)`` integers, lower kept first (default: real rows before derived ones);
        ties by row order. Runs on ``ds``'s device. The host's pre-split de-duplication
        (``source.deduplicate: near``) calls this with the test part first.
        """
        self._check_modality(ds)
        p = self.params
        space = None
        if p.method == "near":
            space = DistanceSpace.fit(ds.x, ds.modality, p.space, _categorical(ds))
        if priority is None:
            priority = (ds.origin != int(Origin.REAL)).to(torch.int64)
        return duplicate_of(ds.x, method=p.method, threshold=p.threshold, space=space, priority=priority,
                            labels=ds.y if p.within_class else None, block_size=block_size)

    def _resample(self, ds: Dataset, ctx: StepContext):
        dup_of = self.duplicates(ds, block_size=ctx.batch_size)
        removed = dup_of >= 0
        _record_removed(self, ds, removed, ctx, conflicting_labels=int((removed & (ds.y != ds.y[dup_of.clamp(min=0)]))
                                                                       .sum()))
        kept = (~removed).nonzero().flatten()
        empty = ds.x[:0]
        none = torch.zeros(0, dtype=torch.int64, device=ds.device)
        return kept, empty, none, none


class OutlierFilter(Resampler):
    """Drop outlier rows per class (isolation forest or robust z-score) and report the share removed.

    Each class is scored on its own numeric columns (categorical columns never count):

    - ``isolation-forest``: scikit-learn's IsolationForest fitted on the class, seeded from the
      step's Rng; ``contamination`` rows are flagged (``auto``: scikit-learn's score offset).
    - ``robust-z``: each row's distance to the class's median row, in columns scaled by their
      median absolute deviation (MAD; columns with no spread are left out), turned into a modified
      z-score ``0.6745 (d - median d) / MAD d`` (Iglewicz and Hoaglin); rows above ``z`` are flagged.

    Classes with fewer than ``min_rows`` rows are left alone, and at most ``max_share`` of a class
    is removed (the most extreme first). What was removed is in ``removed`` (and
    ``removed.json`` in the step's folder).
    """

    name = "outlier-filter"
    modalities = ("image", "tabular", "audio")
    testing_params = {"n_estimators": 20}

    class Params(Resampler.Params):
        """How outliers are scored and how many may go."""

        method: Literal["isolation-forest", "robust-z"] = Field("isolation-forest", description="the outlier score")
        contamination: Literal["auto"] | float = Field("auto", description="isolation-forest: share of each class "
                                                                           "flagged, in (0, 0.5], or auto")
        n_estimators: int = Field(100, ge=1, le=10_000, description="isolation-forest: trees")
        z: float = Field(3.5, gt=0.0, description="robust-z: modified z-score above which a row is an outlier")
        min_rows: int = Field(10, ge=2, description="classes with fewer rows are not filtered")
        max_share: float = Field(0.25, ge=0.0, le=1.0, description="at most this share of a class is removed")

        @field_validator("contamination")
        @classmethod
        def _contamination_range(cls, value: Any) -> Any:
            if isinstance(value, float) and not 0.0 < value <= 0.5:
                raise ValueError(f"contamination must lie in (0, 0.5] or be 'auto', got {value}")
            return value

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.removed: dict[str, Any] = {}

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """At least one numeric column to score."""
        if ds.features is None or ds.features.numeric_indices:
            return []
        return [("", f"resample '{self.name}': every column is categorical; outliers are scored on numeric "
                     f"columns (remove this step, or declare numeric columns)")]

    def _resample(self, ds: Dataset, ctx: StepContext):
        for _, problem in self.check_data(ds)[:1]:
            raise DataError(problem)
        numeric = list(range(int(np.prod(ds.shape)))) if ds.features is None else ds.features.numeric_indices
        x = ds.x.reshape(len(ds), -1)[:, numeric].double()
        removed = torch.zeros(len(ds), dtype=torch.bool, device=ds.device)
        skipped = []
        seed = ctx.rng.sk_seed()
        for label in range(ds.num_classes):
            rows = (ds.y == label).nonzero().flatten()
            if rows.numel() < self.params.min_rows:
                if rows.numel():
                    skipped.append(ds.classes[label])
                continue
            score, flagged = self._score(x[rows], seed + label)
            limit = int(self.params.max_share * rows.numel())
            if int(flagged.sum()) > limit:
                # Keep only the `limit` most extreme flagged rows (higher score = more outlying).
                order = torch.argsort(torch.where(flagged, score, -torch.inf), descending=True, stable=True)
                flagged = torch.zeros_like(flagged)
                flagged[order[:limit]] = True
            removed[rows[flagged]] = True
        _record_removed(self, ds, removed, ctx, method=self.params.method, classes_not_filtered=skipped)
        kept = (~removed).nonzero().flatten()
        none = torch.zeros(0, dtype=torch.int64, device=ds.device)
        return kept, ds.x[:0], none, none

    def _score(self, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Outlier scores (higher = more outlying) and the flagged rows of one class."""
        if self.params.method == "robust-z":
            return _robust_z(x, self.params.z)
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=self.params.n_estimators, contamination=self.params.contamination,
                                 random_state=seed)
        values = x.cpu().numpy()
        flagged = forest.fit_predict(values) == -1
        score = -forest.score_samples(values)
        return torch.as_tensor(score, device=x.device), torch.as_tensor(flagged, device=x.device)


_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def _median(x: torch.Tensor) -> torch.Tensor:
    """The median along the first dimension, the two middle values averaged for an even count (the
    statistics' median; ``torch.median`` takes the lower one)."""
    ordered = x.sort(dim=0).values
    return (ordered[(len(x) - 1) // 2] + ordered[len(x) // 2]) / 2


def _robust_z(x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Modified z-scores of each row's robust distance to the class median (one-sided)."""
    median = _median(x)
    mad = _median((x - median).abs())
    spread = mad > 0
    if not bool(spread.any()):
        zeros = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        return zeros, zeros.bool()
    scaled = (x[:, spread] - median[spread]) / (_MAD_TO_SIGMA * mad[spread])
    distance = scaled.pow(2).mean(dim=1).sqrt()
    center = _median(distance)
    spread_d = _median((distance - center).abs())
    if float(spread_d) == 0.0:
        z = torch.where(distance > center, torch.inf, 0.0).to(x.dtype)
    else:
        z = 0.6745 * (distance - center) / spread_d
    return z, z > threshold
