"""imbalanced-learn's controlled under-samplers (``imblearn.under_sampling``) as setforge resamplers.

Random under-sampling, NearMiss, InstanceHardnessThreshold (prototype selection) and
ClusterCentroids (prototype generation). Shared conventions are in ``._imblearn``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from setforge import Dataset, StepContext

from ._imblearn import (
    ImblearnResampler, UnderStrategy, categorical_problem, UNDER_DESCRIPTION, COMMON_LEFT_OUT,
    NEIGHBOURS_OBJECT, N_JOBS_DESCRIPTION, NJobs,
)

__all__ = ["RandomUnderSampler", "NearMiss", "InstanceHardnessThreshold", "ClusterCentroids"]


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
    params_left_out = dict(COMMON_LEFT_OUT)

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
    params_left_out = {"n_neighbors (object)": NEIGHBOURS_OBJECT, "n_neighbors_ver3 (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's NearMiss."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        version: int = Field(1, ge=1, le=3, description="NearMiss version 1, 2 or 3")
        n_neighbors: int = Field(3, ge=1, description="neighbours over which the average distance is computed")
        n_neighbors_ver3: int = Field(3, ge=1, description="version 3: neighbours that pre-select rows")
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)

    def _neighbour_problems(self, counts, classes, targets):
        """Versions 1 and 3 search the minority class for ``n_neighbors`` rows; version 3 first
        searches each class to under-sample for ``n_neighbors_ver3``."""
        minority = min((c for c, n in enumerate(counts) if n), key=lambda c: counts[c])
        found = []
        if self.params.version != 2 and targets and self.params.n_neighbors > counts[minority]:
            found.append(("n_neighbors", f"version {self.params.version} measures the distance to the n_neighbors = "
                                         f"{self.params.n_neighbors} nearest rows of the minority class "
                                         f"{classes[minority]!r}, which has {counts[minority]}; set n_neighbors to "
                                         f"{counts[minority]} or lower (or use version: 2, which measures it to all "
                                         f"of them)"))
        if self.params.version == 3 and (small := [c for c in targets if counts[c] < self.params.n_neighbors_ver3]):
            least = min(small, key=lambda c: counts[c])
            found.append(("n_neighbors_ver3", f"version 3 pre-selects the n_neighbors_ver3 = "
                                              f"{self.params.n_neighbors_ver3} nearest rows of each class to "
                                              f"under-sample, and class {classes[least]!r} has {counts[least]}; "
                                              f"set n_neighbors_ver3 to {counts[least]} or lower"))
        return found

    def expected_counts(self, counts, classes):
        # version 3 keeps only rows its pre-selection found (the n_neighbors_ver3 nearest of each
        # minority row), which can fall short of the targets: the data decides
        return None if self.params.version == 3 else super().expected_counts(counts, classes)


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
    params_left_out = {**COMMON_LEFT_OUT, "cv (object)": "only the int form (number of folds)"}
    named_choices: ClassVar[dict[str, str]] = {"estimator": "random-forest, gradient-boosting, logistic-regression, "
                                                            "k-nearest-neighbours"}
    testing_params = {"estimator": "k-nearest-neighbours", "cv": 3}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's InstanceHardnessThreshold."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        estimator: _IHT_ESTIMATORS = Field("random-forest", description="the classifier whose cross-validated "
                                                                         "probabilities measure hardness")
        cv: int = Field(5, ge=2, description="cross-validation folds")
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)

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
    params_left_out = dict(COMMON_LEFT_OUT)
    named_choices: ClassVar[dict[str, str]] = {"estimator": "kmeans, minibatch-kmeans"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's ClusterCentroids."""

        sampling_strategy: UnderStrategy = Field("auto", description=UNDER_DESCRIPTION)
        estimator: Literal["kmeans", "minibatch-kmeans"] = Field("kmeans", description="the clustering")
        voting: Literal["auto", "hard", "soft"] = Field(
            "auto", description="soft: the centroids themselves; hard: the real row nearest to each centroid; "
                                "auto: soft for dense data")

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """Categorical columns, which centroids (any voting but ``hard``) would average."""
        if self.params.voting == "hard":
            return []
        problem = categorical_problem(ds, self.name, "with soft voting averages rows")
        return [("voting", problem + " (or set voting: hard)")] if problem else []

    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        kwargs = super()._sampler_kwargs(ds, ctx, strategy)
        if kwargs.pop("estimator") == "minibatch-kmeans":
            from sklearn.cluster import MiniBatchKMeans

            kwargs["estimator"] = MiniBatchKMeans(n_init=3, random_state=ctx.rng.sk_seed())
        return kwargs


# ------------------------------------------------------------------------------- cleaning
