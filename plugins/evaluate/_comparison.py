"""Real rows against new rows, by origin, overall and per class: the grouping every distribution
metric shares.

The real reference is the real rows of the raw training split (what the steps started from);
the new rows are the optimised training set's augmented, resampled and generated rows. Groups,
with the paths metrics are filed under::

    augmented/overall   augmented/by_class/<class>      (one family per origin present)
    resampled/...       generated/...
    new/overall         new/by_class/<class>            (every new row, whatever its origin)

Overall groups are class-matched by default (``match_classes``): their new rows are compared
with real rows in the same class proportions (the real rows of those classes, reweighted, see
`Task`), so that an overall number measures the rows, not the difference of class mixes.

A group with at least ``min_rows`` real and ``min_rows`` new rows gets the metric's standard
estimator; a smaller one its small-sample estimator with an uncertainty interval (or, with
``small_sample: false``, is skipped with the counts and the param to change).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from setforge.context import Metrics
from setforge.dataset import Dataset, Origin

from ._features import FeatureParams, embed_rows, real_rows, resolve_feature_space
from ._stats import Estimate

if TYPE_CHECKING:
    from setforge.context import EvalContext

__all__ = ["Group", "comparison_groups", "Comparison", "prepare_comparison", "measure_groups", "NEW", "Task",
           "class_shares", "class_weights", "matched_reference"]

def path_segment(name: Any) -> str:
    """A class or step name as one segment of a metric path: ``/`` (the path separator) and ``%``
    percent-encoded, so two names never share a segment (``a/b`` is ``a%2Fb``, ``a_b`` stays)."""
    return str(name).replace("%", "%25").replace("/", "%2F")


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
        return f"{self.family}/overall" if self.label is None else f"{self.family}/by_class/{path_segment(self.label)}"

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
    """The augmented, resampled and generated rows of a dataset (pseudo-labelled rows are real
    rows, with a label a model gave them: not new)."""
    return ds[torch.isin(ds.origin, torch.tensor([int(o) for o in _NEW_ORIGINS], device=ds.origin.device))]


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


@dataclass(frozen=True)
class Task:
    """One group to measure, as `measure_groups` hands it to a metric's `measure`.

    ``real_y`` and ``new_y`` are the classes of the real and new rows given with it. ``shares``
    is set for a class-matched overall group: the share of each class among the group's new rows,
    in sorted class order (the real rows given are then only those of these classes, the strata
    of ``real_y``), so that the metric compares the new rows with real rows in the same class
    proportions. ``small`` says that a side has fewer than ``min_rows`` rows and the metric should
    use its small-sample estimator; ``generator`` is seeded by the group's path and ``rounds`` is
    the number of bootstrap rounds.
    """

    group: Group
    real_y: torch.Tensor
    new_y: torch.Tensor
    shares: torch.Tensor | None
    small: bool
    generator: torch.Generator
    rounds: int

    @property
    def strata(self) -> torch.Tensor | None:
        """The real rows' classes when the group is class-matched, else None (one stratum)."""
        return None if self.shares is None else self.real_y

    @property
    def new_strata(self) -> torch.Tensor | None:
        """The new rows' classes when the group is class-matched (a bootstrap keeps the mix)."""
        return None if self.shares is None else self.new_y

    def real_weights(self) -> torch.Tensor | None:
        """Per real row ``share(c) / real rows of c``: the real rows reweighted to the new rows'
        class mix (all equal when the mixes already match); None when not class-matched."""
        return None if self.shares is None else class_weights(self.real_y, self.shares)


