"""imbalanced-learn's cleaning under-samplers (``imblearn.under_sampling``) as setforge resamplers.

Tomek links, the edited-nearest-neighbours family, condensed nearest neighbour, one-sided
selection and the neighbourhood cleaning rule: they drop rows, the number of rows dropped is the
data's. Shared conventions are in ``._imblearn``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ._imblearn import (
    ImblearnResampler, CleanStrategy, CLEAN_DESCRIPTION, COMMON_LEFT_OUT, NEIGHBOURS_OBJECT,
    N_JOBS_DESCRIPTION, NJobs, rows_problem,
)

__all__ = ["TomekLinks", "EditedNearestNeighbours", "RepeatedEditedNearestNeighbours", "AllKNN", "CondensedNearestNeighbour", "OneSidedSelection", "NeighbourhoodCleaningRule"]


class _Cleaning(ImblearnResampler):
    family = "clean"
    output = "indices"
    modalities = ("tabular", "image", "audio")
    params_left_out = {"sampling_strategy (float)": "imbalanced-learn rejects a ratio for cleaning samplers"}

    def _neighbour_problems(self, counts, classes, targets):
        """``n_neighbors`` (where there is one) against all rows: each row and its neighbours."""
        return rows_problem("n_neighbors", getattr(self.params, "n_neighbors", None), sum(counts))


class _Condensed(_Cleaning):
    """Condensed nearest neighbour and one-sided selection: a k-NN rule fitted on the minority
    class's rows plus ``n_seeds_S`` rows of the class being cleaned."""

    def _neighbour_problems(self, counts, classes, targets):
        minority = min((c for c, n in enumerate(counts) if n), key=lambda c: counts[c])
        k, start = self.params.n_neighbors or 1, counts[minority] + self.params.n_seeds_S
        if not targets or k <= start:
            return []
        return [("n_neighbors", f"the k-NN rule starts from the {counts[minority]} rows of the minority class "
                                f"{classes[minority]!r} and n_seeds_S = {self.params.n_seeds_S} rows of the class "
                                f"it cleans, fewer than n_neighbors = {k}; set n_neighbors to {start} or lower, or "
                                f"n_seeds_S to {k - counts[minority]} or more")]


class TomekLinks(_Cleaning):
    """Tomek links: drop rows that form a Tomek link with a row of another class (imbalanced-learn TomekLinks)."""

    name = "tomek-links"
    imblearn_class = "imblearn.under_sampling.TomekLinks"

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's TomekLinks."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


_KIND_SEL = ("all: drop a row unless all its neighbours share its class; mode: unless most of them do")


class EditedNearestNeighbours(_Cleaning):
    """Edited nearest neighbours: drop rows their neighbours disagree with (imbalanced-learn EditedNearestNeighbours).

    Left out: ``n_neighbors`` as an estimator object.
    """

    name = "edited-nearest-neighbours"
    imblearn_class = "imblearn.under_sampling.EditedNearestNeighbours"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's EditedNearestNeighbours."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="neighbours that vote on each row")
        kind_sel: Literal["all", "mode"] = Field("all", description=_KIND_SEL)
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


class RepeatedEditedNearestNeighbours(_Cleaning):
    """Repeated edited nearest neighbours: edited nearest neighbours until nothing changes (imbalanced-learn).

    Left out: ``n_neighbors`` as an estimator object.
    """

    name = "repeated-edited-nearest-neighbours"
    imblearn_class = "imblearn.under_sampling.RepeatedEditedNearestNeighbours"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's RepeatedEditedNearestNeighbours."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="neighbours that vote on each row")
        max_iter: int = Field(100, ge=1, description="at most this many rounds")
        kind_sel: Literal["all", "mode"] = Field("all", description=_KIND_SEL)
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


class AllKNN(_Cleaning):
    """All k-NN: edited nearest neighbours with 1, 2, ... n_neighbors neighbours in turn (imbalanced-learn AllKNN).

    Left out: ``n_neighbors`` as an estimator object.
    """

    name = "all-knn"
    imblearn_class = "imblearn.under_sampling.AllKNN"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's AllKNN."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="the largest neighbourhood")
        kind_sel: Literal["all", "mode"] = Field("all", description=_KIND_SEL)
        allow_minority: bool = Field(False, description="let a majority class become smaller than the minority")
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)

    def _neighbour_problems(self, counts, classes, targets):
        # its rounds stop early when a class would fall below the minority: the data decides
        # whether the largest neighbourhood is ever searched
        return []


class CondensedNearestNeighbour(_Condensed):
    """Condensed nearest neighbour: keep the rows a 1-NN rule needs (imbalanced-learn CondensedNearestNeighbour).

    ``n_neighbors: null`` is imbalanced-learn's default (a 1-NN classifier). Left out:
    ``random_state`` (from the step's Rng), ``n_neighbors`` as an estimator object.
    """

    name = "condensed-nearest-neighbour"
    imblearn_class = "imblearn.under_sampling.CondensedNearestNeighbour"
    params_left_out = {**_Cleaning.params_left_out, **COMMON_LEFT_OUT, "n_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's CondensedNearestNeighbour."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: Annotated[int, Field(ge=1)] | None = Field(None, description="neighbours of the k-NN rule "
                                                                                  "(None: 1)")
        n_seeds_S: int = Field(1, ge=1, description="rows of each cleaned class to start the kept set with")  # noqa: N815
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


class OneSidedSelection(_Condensed):
    """One-sided selection: condensed nearest neighbour followed by Tomek links (imbalanced-learn OneSidedSelection).

    Left out: ``random_state`` (from the step's Rng), ``n_neighbors`` as an estimator object.
    """

    name = "one-sided-selection"
    imblearn_class = "imblearn.under_sampling.OneSidedSelection"
    params_left_out = {**_Cleaning.params_left_out, **COMMON_LEFT_OUT, "n_neighbors (object)": NEIGHBOURS_OBJECT}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's OneSidedSelection."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: Annotated[int, Field(ge=1)] | None = Field(None, description="neighbours of the k-NN rule "
                                                                                  "(None: 1)")
        n_seeds_S: int = Field(1, ge=1, description="rows of each cleaned class to start the kept set with")  # noqa: N815
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


class NeighbourhoodCleaningRule(_Cleaning):
    """Neighbourhood cleaning rule: edited nearest neighbours plus removal of rows that mislead the minority.

    (imbalanced-learn NeighbourhoodCleaningRule.) Left out: ``edited_nearest_neighbours`` (an
    object; imbalanced-learn's default EditedNearestNeighbours with ``n_neighbors`` and
    ``kind_sel='mode'``), ``n_neighbors`` as an estimator object.
    """

    name = "neighbourhood-cleaning-rule"
    imblearn_class = "imblearn.under_sampling.NeighbourhoodCleaningRule"
    params_left_out = {**_Cleaning.params_left_out, "n_neighbors (object)": NEIGHBOURS_OBJECT,
                       "edited_nearest_neighbours": "an object; imbalanced-learn's default EditedNearestNeighbours"}

    class Params(ImblearnResampler.Params):
        """Parameters of imbalanced-learn's NeighbourhoodCleaningRule."""

        sampling_strategy: CleanStrategy = Field("auto", description=CLEAN_DESCRIPTION)
        n_neighbors: int = Field(3, ge=1, description="neighbours of the editing and cleaning rules")
        threshold_cleaning: float = Field(0.5, gt=0.0, description="a class is cleaned when it holds more than "
                                                                   "this share of the minority class's rows")
        n_jobs: NJobs = Field(None, description=N_JOBS_DESCRIPTION)


# ------------------------------------------------------------------------ over + cleaning
