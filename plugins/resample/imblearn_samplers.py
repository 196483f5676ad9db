"""Every imbalanced-learn sampler as a setforge resampler, by name.

Params mirror imbalanced-learn's own ``_parameter_constraints`` where they are plain values (ints
and floats with the same bounds, string options, lists, mappings), with imbalanced-learn's
defaults; ``tests/resample/test_imblearn_samplers.py`` checks each against the constraints.
``sampling_strategy`` keeps imbalanced-learn's meanings, with classes named by name or id.
What is left out, on every sampler: ``random_state`` (seeded from the step's `Rng`) and a callable
``sampling_strategy`` (not expressible in a run file); object-valued params are listed per
component in ``params_left_out`` and in its docstring.

Images are flattened to rows and reshaped back; tabular rows go in directly. Samplers that
interpolate refuse categorical columns (use ``smote-nc`` or ``smoten``). New rows are
``Origin.RESAMPLED``; their ``parent`` is the seed row for SMOTE-type samplers that let it be
recorded (smote, borderline-smote, svm-smote, kmeans-smote, smote-enn, smote-tomek), the copied
row for random over-sampling, and the nearest same-class real row for samplers that hide it
(adasyn, smote-nc, smoten, cluster-centroids).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from setforge import Dataset, StepContext

from ._imblearn import (
    CLEAN_DESCRIPTION,
    check_no_categorical,
    OVER_DESCRIPTION,
    ImblearnResampler,
    OverStrategy,
    class_id,
)

__all__ = ["RandomOverSampler"]

NonNegative = Annotated[float, Field(ge=0.0)]

_COMMON_LEFT_OUT = {
    "random_state": "seeded from the step's Rng (ctx.rng.sk_seed())",
}


class RandomOverSampler(ImblearnResampler):
    """Random over-sampling: repeat rows of the smaller classes (imbalanced-learn RandomOverSampler).

    New rows are copies (or, with ``shrinkage``, a smoothed bootstrap: a copy plus Gaussian noise
    scaled by the class's spread; on images clipped to [0, 1]) of a random row of their class,
    which is their ``parent``. Left out: ``random_state`` (from the step's Rng).
    """

    name = "random-over"
    modalities = ("tabular", "image", "audio")
    imblearn_class = "imblearn.over_sampling.RandomOverSampler"
    family = "over"
    output = "indices"
    params_left_out = dict(_COMMON_LEFT_OUT)

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's RandomOverSampler."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        shrinkage: NonNegative | dict[int | str, NonNegative] | None = Field(
            None, description="smoothed bootstrap: None copies rows exactly; a float >= 0 (or a mapping class name "
                              "or id -> float, one for each over-sampled class) scales Gaussian noise added to copies")

    def _check(self, ds: Dataset, x: np.ndarray, y: np.ndarray, targets: dict[int, int]) -> None:
        if self.params.shrinkage is not None and ds.features is not None and ds.features.categorical_indices:
            check_no_categorical(ds, self.name, "with shrinkage adds noise to every column")

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        if isinstance(self.params.shrinkage, dict):
            place = f"resample '{self.name}' params.shrinkage"
            kwargs["shrinkage"] = {class_id(k, ds.classes, place): float(v) for k, v in self.params.shrinkage.items()}
        return kwargs
