"""``fid``: Fréchet distance between real and new rows in an offline feature space."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Metrics

from ._comparison import Group, measure_groups
from ._features import FeatureParams, feature_params_problems
from ._stats import frechet_distance_from_features

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
    0 means the same first two moments. FID is biased upwards for small sets, so compare numbers
    from similar row counts (each number carries its count of new rows).
    """

    name = "fid"
    modalities = ("image", "tabular")
    testing_params: ClassVar[dict] = {"feature_space": "raw", "min_rows": 5}

    check_params = classmethod(feature_params_problems)

    class Params(FeatureParams):
        """FID params."""

        min_rows: int = Field(50, ge=2, description="fewest real and fewest new rows a distance is reported from; "
                                                    "smaller groups are skipped with the reason")

    def _evaluate(self, ectx: "EvalContext") -> Metrics:
        def measure(real: "torch.Tensor", new: "torch.Tensor", group: Group) -> dict[str, tuple[float, None]]:
            return {"": (frechet_distance_from_features(real, new), None)}

        return measure_groups(ectx, self.params, self.name, measure)
