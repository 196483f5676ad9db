"""``kid``: kernel distance (unbiased polynomial-kernel MMD) between real and new rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Metrics

from ._comparison import Group, measure_groups
from ._features import FeatureParams, feature_params_problems
from ._stats import kid

if TYPE_CHECKING:
    import torch

    from setforge.context import EvalContext

__all__ = ["KernelDistance"]


class KernelDistance(Evaluator):
    """Kernel distance (KID) between real and new rows: mean and spread over random subsets.

    The unbiased estimator of the squared MMD with the polynomial kernel ``(x.y / d + 1)^3``,
    computed on ``subsets`` random subsets of ``min(subset_size, real rows, new rows)`` rows of
    each set (drawn without replacement, from the evaluator's seeded generator); the number is
    the mean over subsets and its ``std`` the spread (torch-fidelity's formula and defaults).
    Unlike FID it is unbiased, so small groups can be compared; values near 0 (even slightly
    negative) mean indistinguishable.
    """

    name = "kid"
    modalities = ("image", "tabular")
    testing_params: ClassVar[dict] = {"feature_space": "raw", "min_rows": 5, "subsets": 10}

    check_params = classmethod(feature_params_problems)

    class Params(FeatureParams):
        """KID params."""

        subsets: int = Field(100, ge=1, le=10_000, description="random subsets the MMD is averaged over")
        subset_size: int = Field(1000, ge=2, description="rows per subset (fewer when a group has fewer rows)")
        degree: int = Field(3, ge=1, le=10, description="degree of the polynomial kernel")
        coef0: float = Field(1.0, description="constant term of the polynomial kernel")
        gamma: float | None = Field(None, gt=0, description="scale of the dot product; default 1 / feature dimension")

    def _evaluate(self, ectx: "EvalContext") -> Metrics:
        p = self.params

        def measure(real: "torch.Tensor", new: "torch.Tensor", group: Group) -> dict[str, tuple[float, float]]:
            # One generator per group path: a group's number does not depend on which groups ran before.
            generator = ectx.rng.spawn(group.path).torch
            result = kid(real, new, subsets=p.subsets, subset_size=p.subset_size, generator=generator,
                         degree=p.degree, gamma=p.gamma, coef0=p.coef0)
            return {"": (result.mean, result.std)}

        return measure_groups(ectx, p, self.name, measure)
