"""imbalanced-learn's over-samplers (``imblearn.over_sampling``) as setforge resamplers, by name.

Random over-sampling and the SMOTE family (SMOTE, SMOTE-NC, SMOTEN, ADASYN, Borderline-SMOTE,
SVM-SMOTE, KMeans-SMOTE). Conventions shared by every imbalanced-learn sampler (params, what is
left out, provenance of new rows) are in ``._imblearn``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field

from setforge import Dataset, StepContext

from ._imblearn import (
    ImblearnResampler, OverStrategy, KNeighbors, class_id, categorical_problem, rows_problem, K_AUTO_NOTE,
    OVER_DESCRIPTION, COMMON_LEFT_OUT, NEIGHBOURS_OBJECT, N_JOBS_DESCRIPTION, NJobs, NonNegative,
)

__all__ = ["RandomOverSampler", "SMOTE", "SMOTENC", "SMOTEN", "ADASYN", "BorderlineSMOTE", "SVMSMOTE", "KMeansSMOTE"]


class RandomOverSampler(ImblearnResampler):
    """Random over-sampling: repeat rows of the smaller classes (imbalanced-learn RandomOverSampler).

    New rows are copies (or, with ``shrinkage``, a smoothed bootstrap: a copy plus Gaussian noise
    scaled by the class's spread; on images clipped to [0, 1]) of a random row of their class,
    which is their ``parent``. Left out: ``random_state`` (from the step's Rng).
    """

    name = "random-over"
    counts_known = True
    modalities = ("tabular", "image", "audio")
    imblearn_class = "imblearn.over_sampling.RandomOverSampler"
    family = "over"
    output = "indices"
    params_left_out = dict(COMMON_LEFT_OUT)

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's RandomOverSampler."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        shrinkage: NonNegative | dict[int | str, NonNegative] | None = Field(
            None, description="smoothed bootstrap: None copies rows exactly; a float >= 0 (or a mapping class name "
                              "or id -> float, one for each over-sampled class) scales Gaussian noise added to copies")

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """Categorical columns, which ``shrinkage`` would add noise to."""
        if self.params.shrinkage is None:
            return []
        problem = categorical_problem(ds, self.name, "with shrinkage adds noise to every column",
                                      "'random-over' without shrinkage")
        return [("shrinkage", problem)] if problem else []

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        if isinstance(self.params.shrinkage, dict):
            place = f"resample '{self.name}' params.shrinkage"
            kwargs["shrinkage"] = {class_id(k, ds.classes, place): float(v) for k, v in self.params.shrinkage.items()}
        return kwargs


# ------------------------------------------------------------------------- SMOTE family
class _SmoteLike(ImblearnResampler):
    """Shared by the SMOTE family: over-sampling that interpolates, with a k check per class."""

    family = "over"
    output = "appended"
    interpolates = True
    records_seeds = True
    k_param = "k_neighbors"
    modalities = ("tabular", "image", "audio")


class SMOTE(_SmoteLike):
    """SMOTE: new minority rows on segments between a row and one of its k nearest same-class rows.

    ``backend: imblearn`` (the default) runs imbalanced-learn's SMOTE; ``backend: torch`` runs the
    same algorithm in torch on the run's device with blocked nearest neighbours (bounded memory,
    GPU-capable; its random draws differ from imbalanced-learn's, its counts do not). Either way
    a new row's ``parent`` is its seed row. ``k_neighbors: auto`` shrinks k for small classes.
    Left out: ``random_state`` (from the step's Rng), ``k_neighbors`` as an estimator object.
    """

    name = "smote"
    counts_known = True
    imblearn_class = "imblearn.over_sampling.SMOTE"
    params_left_out = {**COMMON_LEFT_OUT, "k_neighbors (object)": NEIGHBOURS_OBJECT}
    setforge_params: ClassVar[dict[str, str]] = {
        "backend": "imblearn or torch", "block_size": "torch backend: rows per distance block",
    }

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTE, plus the backend."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest same-class neighbours to interpolate towards"
                                        + K_AUTO_NOTE)
        backend: Literal["imblearn", "torch"] = Field(
            "imblearn", description="imblearn: imbalanced-learn's SMOTE on the CPU; torch: the same algorithm in "
                                    "torch on the run's device with blocked nearest neighbours (bounded memory)")
        block_size: int = Field(1024, ge=1, description="torch backend: query rows per block of the neighbour "
                                                        "search (against 4096 reference rows at a time); memory "
                                                        "grows with it")

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        kwargs.pop("backend")
        kwargs.pop("block_size")
        return kwargs

    def _resample(self, ds: Dataset, ctx: StepContext):
        if self.params.backend == "imblearn":
            return super()._resample(ds, ctx)
        return self._resample_torch(ds, ctx)

    def _resample_torch(self, ds: Dataset, ctx: StepContext):
        from ._torch_smote import torch_smote

        self._check_data(ds)
        y = ds.y.cpu().numpy()
        self._check(ds)
        strategy = self._strategy(ds, y)
        targets = self._targets(strategy, y, ds.classes)
        k = self._resolve_k(ds, y, targets, self.params.k_neighbors, "k_neighbors")
        new_x, new_y, parent = torch_smote(ds.x.reshape(len(ds), -1), ds.y, targets, k=k, generator=ctx.rng.torch,
                                           block_size=self.params.block_size)
        if ds.modality == "image":
            new_x = new_x.clamp_(0.0, 1.0)
        kept = torch.arange(len(ds), device=ds.device)
        return kept, new_x.reshape(-1, *ds.shape), new_y, parent


class SMOTENC(_SmoteLike):
    """SMOTE-NC: SMOTE for mixed numeric and categorical columns (imbalanced-learn SMOTENC).

    Numeric columns are interpolated; each categorical column takes the most frequent category
    among the neighbours. The categorical columns are those of the data's ``FeatureInfo``. The
    parent of a new row is the nearest same-class real row (imbalanced-learn hides the seed).
    Left out: ``categorical_features`` (from FeatureInfo), ``categorical_encoder`` (a OneHotEncoder),
    ``random_state`` (from the step's Rng), ``k_neighbors`` as an estimator object.
    """

    name = "smote-nc"
    counts_known = True
    testing_data = {"categorical": "some"}
    modalities = ("tabular",)
    imblearn_class = "imblearn.over_sampling.SMOTENC"
    interpolates = False
    records_seeds = False
    params_left_out = {**COMMON_LEFT_OUT, "categorical_features": "taken from the data's FeatureInfo",
                       "categorical_encoder": "an encoder object; imbalanced-learn's default OneHotEncoder",
                       "k_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTENC."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest same-class neighbours to interpolate towards"
                                        + K_AUTO_NOTE)

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """Both kinds of column: categorical ones and at least one numeric one."""
        categorical = [] if ds.features is None else ds.features.categorical_indices
        if not categorical:
            return [("", f"resample '{self.name}' needs categorical columns (FeatureInfo.categorical) and this data "
                         f"has none; use resample 'smote' for all-numeric data")]
        if len(categorical) == ds.shape[0]:
            return [("", f"resample '{self.name}' needs at least one numeric column and every column of this data "
                         f"is categorical; use resample 'smoten'")]
        return []

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        kwargs["categorical_features"] = list(ds.features.categorical_indices)
        return kwargs


class SMOTEN(_SmoteLike):
    """SMOTE-N: SMOTE for all-categorical columns (imbalanced-learn SMOTEN).

    Neighbours by the value difference metric; each column of a new row takes the most frequent
    category among the neighbours. Every column must be categorical in the data's ``FeatureInfo``.
    The parent of a new row is the nearest same-class real row (imbalanced-learn hides the seed).
    Left out: ``categorical_encoder`` (an OrdinalEncoder), ``random_state`` (from the step's Rng),
    ``k_neighbors`` as an estimator object.
    """

    name = "smoten"
    counts_known = True
    testing_data = {"categorical": "all"}
    modalities = ("tabular",)
    imblearn_class = "imblearn.over_sampling.SMOTEN"
    interpolates = False
    records_seeds = False
    params_left_out = {**COMMON_LEFT_OUT, "categorical_encoder": "an encoder object; imbalanced-learn's default",
                       "k_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTEN."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest same-class neighbours to vote with" + K_AUTO_NOTE)

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """Every column categorical."""
        categorical = [] if ds.features is None else ds.features.categorical_indices
        if len(categorical) == ds.shape[0]:
            return []
        numeric = [ds.features.names[i] for i in ds.features.numeric_indices] if ds.features else "all"
        return [("", f"resample '{self.name}' needs every column categorical (FeatureInfo.categorical); "
                     f"numeric columns: {numeric}; use resample 'smote-nc' for mixed columns")]


class ADASYN(_SmoteLike):
    """ADASYN: SMOTE that makes more rows where the minority is harder to learn (imbalanced-learn ADASYN).

    The parent of a new row is the nearest same-class real row (imbalanced-learn hides the seed).
    Left out: ``random_state`` (from the step's Rng), ``n_neighbors`` as an estimator object.
    """

    name = "adasyn"
    imblearn_class = "imblearn.over_sampling.ADASYN"
    # the kit's digits 0/1/2 are so well separated that no neighbourhood of the 6-row class holds
    # another class, which ADASYN refuses (division by zero): the kit checks it on tabular rows
    testing_modalities = ("tabular",)
    records_seeds = False
    k_param = "n_neighbors"
    params_left_out = {**COMMON_LEFT_OUT, "n_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's ADASYN."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        n_neighbors: KNeighbors = Field(5, description="nearest neighbours to measure hardness and interpolate"
                                        + K_AUTO_NOTE)


class _InDanger(_SmoteLike):
    """Borderline- and SVM-SMOTE: rows "in danger" judged by their ``m_neighbors`` among all rows."""

    def _neighbour_problems(self, counts, classes, targets):
        """``k_neighbors`` against the classes to over-sample; ``m_neighbors`` against all rows."""
        found = super()._neighbour_problems(counts, classes, targets)
        return found + (rows_problem("m_neighbors", self.params.m_neighbors, sum(counts), "the data (every class)")
                        if any(targets.values()) else [])


class BorderlineSMOTE(_InDanger):
    """Borderline-SMOTE: SMOTE seeded only from minority rows near the class border (imbalanced-learn).

    A new row's parent is its seed row (a minority row "in danger"). Left out: ``random_state``
    (from the step's Rng), ``k_neighbors`` and ``m_neighbors`` as estimator objects.
    """

    name = "borderline-smote"
    imblearn_class = "imblearn.over_sampling.BorderlineSMOTE"
    params_left_out = {**COMMON_LEFT_OUT, "k_neighbors (object)": NEIGHBOURS_OBJECT,
                       "m_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's BorderlineSMOTE."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest neighbours to interpolate towards" + K_AUTO_NOTE)
        m_neighbors: int = Field(10, ge=1, description="nearest neighbours (all classes) that decide whether a "
                                                      "minority row is in danger")
        kind: Literal["borderline-1", "borderline-2"] = Field(
            "borderline-1", description="borderline-1: interpolate towards same-class neighbours; borderline-2: "
                                        "also towards other classes (at most half way)")


class SVMSMOTE(_InDanger):
    """SVM-SMOTE: SMOTE seeded from the support vectors of an SVM (imbalanced-learn SVMSMOTE).

    A new row's parent is its seed support vector (a real minority row). Left out: ``svm_estimator``
    (imbalanced-learn's default SVC), ``random_state`` (from the step's Rng), ``k_neighbors`` and
    ``m_neighbors`` as estimator objects.
    """

    name = "svm-smote"
    imblearn_class = "imblearn.over_sampling.SVMSMOTE"
    params_left_out = {**COMMON_LEFT_OUT, "svm_estimator": "an estimator object; imbalanced-learn's default SVC()",
                       "k_neighbors (object)": NEIGHBOURS_OBJECT, "m_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SVMSMOTE."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest neighbours to interpolate towards" + K_AUTO_NOTE)
        m_neighbors: int = Field(10, ge=1, description="nearest neighbours (all classes) that decide whether a "
                                                      "support vector is in danger")
        out_step: float = Field(0.5, ge=0.0, le=1.0, description="step size when extrapolating from safe "
                                                                 "support vectors")


class KMeansSMOTE(_SmoteLike):
    """KMeans-SMOTE: cluster with k-means, then SMOTE inside clusters rich in minority rows (imbalanced-learn).

    A new row's parent is its seed row. ``kmeans_estimator`` takes imbalanced-learn's int form
    (the number of clusters of a MiniBatchKMeans; None: its default). Left out: the estimator
    object form of ``kmeans_estimator`` and ``k_neighbors``, ``random_state`` (from the step's Rng).
    """

    name = "kmeans-smote"
    imblearn_class = "imblearn.over_sampling.KMeansSMOTE"
    params_left_out = {**COMMON_LEFT_OUT, "kmeans_estimator (object)": "only the int form (number of clusters)",
                       "k_neighbors (object)": NEIGHBOURS_OBJECT}
    testing_params = {"kmeans_estimator": 2, "cluster_balance_threshold": 0.0}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's KMeansSMOTE."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(2, description="nearest neighbours to interpolate towards" + K_AUTO_NOTE)
        kmeans_estimator: Annotated[int, Field(ge=1)] | None = Field(
            None, description="number of k-means clusters (None: imbalanced-learn's default MiniBatchKMeans)")
        cluster_balance_threshold: float | Literal["auto"] = Field(
            "auto", description="minimum share of minority rows for a cluster to be over-sampled ('auto': the "
                                "class imbalance ratio)")
        density_exponent: float | Literal["auto"] = Field(
            "auto", description="exponent of the cluster density ('auto': the number of features)")
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


# ------------------------------------------------------------------ controlled under-sampling
