"""Real rows against new rows, by origin, overall and per class: the grouping every distribution
metric shares.

The real reference is the real rows of the raw training split (what the steps started from);
the new rows are the optimised training set's augmented, resampled and generated rows. Groups,
with the paths metrics are filed under::

    augmented/overall   augmented/by_class/<class>      (one family per origin present)
    resampled/...       generated/...
    new/overall         new/by_class/<class>            (every new row, whatever its origin)

A group is measured only when it has at least ``min_rows`` real and ``min_rows`` new rows;
otherwise its path is skipped with the counts and the param to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from setforge.context import Metrics
from setforge.dataset import Dataset, Origin

from ._features import FeatureParams, embed_rows, real_rows, resolve_feature_space

if TYPE_CHECKING:
    from setforge.context import EvalContext

__all__ = ["Group", "comparison_groups", "Comparison", "prepare_comparison", "measure_groups", "NEW"]

#: The family of every new row, whatever its origin.
NEW = "new"
_NEW_ORIGINS = (Origin.AUGMENTED, Origin.RESAMPLED, Origin.GENERATED)


@dataclass(frozen=True)
class Group:
    """One comparison: rows ``new_index`` of the new features against rows ``real_index`` of the
    real features. ``family`` is an origin label or ``"new"``; ``label`` is None for overall."""

    family: str
    label: str | None
    new_index: torch.Tensor
    real_index: torch.Tensor

    @property
    def path(self) -> str:
        return f"{self.family}/overall" if self.label is None else f"{self.family}/by_class/{self.label}"

    def describe(self) -> str:
        rows = f"{self.family} rows" if self.family != NEW else "new rows"
        return rows if self.label is None else f"{rows} of class '{self.label}'"


def comparison_groups(real_y: torch.Tensor, new_y: torch.Tensor, new_origin: torch.Tensor,
                      classes: tuple[str, ...], per_class: bool = True) -> list[Group]:
    """Every group: per origin present, then all new rows; overall, then each class present in the
    group's new rows."""
    families: list[tuple[str, torch.Tensor]] = []
    for origin in _NEW_ORIGINS:
        mask = new_origin == int(origin)
        if bool(mask.any()):
            families.append((origin.label, mask))
    if families:
        families.append((NEW, torch.ones_like(new_y, dtype=torch.bool)))
    all_real = torch.arange(real_y.shape[0], device=real_y.device)
    groups: list[Group] = []
    for family, mask in families:
        groups.append(Group(family, None, mask.nonzero().flatten(), all_real))
        if per_class:
            for c in torch.unique(new_y[mask]).tolist():
                groups.append(Group(family, classes[c], (mask & (new_y == c)).nonzero().flatten(),
                                    (real_y == c).nonzero().flatten()))
    return groups


@dataclass
class Comparison:
    """Real and new rows of a run with their features, and the groups to measure."""

    real: Dataset
    new: Dataset
    real_features: torch.Tensor
    new_features: torch.Tensor
    groups: list[Group]
    space: str


def new_rows(ds: Dataset) -> Dataset:
    """The augmented, resampled and generated rows of a dataset."""
    return ds[ds.origin != int(Origin.REAL)]


def prepare_comparison(ectx: "EvalContext", params: FeatureParams, evaluator: str) -> Comparison | None:
    """Embed the real training rows and the new rows; None when there are no new rows."""
    new = new_rows(ectx.train)
    if len(new) == 0:
        return None
    real = real_rows(ectx.raw_train)
    space = resolve_feature_space(ectx, params, evaluator)
    real_features = embed_rows(ectx, space, real)
    new_features = embed_rows(ectx, space, new)
    groups = comparison_groups(real.y, new.y, new.origin, real.classes, params.per_class)
    return Comparison(real, new, real_features, new_features, groups, space.name)


def measure_groups(ectx: "EvalContext", params: FeatureParams, evaluator: str,
                   measure: Callable[[torch.Tensor, torch.Tensor, Group], Mapping[str, tuple[float, float | None]]],
                   min_rows: int | None = None, need: str = "") -> Metrics:
    """Run `measure(real_features, new_features, group)` on every group with enough rows.

    `measure` returns ``{name: (value, std or None)}``; name ``""`` files the number at the
    group's path, any other name below it (``generated/overall/precision``). Each number's ``n``
    is the group's count of new rows (the real reference is the group's real training rows).
    `min_rows` overrides ``params.min_rows`` (metrics that need more, e.g. PRDC's k + 1); `need`
    explains why in the skip reason.
    """
    metrics = Metrics()
    comparison = prepare_comparison(ectx, params, evaluator)
    if comparison is None:
        metrics.skip(f"{NEW}/overall", "the optimised training set has no augmented, resampled or generated rows "
                                       "to compare with the real ones")
        return metrics
    minimum = params.min_rows if min_rows is None else min_rows
    done: dict[tuple[str | None, bytes], dict[str, tuple[float, float | None]]] = {}
    for group in comparison.groups:
        n_new, n_real = group.new_index.numel(), group.real_index.numel()
        if n_new < minimum or n_real < minimum:
            reason = (f"{n_new} {group.describe()} against {n_real} real rows; {evaluator} reports a number only "
                      f"from at least {minimum} of each{need} (param min_rows)")
            metrics.skip(group.path, reason)
            continue
        # "new" equals an origin family when only one origin is present: reuse that number.
        signature = (group.label, group.new_index.cpu().numpy().tobytes())
        if signature not in done:
            done[signature] = dict(measure(comparison.real_features[group.real_index],
                                           comparison.new_features[group.new_index], group))
        for name, (value, std) in done[signature].items():
            metrics.add(group.path if not name else f"{group.path}/{name}", value, n_new, std)
    return metrics