def class_shares(new_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes present in `new_y` (sorted) and the share of the rows each one has."""
    classes, counts = torch.unique(new_y, return_counts=True)
    return classes, counts.to(torch.float64) / counts.sum()


def class_weights(real_y: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """Per row of `real_y` (whose sorted classes are the strata of `shares`): its class's share
    divided by the class's row count, so the rows of each class carry that class's share."""
    _, inverse, counts = torch.unique(real_y, return_inverse=True, return_counts=True)
    return shares.to(torch.float64)[inverse] / counts.to(torch.float64)[inverse]


def matched_reference(real_y: torch.Tensor, new_y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices of real rows drawn without replacement in the class proportions of `new_y`, as many
    as the real rows allow: ``N = min_c floor(real_c * new_total / new_c)`` and ``round(new_c * N /
    new_total)`` rows of each class c of the new rows. When the mixes already match, every real
    row (in order). Classes of `new_y` must all have real rows."""
    classes, new_counts = torch.unique(new_y, return_counts=True)
    total = int(new_counts.sum())
    real_index = [(real_y == c).nonzero().flatten() for c in classes.tolist()]
    size = min(len(rows) * total // int(m) for rows, m in zip(real_index, new_counts.tolist()))
    gen_device = generator.device
    chosen = []
    for rows, m in zip(real_index, new_counts.tolist()):
        take = (2 * int(m) * size + total) // (2 * total)
        if take < len(rows):
            keys = torch.rand(len(rows), generator=generator, device=gen_device).to(rows.device)
            rows = rows[keys.argsort()[:take]].sort().values
        chosen.append(rows)
    return torch.cat(chosen).sort().values


Measured = Mapping[str, "Estimate | tuple[float, float | None]"]


def measure_groups(ectx: "EvalContext", params: FeatureParams, evaluator: str,
                   measure: Callable[[torch.Tensor, torch.Tensor, Task], Measured],
                   min_rows: int | None = None, need: str = "",
                   better: str | Mapping[str, str | None] | None = None) -> Metrics:
    """Run `measure(real_features, new_features, task)` on every group (see `Task`); `better` says
    which way each number is better (``"lower"`` for a distance; a mapping by estimate name).

    `measure` returns ``{name: Estimate}`` (or ``(value, std)``); name ``""`` files the number at
    the group's path, any other name below it (``generated/overall/precision``). Each number's
    ``n`` is the group's count of new rows. Overall groups are class-matched (``params.
    match_classes``): only the real rows of the classes among the group's new rows are given,
    with the new rows' class shares, and each estimator's name gets ``-class-weighted``. A group
    with fewer than `min_rows` (default ``params.min_rows``; `need` says why more) rows on a side
    is measured with the small-sample estimator (``params.small_sample``), else skipped with the
    counts; a group with fewer than 2 rows on a side (or per class, class-matched) is skipped.
    """
    metrics = Metrics()
    comparison = prepare_comparison(ectx, params, evaluator)
    if comparison is None:
        metrics.skip(f"{NEW}/overall", "the optimised training set has no augmented, resampled or generated rows "
                                       "to compare with the real ones")
        return metrics
    minimum = params.min_rows if min_rows is None else min_rows
    real_y, new_y = comparison.real.y.to(comparison.real_features.device), comparison.new.y
    new_y = new_y.to(comparison.new_features.device)
    classes = comparison.real.classes
    done: dict[tuple[str | None, bytes], dict[str, Estimate]] = {}
    for group in comparison.groups:
        real_index, shares = group.real_index, None
        group_new_y = new_y[group.new_index]
        if group.label is None and params.match_classes:
            present, shares = class_shares(group_new_y)
            real_counts = torch.bincount(real_y, minlength=len(classes))[present.to(real_y.device)]
            if bool((real_counts < 2).any()):
                lacking = ", ".join(f"'{classes[c]}' ({int(n)})" for c, n in zip(present.tolist(), real_counts.tolist())
                                    if n < 2)
                metrics.skip(group.path, f"the class-matched comparison needs at least 2 real training rows of each "
                                         f"class of the {group.describe()}; real rows of {lacking} (param "
                                         f"match_classes: false compares with every real row as they are)")
                continue
            real_index = torch.isin(real_y, present.to(real_y.device)).nonzero().flatten()
        n_new, n_real = group.new_index.numel(), real_index.numel()
        small = n_new < minimum or n_real < minimum
        if n_new < 2 or n_real < 2 or (small and not params.small_sample):
            least, why = (minimum, f"{need} (param min_rows)") if n_new >= 2 and n_real >= 2 else (2, "")
            metrics.skip(group.path, f"{n_new} {group.describe()} against {n_real} real rows; {evaluator} reports a "
                                     f"number only from at least {least} of each{why}")
            continue
        # "new" equals an origin family when only one origin is present: reuse that number.
        signature = (group.label, group.new_index.cpu().numpy().tobytes())
        if signature not in done:
            task = Task(group, real_y[real_index], group_new_y, shares, small, ectx.rng.spawn(group.path).torch,
                        params.bootstrap)
            results = measure(comparison.real_features[real_index], comparison.new_features[group.new_index], task)
            done[signature] = {name: _as_estimate(result, shares is not None) for name, result in results.items()}
        for name, e in done[signature].items():
            metrics.add(group.path if not name else f"{group.path}/{name}", e.value, n_new, e.std, e.estimator,
                        e.interval, better.get(name) if isinstance(better, Mapping) else better)
    return metrics


def _as_estimate(result: "Estimate | tuple[float, float | None]", class_matched: bool) -> Estimate:
    e = result if isinstance(result, Estimate) else Estimate(float(result[0]), result[1])
    if class_matched and e.estimator is not None:
        e = Estimate(e.value, e.std, f"{e.estimator}-class-weighted", e.interval)
    return e
