"""imbalanced-learn's combined samplers (``imblearn.combine``) as setforge resamplers: SMOTE, then a cleaner.

Shared conventions are in ``._imblearn``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from setforge import Dataset, StepContext

from ._imblearn import (
    ImblearnResampler, recording_seeds, OverStrategy, KNeighbors, K_AUTO_NOTE, OVER_DESCRIPTION,
    COMMON_LEFT_OUT, N_JOBS_DESCRIPTION, NJobs,
)
from .imblearn_over import _SmoteLike

__all__ = ["SMOTEENN", "SMOTETomek"]


class _SmoteThenClean:
    """SMOTE, then a cleaner: what imbalanced-learn's SMOTEENN and SMOTETomek do, step by step so
    that the SMOTE output (and the cleaner's ``sample_indices_`` into it) stays visible."""

    def __init__(self, smote: Any, cleaner: Any):
        self.smote_, self.cleaner_ = smote, cleaner

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit_resample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.smote_output_ = self.smote_.fit_resample(x, y)
        out = self.cleaner_.fit_resample(*self.smote_output_)
        self.sample_indices_ = self.cleaner_.sample_indices_
        return out


class _SmoteCombined(_SmoteLike):
    output = "combined"
    cleaner_class: ClassVar[str] = ""
    setforge_params: ClassVar[dict[str, str]] = {"k_neighbors": "k_neighbors of the inner SMOTE"}

    def _make_sampler(self, kwargs: dict[str, Any]) -> Any:
        import importlib

        from imblearn.over_sampling import SMOTE as ImblearnSMOTE

        module, _, cls_name = self.cleaner_class.rpartition(".")
        cleaner = getattr(importlib.import_module(module), cls_name)(sampling_strategy="all", n_jobs=kwargs["n_jobs"])
        smote = recording_seeds(ImblearnSMOTE)(sampling_strategy=kwargs["sampling_strategy"],
                                               k_neighbors=kwargs["k_neighbors"], random_state=kwargs["random_state"])
        return _SmoteThenClean(smote, cleaner)

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        return {**super()._sampler_kwargs(ds, ctx, strategy), "random_state": ctx.rng.sk_seed()}


class SMOTEENN(_SmoteCombined):
    """SMOTE-ENN: SMOTE, then edited nearest neighbours over every class (imbalanced-learn SMOTEENN).

    New rows' parent is their SMOTE seed row. ``k_neighbors`` (a setforge addition) is the inner
    SMOTE's. Left out: ``smote`` and ``enn`` objects (imbalanced-learn's defaults: SMOTE with
    this sampling_strategy, EditedNearestNeighbours(sampling_strategy='all')), ``random_state``.
    """

    name = "smote-enn"
    imblearn_class = "imblearn.combine.SMOTEENN"
    cleaner_class = "imblearn.under_sampling.EditedNearestNeighbours"
    params_left_out = {**COMMON_LEFT_OUT, "smote": "an object; SMOTE(sampling_strategy, k_neighbors) is built",
                       "enn": "an object; EditedNearestNeighbours(sampling_strategy='all') is built"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTEENN (k_neighbors: the inner SMOTE's)."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="the inner SMOTE's nearest neighbours" + K_AUTO_NOTE)
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


class SMOTETomek(_SmoteCombined):
    """SMOTE-Tomek: SMOTE, then removal of Tomek links over every class (imbalanced-learn SMOTETomek).

    New rows' parent is their SMOTE seed row. ``k_neighbors`` (a setforge addition) is the inner
    SMOTE's. Left out: ``smote`` and ``tomek`` objects (imbalanced-learn's defaults: SMOTE with
    this sampling_strategy, TomekLinks(sampling_strategy='all')), ``random_state``.
    """

    name = "smote-tomek"
    imblearn_class = "imblearn.combine.SMOTETomek"
    cleaner_class = "imblearn.under_sampling.TomekLinks"
    params_left_out = {**COMMON_LEFT_OUT, "smote": "an object; SMOTE(sampling_strategy, k_neighbors) is built",
                       "tomek": "an object; TomekLinks(sampling_strategy='all') is built"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTETomek (k_neighbors: the inner SMOTE's)."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="the inner SMOTE's nearest neighbours" + K_AUTO_NOTE)
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)
