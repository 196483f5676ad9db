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
import torch
from pydantic import Field

from setforge import Dataset, StepContext

from ._imblearn import (
    CLEAN_DESCRIPTION,
    K_AUTO_NOTE,
    OVER_DESCRIPTION,
    UNDER_DESCRIPTION,
    CleanStrategy,
    ImblearnResampler,
    KNeighbors,
    OverStrategy,
    UnderStrategy,
    check_no_categorical,
    class_id,
)

__all__ = [
    "RandomOverSampler", "SMOTE", "SMOTENC", "SMOTEN", "ADASYN", "BorderlineSMOTE", "SVMSMOTE", "KMeansSMOTE",
    "RandomUnderSampler", "TomekLinks", "EditedNearestNeighbours", "RepeatedEditedNearestNeighbours", "AllKNN",
    "CondensedNearestNeighbour", "OneSidedSelection", "NeighbourhoodCleaningRule", "NearMiss",
    "InstanceHardnessThreshold", "ClusterCentroids", "SMOTEENN", "SMOTETomek",
]

NonNegative = Annotated[float, Field(ge=0.0)]

_COMMON_LEFT_OUT = {
    "random_state": "seeded from the step's Rng (ctx.rng.sk_seed())",
}
_NEIGHBOURS_OBJECT = "only the int form: a NearestNeighbors object is not expressible in a run file"
_N_JOBS = "parallel jobs for neighbour searches, as in scikit-learn (None: 1, -1: all cores)"
NJobs = int | None


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
    params_left_out = {**_COMMON_LEFT_OUT, "k_neighbors (object)": _NEIGHBOURS_OBJECT}
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
        strategy = self._strategy(ds, y)
        targets = self._targets(strategy, y)
        self._check(ds, None, y, targets)
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
    params_left_out = {**_COMMON_LEFT_OUT, "categorical_features": "taken from the data's FeatureInfo",
                       "categorical_encoder": "an encoder object; imbalanced-learn's default OneHotEncoder",
                       "k_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTENC."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest same-class neighbours to interpolate towards"
                                        + K_AUTO_NOTE)

    def _check(self, ds: Dataset, x: np.ndarray, y: np.ndarray, targets: dict[int, int]) -> None:
        from setforge import DataError

        categorical = [] if ds.features is None else ds.features.categorical_indices
        if not categorical:
            raise DataError(f"resample '{self.name}' needs categorical columns (FeatureInfo.categorical) and this data "
                            f"has none; use resample 'smote' for all-numeric data")
        if len(categorical) == ds.shape[0]:
            raise DataError(f"resample '{self.name}' needs at least one numeric column and every column of this data "
                            f"is categorical; use resample 'smoten'")

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
    params_left_out = {**_COMMON_LEFT_OUT, "categorical_encoder": "an encoder object; imbalanced-learn's default",
                       "k_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTEN."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest same-class neighbours to vote with" + K_AUTO_NOTE)

    def _check(self, ds: Dataset, x: np.ndarray, y: np.ndarray, targets: dict[int, int]) -> None:
        from setforge import DataError

        categorical = [] if ds.features is None else ds.features.categorical_indices
        if len(categorical) != ds.shape[0]:
            numeric = [ds.features.names[i] for i in ds.features.numeric_indices] if ds.features else "all"
            raise DataError(f"resample '{self.name}' needs every column categorical (FeatureInfo.categorical); "
                            f"numeric columns: {numeric}; use resample 'smote-nc' for mixed columns")


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
    params_left_out = {**_COMMON_LEFT_OUT, "n_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's ADASYN."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        n_neighbors: KNeighbors = Field(5, description="nearest neighbours to measure hardness and interpolate"
                                        + K_AUTO_NOTE)


class BorderlineSMOTE(_SmoteLike):
    """Borderline-SMOTE: SMOTE seeded only from minority rows near the class border (imbalanced-learn).

    A new row's parent is its seed row (a minority row "in danger"). Left out: ``random_state``
    (from the step's Rng), ``k_neighbors`` and ``m_neighbors`` as estimator objects.
    """

    name = "borderline-smote"
    imblearn_class = "imblearn.over_sampling.BorderlineSMOTE"
    params_left_out = {**_COMMON_LEFT_OUT, "k_neighbors (object)": _NEIGHBOURS_OBJECT,
                       "m_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's BorderlineSMOTE."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="nearest neighbours to interpolate towards" + K_AUTO_NOTE)
        m_neighbors: int = Field(10, ge=1, description="nearest neighbours (all classes) that decide whether a "
                                                      "minority row is in danger")
        kind: Literal["borderline-1", "borderline-2"] = Field(
            "borderline-1", description="borderline-1: interpolate towards same-class neighbours; borderline-2: "
                                        "also towards other classes (at most half way)")


class SVMSMOTE(_SmoteLike):
    """SVM-SMOTE: SMOTE seeded from the support vectors of an SVM (imbalanced-learn SVMSMOTE).

    A new row's parent is its seed support vector (a real minority row). Left out: ``svm_estimator``
    (imbalanced-learn's default SVC), ``random_state`` (from the step's Rng), ``k_neighbors`` and
    ``m_neighbors`` as estimator objects.
    """

    name = "svm-smote"
    imblearn_class = "imblearn.over_sampling.SVMSMOTE"
    params_left_out = {**_COMMON_LEFT_OUT, "svm_estimator": "an estimator object; imbalanced-learn's default SVC()",
                       "k_neighbors (object)": _NEIGHBOURS_OBJECT, "m_neighbors (object)": _NEIGHBOURS_OBJECT}

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
    params_left_out = {**_COMMON_LEFT_OUT, "kmeans_estimator (object)": "only the int form (number of clusters)",
                       "k_neighbors (object)": _NEIGHBOURS_OBJECT}
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
        n_jobs: NJobs = Field(None, description=_N_JOBS)


# ------------------------------------------------------------------ controlled under-sampling
class RandomUnderSampler(ImblearnResampler):
    """Random under-sampling: drop random rows of the larger classes (imbalanced-learn RandomUnderSampler).

    Kept rows keep their provenance; with ``replacement: true`` a row drawn again is a new row
    whose parent is that row. Left out: ``random_state`` (from the step's Rng).
    """

    name = "random-under"
    counts_known = True
    modalities = ("tabular", "image", "audio")
    imblearn_class = "imblearn.under_sampling.RandomUnderSampler"
    family = "under"
    output = "indices"
    params_left_out = dict(_COMMON_LEFT_OUT)

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's RandomUnderSampler."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        replacement: bool = Field(False, description="draw with replacement")


class NearMiss(ImblearnResampler):
    """NearMiss: keep the larger classes' rows nearest to (or farthest from) the minority (imbalanced-learn).

    Left out: ``n_neighbors`` and ``n_neighbors_ver3`` as estimator objects.
    """

    name = "near-miss"
    counts_known = True
    modalities = ("tabular", "image", "audio")
    imblearn_class = "imblearn.under_sampling.NearMiss"
    family = "under"
    output = "indices"
    params_left_out = {"n_neighbors (object)": _NEIGHBOURS_OBJECT, "n_neighbors_ver3 (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's NearMiss."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        version: int = Field(1, ge=1, le=3, description="NearMiss version 1, 2 or 3")
        n_neighbors: int = Field(3, ge=1, description="neighbours over which the average distance is computed")
        n_neighbors_ver3: int = Field(3, ge=1, description="version 3: neighbours that pre-select rows")
        n_jobs: NJobs = Field(None, description=_N_JOBS)


_IHT_ESTIMATORS = Literal["random-forest", "gradient-boosting", "logistic-regression", "k-nearest-neighbours"]


class InstanceHardnessThreshold(ImblearnResampler):
    """Instance hardness threshold: drop the larger classes' rows a classifier finds hardest (imbalanced-learn).

    ``estimator`` is a named choice: ``random-forest`` (imbalanced-learn's default: 100 trees),
    ``gradient-boosting``, ``logistic-regression``, ``k-nearest-neighbours``. Left out:
    ``random_state`` (from the step's Rng), an estimator object, a cv splitter object (``cv`` takes
    the int form).
    """

    name = "instance-hardness-threshold"
    modalities = ("tabular", "image", "audio")
    imblearn_class = "imblearn.under_sampling.InstanceHardnessThreshold"
    family = "under"
    output = "indices"
    params_left_out = {**_COMMON_LEFT_OUT, "cv (object)": "only the int form (number of folds)"}
    named_choices: ClassVar[dict[str, str]] = {"estimator": "random-forest, gradient-boosting, logistic-regression, "
                                                            "k-nearest-neighbours"}
    testing_params = {"estimator": "k-nearest-neighbours", "cv": 3}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's InstanceHardnessThreshold."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        estimator: _IHT_ESTIMATORS = Field("random-forest", description="the classifier whose cross-validated "
                                                                         "probabilities measure hardness")
        cv: int = Field(5, ge=2, description="cross-validation folds")
        n_jobs: NJobs = Field(None, description=_N_JOBS)

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        seed = ctx.rng.sk_seed()
        name = kwargs.pop("estimator")
        if name == "random-forest":
            kwargs["estimator"] = None  # imbalanced-learn builds its own (100 trees, seeded, n_jobs)
        elif name == "gradient-boosting":
            from sklearn.ensemble import GradientBoostingClassifier

            kwargs["estimator"] = GradientBoostingClassifier(random_state=seed)
        elif name == "logistic-regression":
            from sklearn.linear_model import LogisticRegression

            kwargs["estimator"] = LogisticRegression(max_iter=1000)
        else:
            from sklearn.neighbors import KNeighborsClassifier

            kwargs["estimator"] = KNeighborsClassifier()
        return kwargs


class ClusterCentroids(ImblearnResampler):
    """Cluster centroids: replace the larger classes' rows by k-means centroids (imbalanced-learn ClusterCentroids).

    Centroids are new rows whose parent is the nearest same-class real row; with ``voting: hard``
    (centroids snapped to real rows) those rows are kept as they are. ``estimator`` is a named
    choice: ``kmeans`` (imbalanced-learn's default) or ``minibatch-kmeans``. Left out:
    ``random_state`` (from the step's Rng), an estimator object.
    """

    name = "cluster-centroids"
    counts_known = True
    modalities = ("tabular", "image", "audio")
    imblearn_class = "imblearn.under_sampling.ClusterCentroids"
    family = "under"
    output = "centroids"
    params_left_out = dict(_COMMON_LEFT_OUT)
    named_choices: ClassVar[dict[str, str]] = {"estimator": "kmeans, minibatch-kmeans"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's ClusterCentroids."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        estimator: Literal["kmeans", "minibatch-kmeans"] = Field("kmeans", description="the clustering")
        voting: Literal["auto", "hard", "soft"] = Field(
            "auto", description="soft: the centroids themselves; hard: the real row nearest to each centroid; "
                                "auto: soft for dense data")

    def _check(self, ds: Dataset, x: np.ndarray, y: np.ndarray, targets: dict[int, int]) -> None:
        if self.params.voting != "hard":
            check_no_categorical(ds, self.name, "with soft voting averages rows")

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        if kwargs.pop("estimator") == "minibatch-kmeans":
            from sklearn.cluster import MiniBatchKMeans

            kwargs["estimator"] = MiniBatchKMeans(n_init=3, random_state=ctx.rng.sk_seed())
        return kwargs


# ------------------------------------------------------------------------------- cleaning
class _Cleaning(ImblearnResampler):
    family = "clean"
    output = "indices"
    modalities = ("tabular", "image", "audio")
    params_left_out = {"sampling_strategy (float)": "imbalanced-learn rejects a ratio for cleaning samplers"}


class TomekLinks(_Cleaning):
    """Tomek links: drop rows that form a Tomek link with a row of another class (imbalanced-learn TomekLinks)."""

    name = "tomek-links"
    imblearn_class = "imblearn.under_sampling.TomekLinks"

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's TomekLinks."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_jobs: NJobs = Field(None, description=_N_JOBS)


_KIND_SEL = ("all: drop a row unless all its neighbours share its class; mode: unless most of them do")


class EditedNearestNeighbours(_Cleaning):
    """Edited nearest neighbours: drop rows their neighbours disagree with (imbalanced-learn EditedNearestNeighbours).

    Left out: ``n_neighbors`` as an estimator object.
    """

    name = "edited-nearest-neighbours"
    imblearn_class = "imblearn.under_sampling.EditedNearestNeighbours"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's EditedNearestNeighbours."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="neighbours that vote on each row")
        kind_sel: Literal["all", "mode"] = Field("all", description=_KIND_SEL)
        n_jobs: NJobs = Field(None, description=_N_JOBS)


class RepeatedEditedNearestNeighbours(_Cleaning):
    """Repeated edited nearest neighbours: edited nearest neighbours until nothing changes (imbalanced-learn).

    Left out: ``n_neighbors`` as an estimator object.
    """

    name = "repeated-edited-nearest-neighbours"
    imblearn_class = "imblearn.under_sampling.RepeatedEditedNearestNeighbours"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's RepeatedEditedNearestNeighbours."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="neighbours that vote on each row")
        max_iter: int = Field(100, ge=1, description="at most this many rounds")
        kind_sel: Literal["all", "mode"] = Field("all", description=_KIND_SEL)
        n_jobs: NJobs = Field(None, description=_N_JOBS)


class AllKNN(_Cleaning):
    """All k-NN: edited nearest neighbours with 1, 2, ... n_neighbors neighbours in turn (imbalanced-learn AllKNN).

    Left out: ``n_neighbors`` as an estimator object.
    """

    name = "all-knn"
    imblearn_class = "imblearn.under_sampling.AllKNN"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's AllKNN."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="the largest neighbourhood")
        kind_sel: Literal["all", "mode"] = Field("all", description=_KIND_SEL)
        allow_minority: bool = Field(False, description="let a majority class become smaller than the minority")
        n_jobs: NJobs = Field(None, description=_N_JOBS)


class CondensedNearestNeighbour(_Cleaning):
    """Condensed nearest neighbour: keep the rows a 1-NN rule needs (imbalanced-learn CondensedNearestNeighbour).

    ``n_neighbors: null`` is imbalanced-learn's default (a 1-NN classifier). Left out:
    ``random_state`` (from the step's Rng), ``n_neighbors`` as an estimator object.
    """

    name = "condensed-nearest-neighbour"
    imblearn_class = "imblearn.under_sampling.CondensedNearestNeighbour"
    params_left_out = {**_Cleaning.params_left_out, **_COMMON_LEFT_OUT, "n_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's CondensedNearestNeighbour."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: Annotated[int, Field(ge=1)] | None = Field(None, description="neighbours of the k-NN rule "
                                                                                  "(None: 1)")
        n_seeds_S: int = Field(1, ge=1, description="rows of each cleaned class to start the kept set with")  # noqa: N815
        n_jobs: NJobs = Field(None, description=_N_JOBS)


class OneSidedSelection(_Cleaning):
    """One-sided selection: condensed nearest neighbour followed by Tomek links (imbalanced-learn OneSidedSelection).

    Left out: ``random_state`` (from the step's Rng), ``n_neighbors`` as an estimator object.
    """

    name = "one-sided-selection"
    imblearn_class = "imblearn.under_sampling.OneSidedSelection"
    params_left_out = {**_Cleaning.params_left_out, **_COMMON_LEFT_OUT, "n_neighbors (object)": _NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's OneSidedSelection."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: Annotated[int, Field(ge=1)] | None = Field(None, description="neighbours of the k-NN rule "
                                                                                  "(None: 1)")
        n_seeds_S: int = Field(1, ge=1, description="rows of each cleaned class to start the kept set with")  # noqa: N815
        n_jobs: NJobs = Field(None, description=_N_JOBS)


class NeighbourhoodCleaningRule(_Cleaning):
    """Neighbourhood cleaning rule: edited nearest neighbours plus removal of rows that mislead the minority.

    (imbalanced-learn NeighbourhoodCleaningRule.) Left out: ``edited_nearest_neighbours`` (an
    object; imbalanced-learn's default EditedNearestNeighbours with ``n_neighbors`` and
    ``kind_sel='mode'``), ``n_neighbors`` as an estimator object.
    """

    name = "neighbourhood-cleaning-rule"
    imblearn_class = "imblearn.under_sampling.NeighbourhoodCleaningRule"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": _NEIGHBOURS_OBJECT,
                       "edited_nearest_neighbours": "an object; imbalanced-learn's default EditedNearestNeighbours"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's NeighbourhoodCleaningRule."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="neighbours of the editing and cleaning rules")
        threshold_cleaning: float = Field(0.5, gt=0.0, description="a class is cleaned when it holds more than "
                                                                   "this share of the minority class's rows")
        n_jobs: NJobs = Field(None, description=_N_JOBS)


# ------------------------------------------------------------------------ over + cleaning
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

        from ._imblearn import recording_seeds
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
    params_left_out = {**_COMMON_LEFT_OUT, "smote": "an object; SMOTE(sampling_strategy, k_neighbors) is built",
                       "enn": "an object; EditedNearestNeighbours(sampling_strategy='all') is built"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTEENN (k_neighbors: the inner SMOTE's)."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="the inner SMOTE's nearest neighbours" + K_AUTO_NOTE)
        n_jobs: NJobs = Field(None, description=_N_JOBS)


class SMOTETomek(_SmoteCombined):
    """SMOTE-Tomek: SMOTE, then removal of Tomek links over every class (imbalanced-learn SMOTETomek).

    New rows' parent is their SMOTE seed row. ``k_neighbors`` (a setforge addition) is the inner
    SMOTE's. Left out: ``smote`` and ``tomek`` objects (imbalanced-learn's defaults: SMOTE with
    this sampling_strategy, TomekLinks(sampling_strategy='all')), ``random_state``.
    """

    name = "smote-tomek"
    imblearn_class = "imblearn.combine.SMOTETomek"
    cleaner_class = "imblearn.under_sampling.TomekLinks"
    params_left_out = {**_COMMON_LEFT_OUT, "smote": "an object; SMOTE(sampling_strategy, k_neighbors) is built",
                       "tomek": "an object; TomekLinks(sampling_strategy='all') is built"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's SMOTETomek (k_neighbors: the inner SMOTE's)."""

        sampling_strategy: OverStrategy = Field("auto", description=OVER_DESCRIPTION)
        k_neighbors: KNeighbors = Field(5, description="the inner SMOTE's nearest neighbours" + K_AUTO_NOTE)
        n_jobs: NJobs = Field(None, description=_N_JOBS)
