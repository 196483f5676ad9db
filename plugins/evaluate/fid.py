"""``fid``: Fréchet distance between real and new rows in an offline feature space."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Metrics

from ._comparison import Task, measure_groups
from ._features import FeatureParams, feature_params_problems
from ._stats import Estimate, frechet_distance_from_features, frechet_small_sample

if TYPE_CHECKING:
    import torch

    from setforge.context import EvalContext

__all__ = ["FrechetDistance"]


class FrechetDistance(Evaluator):
    """Fréchet distance (FID) between real and new rows, by origin, overall and per class.

    Each set of rows is summarised by the mean and covariance of its features (float64); the
    distance ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` takes the trace of the matrix square
    root from a symmetric eigendecomposition (see ``setforge.plugins.evaluate._stats``), which agrees
    with pytorch-fid's ``scipy.linalg.sqrtm`` route and is several times faster. Lower is closer;
    0 means the same first two moments. Overall numbers are class-weighted: the real rows' moments
    are weighted so that each class counts as much as among the new rows (reliability weights;
    the plain FID when the mixes match). A group with fewer than ``min_rows`` rows on a side gets
    the distance in ``d < n`` principal dimensions with a bootstrap interval
    (``frechet-pca<d>-bootstrap``). FID is biased upwards for small sets, so compare numbers from
    similar row counts and the same estimator (each number names its estimator and ``n``).
    """

    name = "fid"
    modalities = ("image", "tabular")
    testing_params: ClassVar[dict] = {"feature_space": "raw", "min_rows": 5}

    check_params = classmethod(feature_params_problems)

    class Params(FeatureParams):
        """FID params."""

        min_rows: int = Field(50, ge=2, description="fewest real and fewest new rows the full-dimension distance "
                                                    "is used from; smaller groups get the small-sample one")

    def _evaluate(self, ectx: "EvalContext") -> Metrics:
        def measure(real: "torch.Tensor", new: "torch.Tensor", task: Task) -> dict[str, Estimate]:
            if task.small:
                return {"": frechet_small_sample(real, new, task.rounds, task.generator, task.real_weights(),
                                                 task.strata, task.new_strata)}
            return {"": Estimate(frechet_distance_from_features(real, new, task.real_weights()), None, "frechet")}

        return measure_groups(ectx, self.params, self.name, measure, better="lower")
