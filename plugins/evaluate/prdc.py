"""``prdc``: precision, recall, density and coverage of new rows against real ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Metrics

from ._comparison import Task, matched_reference, measure_groups
from ._features import FeatureParams, feature_params_problems
from .._shared.knn import knn
from ._stats import Estimate, ball_counts, exact_squared_distances, wilson_interval

if TYPE_CHECKING:
    from setforge.context import EvalContext

__all__ = ["PrecisionRecallDensityCoverage", "prdc"]


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, block_size: int = 2048) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with `k` nearest neighbours.

    Each real row gets a ball reaching its k-th nearest other real row (and each fake row one
    reaching its k-th nearest other fake row). Precision: share of fake rows inside some real
    ball. Recall: share of real rows inside some fake ball. Density: real balls containing a fake
    row, averaged over fake rows and divided by k. Coverage: share of real balls holding at least
    one fake row. Neighbours and ball counts run in blocks (memory bounded by ``block_size^2``),
    never as a real x fake matrix.
    """
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"prdc needs more than k={k} rows in each set, got {real.shape[0]} real and {fake.shape[0]} new")
    return {name: float(value.double().mean()) for name, value in _prdc_rows(real, fake, k, block_size).items()}


def _prdc_rows(real: torch.Tensor, fake: torch.Tensor, k: int, block_size: int) -> dict[str, torch.Tensor]:
    """Per row, what each PRDC number averages: precision, density (per fake row), recall and
    coverage (per real row)."""
    _, real_index = knn(real, real, k, exclude_self=True, block_size=block_size)
    _, fake_index = knn(fake, fake, k, exclude_self=True, block_size=block_size)
    # Radii recomputed exactly in float64 so that every comparison below is like for like.
    real_radii = exact_squared_distances(real, real[real_index[:, k - 1]])
    fake_radii = exact_squared_distances(fake, fake[fake_index[:, k - 1]])
    real_balls_per_fake = ball_counts(fake, real, real_radii, block_size)
    fake_balls_per_real = ball_counts(real, fake, fake_radii, block_size)
    _, nearest_fake = knn(real, fake, 1, block_size=block_size)
    nearest_fake_distance = exact_squared_distances(real, fake[nearest_fake[:, 0]])
    return {
        "precision": real_balls_per_fake > 0,
        "recall": fake_balls_per_real > 0,
        "density": real_balls_per_fake.double() / k,
        "coverage": nearest_fake_distance < real_radii,
    }


def _small_prdc(real: torch.Tensor, fake: torch.Tensor, k: int, block_size: int) -> dict[str, Estimate]:
    """PRDC from few rows: ``k`` cut to fit (below both row counts), Wilson intervals for the
    three shares and a normal interval (mean +- 1.96 standard errors) for density."""
    k = min(k, real.shape[0] - 1, fake.shape[0] - 1)
    out = {}
    for name, rows in _prdc_rows(real, fake, k, block_size).items():
        values = rows.double()
        value, n = float(values.mean()), values.numel()
        if name == "density":
            half = 1.959964 * float(values.std()) / n ** 0.5
            out[name] = Estimate(value, float(values.std()), f"prdc-k{k}-normal", (max(0.0, value - half), value + half))
        else:
            out[name] = Estimate(value, None, f"prdc-k{k}-wilson", wilson_interval(value, n))
    return out


class PrecisionRecallDensityCoverage(Evaluator):
    """Precision, recall, density and coverage (Naeem et al. 2020) of new rows against real ones.

    Fidelity and diversity apart: precision (are new rows realistic: inside the real rows'
    k-nearest-neighbour balls) and density (how many such balls, /k; about 1 for a matching
    distribution), recall and coverage (do the new rows cover the real ones). Reported per group
    as ``<group>/precision``, ``/recall``, ``/density``, ``/coverage``. Neighbours are exact and
    blocked on the run's device, so 50k rows never need a 50k x 50k matrix. Overall numbers are
    class-matched: the real rows are drawn (seeded, without replacement) in the new rows' class
    proportions, as many as the classes allow. A group with fewer than ``min_rows`` rows on a side
    gets ``k`` cut below its row counts and Wilson intervals (``prdc-k<k>-wilson``).
    """

    name = "prdc"
    modalities = ("image", "tabular")
    testing_params: ClassVar[dict] = {"feature_space": "raw", "min_rows": 5, "k": 3}

    check_params = classmethod(feature_params_problems)

    class Params(FeatureParams):
        """PRDC params."""

        k: int = Field(5, ge=1, le=1000, description="nearest neighbours that set each row's ball (the paper uses 5)")
        min_rows: int = Field(50, ge=2, description="fewest real and fewest new rows (at least k + 1) the standard "
                                                    "estimate is used from; smaller groups get the small-sample one")
        block_size: int = Field(2048, ge=1, description="rows per block of the blocked neighbour search")

    def _evaluate(self, ectx: "EvalContext") -> Metrics:
        p = self.params
        minimum = max(p.min_rows, p.k + 1)

        def measure(real: torch.Tensor, new: torch.Tensor, task: Task) -> dict[str, Estimate]:
            if task.shares is not None:
                # Balls are set by neighbours among the reference rows, so a class-matched overall
                # number needs real rows actually drawn in the new rows' class proportions.
                real = real[matched_reference(task.real_y, task.new_y, task.generator)]
            if task.small or real.shape[0] < minimum:
                return _small_prdc(real, new, p.k, p.block_size)
            values = prdc(real, new, p.k, p.block_size)
            return {name: Estimate(value, None, f"prdc-k{p.k}") for name, value in values.items()}

        need = f" (and more than k={p.k})" if minimum > p.min_rows else ""
        # density above 1 is not better (it rewards samples piled on dense real regions)
        return measure_groups(ectx, p, self.name, measure, min_rows=minimum, need=need,
                              better={"precision": "higher", "recall": "higher", "coverage": "higher"})
