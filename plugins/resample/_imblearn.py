"""The bridge between setforge's `Resampler` contract and imbalanced-learn's samplers.

`ImblearnResampler` does what every imbalanced-learn sampler needs once: rows to a 2-D numpy
array (images flattened, reshaped back afterwards), ``sampling_strategy`` translated from class
names to label ids, the seed from ``ctx.rng.sk_seed()``, the checks that turn imbalanced-learn's
``ValueError`` into a `DataError` naming the class and the remedy, and the bookkeeping that turns
imbalanced-learn's output back into ``(kept_index, new_x, new_y, new_parent)``.

How provenance is recovered from each kind of sampler (``output`` on the subclass):

- ``"indices"``: the sampler exposes ``sample_indices_`` (random over/under-sampling, every
  cleaning sampler, NearMiss, InstanceHardnessThreshold). The first occurrence of an input row
  is kept (with its provenance); a repeat (random over-sampling, under-sampling with
  ``replacement``) is a new row whose parent is that input row.
- ``"appended"``: the input rows come back first, in order, and the synthetic rows follow
  (the SMOTE family, ADASYN). Where the seed row of each synthetic row can be recorded (SMOTE,
  Borderline-SMOTE, SVM-SMOTE, KMeans-SMOTE: the base row of ``s = x + u (nn - x)``) it is the
  parent; otherwise (ADASYN, SMOTE-NC, SMOTEN) the parent is the nearest same-class real row.
- ``"combined"``: SMOTE followed by a cleaner (SMOTE-ENN, SMOTE-Tomek): the cleaner's
  ``sample_indices_`` index the SMOTE output, whose first rows are the input.
- ``"centroids"``: ClusterCentroids replaces the rows of each under-sampled class by centroids;
  each centroid is a new row whose parent is the nearest same-class real row (with ``voting:
  hard`` the centroids are real rows, so they are kept with their own provenance).

Params mirror imbalanced-learn's own ``_parameter_constraints`` where they are plain values (ints
and floats with the same bounds, string options, lists, mappings), with imbalanced-learn's
defaults; ``tests/resample/test_imblearn_samplers.py`` checks each against the constraints.
``sampling_strategy`` keeps imbalanced-learn's meanings, with classes named by name or id.
What is left out, on every sampler: ``random_state`` (seeded from the step's `Rng`) and a callable
``sampling_strategy`` (not expressible in a run file); object-valued params are listed per
component in ``params_left_out`` and in its docstring. The samplers live by imbalanced-learn's
families: ``imblearn_over`` (over-sampling), ``imblearn_under`` (controlled under-sampling),
``imblearn_cleaning`` (cleaning under-sampling) and ``imblearn_combined`` (over-sampling then
cleaning).

Images are flattened to rows and reshaped back; tabular rows go in directly. Samplers that
interpolate refuse categorical columns (use ``smote-nc`` or ``smoten``). New rows are
``Origin.RESAMPLED``; their ``parent`` is the seed row for SMOTE-type samplers that let it be
recorded (smote, borderline-smote, svm-smote, kmeans-smote, smote-enn, smote-tomek), the copied
row for random over-sampling, and the nearest same-class real row for samplers that hide it
(adasyn, smote-nc, smoten, cluster-centroids).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
import torch
from pydantic import Field

from setforge import DataError, Dataset, Origin, Resampler, StepContext

__all__ = ["ImblearnResampler", "recording_seeds", "OverStrategy", "UnderStrategy", "CleanStrategy", "KNeighbors", "class_id",
           "nearest_same_class", "categorical_problem", "rows_problem", "COMMON_LEFT_OUT", "NEIGHBOURS_OBJECT",
           "N_JOBS_DESCRIPTION", "NJobs", "NonNegative"]

ClassKey = Union[int, str]

#: What every imbalanced-learn sampler leaves out of its params.
COMMON_LEFT_OUT = {
    "random_state": "seeded from the step's Rng (ctx.rng.sk_seed())",
}
NEIGHBOURS_OBJECT = "only the int form: a NearestNeighbors object is not expressible in a run file"
N_JOBS_DESCRIPTION = "parallel jobs for neighbour searches, as in scikit-learn (None: 1, -1: all cores)"
NJobs = int | None
NonNegative = Annotated[float, Field(ge=0.0)]
#: imbalanced-learn's sampling_strategy for over-samplers (a callable is not expressible in a run file).
OverStrategy = Union[
    Annotated[float, Field(gt=0.0, le=1.0)],
    Literal["auto", "minority", "not minority", "not majority", "all"],
    dict[ClassKey, Annotated[int, Field(ge=0)]],
]
#: imbalanced-learn's sampling_strategy for controlled under-samplers.
UnderStrategy = Union[
    Annotated[float, Field(gt=0.0, le=1.0)],
    Literal["auto", "majority", "not minority", "not majority", "all"],
    dict[ClassKey, Annotated[int, Field(ge=0)]],
]
#: imbalanced-learn's sampling_strategy for cleaning samplers. Its constraints also name a float,
#: which imbalanced-learn then rejects for cleaning ("clean-sampling" methods take no ratio), so
#: setforge leaves it out.
CleanStrategy = Union[
    Literal["auto", "majority", "not minority", "not majority", "all"],
    list[ClassKey],
]
#: ``k_neighbors`` / ``n_neighbors`` of the SMOTE family: imbalanced-learn's int, or ``auto``.
KNeighbors = Union[Annotated[int, Field(ge=1)], Literal["auto"]]

OVER_DESCRIPTION = ("which classes to over-sample and how far, as in imbalanced-learn: 'auto' (= 'not majority'), "
                    "'minority', 'not minority', 'not majority', 'all'; a float in (0, 1] (two classes only: "
                    "minority/majority ratio after resampling); or a mapping class name or id -> number of rows "
                    "wanted after resampling")
UNDER_DESCRIPTION = ("which classes to under-sample and how far, as in imbalanced-learn: 'auto' (= 'not minority'), "
                     "'majority', 'not minority', 'not majority', 'all'; a float in (0, 1] (two classes only: "
                     "minority/majority ratio after resampling); or a mapping class name or id -> number of rows "
                     "wanted after resampling")
CLEAN_DESCRIPTION = ("which classes to clean, as in imbalanced-learn: 'auto' (= 'not minority'), 'majority', "
                     "'not minority', 'not majority', 'all', or a list of class names or ids")
K_AUTO_NOTE = ("; 'auto' uses min(5, rows of the smallest over-sampled class - 1), so that small classes "
               "still work")

_SAMPLING_TYPE = {"over": "over-sampling", "under": "under-sampling", "clean": "clean-sampling"}


def _whole_number(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def class_id(key: Any, classes: Sequence[str], place: str) -> int:
    """The label id of a class given by name or id in a run file.

    A string is a class name; a whole number in a string that names no class is read as an id,
    unless a class name is itself a whole number (then ids and names could not be told apart, so
    a string is a name only). An int is an id (a mapping key in a run file is always a string:
    the run file refuses other keys). An unknown class is a `DataError` naming the known ones.
    """
    numbered = any(_whole_number(name) for name in classes)
    if isinstance(key, str):
        if key in classes:
            return classes.index(key)
        if _whole_number(key) and numbered:
            raise DataError(f"{place}: unknown class {key!r}; the classes are {list(classes)}: names that are "
                            f"numbers, so a quoted number is a class name, not an id")
        if _whole_number(key):
            key = int(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= int(key) < len(classes):
        return int(key)
    raise DataError(f"{place}: unknown class {key!r}; the classes are {list(classes)} (names) or ids "
                    f"0..{len(classes) - 1}")


def categorical_problem(ds: Dataset, name: str, what: str = "interpolates between rows",
                        copies: str = "'random-over'") -> str:
    """Why a sampler that would blur categorical codes cannot take `ds`, with what would work
    (`copies`: the sampler that copies rows, as the message names it); ``""`` when `ds` has no
    categorical columns."""
    if ds.features is None or not ds.features.categorical_indices:
        return ""
    columns = [ds.features.names[i] for i in ds.features.categorical_indices]
    return (f"resample '{name}' {what}, which would blur the codes of the categorical columns {columns}; use "
            f"resample 'smote-nc' (mixed columns), 'smoten' (all categorical) or {copies} instead")


def _listed(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _probe(classes: Sequence[str]) -> Any:
    """What `ImblearnResampler._strategy` reads of a dataset, from the class names alone."""
    return SimpleNamespace(classes=tuple(classes), num_classes=len(classes))


def rows_problem(param: str, k: int | None, rows: int, where: str = "the data") -> list[tuple[str, str]]:
    """``[(param, message)]`` when a search for a row's `k` nearest neighbours (besides the row)
    among `rows` rows cannot work; ``[]`` when it can (or `k` is None)."""
    if k is None or k < rows:
        return []
    return [(param, f"{param} = {k} asks for a row and its {k} nearest neighbours, and {where} has {rows} rows; "
                    f"set {param} to {rows - 1} or lower")]


def nearest_same_class(ds: Dataset, new_x: torch.Tensor, new_y: torch.Tensor) -> torch.Tensor:
    """For each new row, the index in `ds` of its nearest row of the same class.

    Real rows (``Origin.REAL``) are preferred; a class without real rows uses all its rows.
    """
    from setforge.plugins._shared.knn import knn

    parent = torch.full((new_y.numel(),), -1, dtype=torch.int64, device=new_y.device)
    flat_x = ds.x.reshape(len(ds), -1)
    flat_new = new_x.reshape(new_x.shape[0], -1).to(flat_x.device)
    real = ds.origin == int(Origin.REAL)
    for label in torch.unique(new_y).tolist():
        wanted = (new_y == label).nonzero().flatten()
        same = ds.y == label
        candidates = (same & real).nonzero().flatten()
        if candidates.numel() == 0:
            candidates = same.nonzero().flatten()
        if candidates.numel() == 0:
            continue
        _, nearest = knn(flat_new[wanted], flat_x[candidates], k=1)
        parent[wanted] = candidates[nearest[:, 0]].to(parent.device)
    return parent


def _match_rows(x: np.ndarray, y: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each of `rows` (with class `labels`), the index of an equal row of `x` of that class; -1 if none."""
    out = np.full(len(rows), -1, dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(y == label)
        lookup: dict[bytes, int] = {}
        for index, row in zip(members.tolist(), np.ascontiguousarray(x[members])):
            lookup.setdefault(row.tobytes(), index)
        wanted = np.flatnonzero(labels == label)
        values = np.ascontiguousarray(rows[wanted], dtype=x.dtype)
        out[wanted] = [lookup.get(row.tobytes(), -1) for row in values]
    return out


def recording_seeds(cls: type) -> type:
    """A subclass of an imbalanced-learn SMOTE class that records the base row of every synthetic
    row (``X[rows]`` in ``_generate_samples``, in generation order) in ``seed_rows_``, so that the
    parent of a SMOTE row is its seed row, as with the torch backend. ``_generate_samples`` is
    imbalanced-learn's private hook; should it change, the seeds are simply not recorded and the
    parents fall back to the nearest same-class row."""

    class Recording(cls):  # type: ignore[valid-type, misc]
        def _generate_samples(self, X, nn_data, nn_num, rows, cols, steps, *args, **kwargs):  # noqa: N803
            if not hasattr(self, "seed_rows_"):
                self.seed_rows_ = []
            self.seed_rows_.append(np.asarray(X[rows]))
            return super()._generate_samples(X, nn_data, nn_num, rows, cols, steps, *args, **kwargs)

    Recording.__name__ = Recording.__qualname__ = cls.__name__
    return Recording


class ImblearnResampler(Resampler):
    """Base of the resamplers backed by an imbalanced-learn sampler (not registered itself).

    A subclass sets ``imblearn_class`` (dotted path), ``family`` (``over``, ``under``, ``clean``),
    ``output`` (see the module docstring), ``params_left_out`` (imbalanced-learn parameters it
    does not expose, with the reason), and may override `_sampler_kwargs`, `check_data` (the
    columns it cannot take: asked before any step of a run) and `_neighbour_problems` (neighbour
    counts its classes cannot supply: `check_counts` asks them, with `sampling_strategy` against
    the class counts, in ``run --dry-run`` from the planned counts); `_check` asks both again when
    the step runs, on the step's own input.
    """

    imblearn_class: ClassVar[str] = ""
    family: ClassVar[str] = "over"
    output: ClassVar[str] = "appended"
    #: imbalanced-learn parameters this component does not expose -> why (shown in the docs).
    params_left_out: ClassVar[Mapping[str, str]] = {
        "random_state": "seeded from the step's Rng (ctx.rng.sk_seed())",
    }
    #: the k-neighbours param checked against class sizes before over-sampling (None: no check).
    k_param: ClassVar[str | None] = None
    #: whether this sampler makes new values by interpolation (refused on categorical columns).
    interpolates: ClassVar[bool] = False
    #: whether the sampler's seed rows can be recorded through ``_generate_samples`` (see `recording_seeds`).
    records_seeds: ClassVar[bool] = False
    #: whether imbalanced-learn reaches its targets exactly, so a dry run can show the counts.
    counts_known: ClassVar[bool] = False

    def expected_counts(self, counts: list[int], classes: Sequence[str]) -> list[int] | None:
        """Rows per class after this sampler, from the counts alone (for ``--dry-run``); None when
        they depend on the data (cleaning samplers, ADASYN, borderline-, SVM- and k-means SMOTE)."""
        if not self.counts_known:
            return None
        y = np.repeat(np.arange(len(counts)), counts)
        targets = self._targets(self._strategy(_probe(classes), y), y, classes)
        if self.family == "over":
            return [n + targets.get(c, 0) for c, n in enumerate(counts)]
        return [targets.get(c, n) for c, n in enumerate(counts)]

    # --------------------------------------------------------------- for subclasses
    def _sampler_kwargs(self, ds: Dataset, ctx: StepContext, strategy: Any) -> dict[str, Any]:
        """Keyword arguments for the imbalanced-learn class: the params, translated."""
        kwargs = {key: value for key, value in self.params.model_dump().items() if key != "sampling_strategy"}
        kwargs["sampling_strategy"] = strategy
        return kwargs

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """What this sampler cannot take in `ds`'s columns: categorical ones, for a sampler that
        interpolates (``interpolates``). (What the class counts decide is `check_counts`'s: the
        counts at a step may differ from the training split's.)"""
        problem = categorical_problem(ds, self.name) if self.interpolates else ""
        return [("", problem)] if problem else []

    def check_counts(self, counts: Sequence[int], classes: Sequence[str]) -> list[tuple[str, str]]:
        """Problems of the params with data of these class `counts`, as ``(key, message)``: a
        ``sampling_strategy`` imbalanced-learn would refuse here (the message says what it takes),
        neighbour counts the classes cannot supply (`_neighbour_problems`). None with fewer than two
        classes or an unknown class in sampling_strategy (`_check_data`, `check_classes` say so)."""
        if sum(1 for n in counts if n) < 2 or self.check_classes(classes):
            return []
        y = np.repeat(np.arange(len(counts)), counts)
        try:
            targets = self._targets(self._strategy(_probe(classes), y), y, classes)
        except DataError as error:
            return [("sampling_strategy", str(error).split(": ", 1)[1])]
        return self._neighbour_problems(list(counts), classes, targets)

    def _neighbour_problems(self, counts: list[int], classes: Sequence[str],
                            targets: Mapping[int, int]) -> list[tuple[str, str]]:
        """Neighbour counts larger than the rows they search, as ``(key, message)`` (`targets`:
        imbalanced-learn's {class id: rows}); by default ``k_param`` against the classes to
        over-sample (a row and its k same-class neighbours)."""
        if self.k_param is None:
            return []
        k = self._k_value(counts, targets, getattr(self.params, self.k_param))
        problem = self._k_problem(counts, classes, targets, k, self.k_param)
        return [problem] if problem else []

    def _check(self, ds: Dataset) -> None:
        """Data checks before the sampler runs: the first problem of `check_data`, then of
        `check_counts` on the step's own input, as a `DataError`."""
        for _, problem in self.check_data(ds)[:1]:
            raise DataError(problem)
        for key, problem in self.check_counts(ds.class_counts(), ds.classes)[:1]:
            raise DataError(f"resample '{self.name}' params.{key}: {problem}")

    def _make_sampler(self, kwargs: Mapping[str, Any]) -> Any:
        cls = self._imblearn_type()
        return (recording_seeds(cls) if self.records_seeds else cls)(**kwargs)

    @classmethod
    def _imblearn_type(cls) -> type:
        module, _, cls_name = cls.imblearn_class.rpartition(".")
        return getattr(importlib.import_module(module), cls_name)

    # ---------------------------------------------------------------- the template
    def _resample(self, ds: Dataset, ctx: StepContext):
        self._check_data(ds)
        self._check(ds)
        x = ds.x.reshape(len(ds), -1).detach().cpu().numpy()
        y = ds.y.cpu().numpy()
        strategy = self._strategy(ds, y)
        targets = self._targets(strategy, y, ds.classes)
        kwargs = self._sampler_kwargs(ds, ctx, strategy)
        if self.k_param is not None:
            kwargs[self.k_param] = self._resolve_k(ds, y, targets, getattr(self.params, self.k_param), self.k_param)
        sampler = self._make_sampler(kwargs)
        if "random_state" in sampler.get_params():
            sampler.set_params(random_state=ctx.rng.sk_seed())
        try:
            x_res, y_res = self._fit_resample(sampler, x, y)
        except (ValueError, RuntimeError) as error:
            raise DataError(f"resample '{self.name}' (imbalanced-learn {type(sampler).__name__}) cannot resample "
                            f"this data: {error}") from None
        return self._result(ds, x, y, np.asarray(x_res), np.asarray(y_res), sampler)

    def _check_data(self, ds: Dataset) -> None:
        """Numeric rows, all finite, of at least two classes; else a `DataError` saying which."""
        if ds.modality not in ("tabular", "image", "audio"):
            raise DataError(f"resample '{self.name}' needs numeric rows, got {ds.modality}")
        flat = ds.x.reshape(len(ds), -1)
        # NaN and inf survive a row sum: a per-row check without an (N, D) mask; rows whose sum
        # merely overflowed are checked element by element.
        suspect = (~torch.isfinite(flat.sum(dim=1))).nonzero().flatten()
        bad_rows = suspect[~torch.isfinite(flat[suspect]).all(dim=1)] if suspect.numel() else suspect
        if bad_rows.numel():
            bad = int(bad_rows[0])
            raise DataError(f"resample '{self.name}': row {bad} holds NaN or infinite values; "
                            f"clean or impute the data first")
        present = torch.unique(ds.y).tolist()
        if len(present) < 2:
            only = ds.classes[int(present[0])] if present else None
            raise DataError(f"resample '{self.name}': the data holds "
                            f"{'no rows' if only is None else f'only class {only!r}'}; "
                            f"resampling needs at least two classes")

    def _fit_resample(self, sampler: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return sampler.fit_resample(x, y)

    # ---------------------------------------------------------- sampling_strategy
    def check_classes(self, classes: Sequence[str]) -> list[tuple[str, str]]:
        """Every class a mapping or list ``sampling_strategy`` names must be one of `classes`."""
        strategy = self.params.sampling_strategy
        problems = []
        for key in strategy if isinstance(strategy, (Mapping, list)) else ():
            try:
                class_id(key, list(classes), "sampling_strategy")
            except DataError as error:
                problems.append(("sampling_strategy", str(error).split(": ", 1)[1]))
        return problems

    def _strategy(self, ds: Dataset, y: np.ndarray) -> Any:
        """The params' sampling_strategy with class names mapped to ids, checked against the data."""
        strategy = self.params.sampling_strategy
        place = f"resample '{self.name}' params.sampling_strategy"
        present = set(np.unique(y).tolist())

        def present_id(key: Any) -> int:
            label = class_id(key, ds.classes, place)
            if label not in present:
                raise DataError(f"{place}: class {ds.classes[label]!r} has no rows in this data; "
                                f"the classes present are {[ds.classes[c] for c in sorted(present)]}")
            return label

        if isinstance(strategy, Mapping):
            return {present_id(key): int(count) for key, count in strategy.items()}
        if isinstance(strategy, list):
            return [present_id(key) for key in strategy]
        if isinstance(strategy, float) and len(present) != 2:
            raise DataError(f"{place}: a float ratio works for two classes only, this data has "
                            f"{len(present)}; use a string option or a mapping of class -> rows")
        return strategy

    def _targets(self, strategy: Any, y: np.ndarray, classes: Sequence[str]) -> dict[int, int]:
        """imbalanced-learn's own reading of the strategy: {class id: rows to add / keep}; a strategy
        it refuses is a `DataError` saying which values it takes here."""
        from imblearn.utils import check_sampling_strategy

        try:
            targets = check_sampling_strategy(strategy, y, _SAMPLING_TYPE[self.family])
        except ValueError as error:
            counts = np.bincount(y, minlength=len(classes)).tolist()
            raise DataError(f"resample '{self.name}' params.sampling_strategy: "
                            f"{self._refused(strategy, counts, classes) or error}") from None
        return {int(k): int(v) for k, v in targets.items()}

    def _refused(self, strategy: Any, counts: list[int], classes: Sequence[str]) -> str:
        """Why imbalanced-learn refuses `strategy` (class ids) for these `counts`, with the values
        it takes here; ``""`` for a reason not foreseen (its own words are shown then)."""
        over = self.family == "over"
        if isinstance(strategy, Mapping):
            wrong = [c for c, n in strategy.items() if (n < counts[c] if over else n > counts[c])]
            asked = "; ".join(f"{strategy[c]} rows of class {classes[c]!r}, which has {counts[c]}" for c in wrong)
            bounds = ", ".join(f"{counts[c]} rows for class {classes[c]!r}" for c in wrong)
            return (f"asks for {asked}: an over-sampler only adds rows (the mapping is the rows wanted after "
                    f"resampling), so ask for at least {bounds}" if over else
                    f"asks for {asked}: an under-sampler only drops rows, so ask for at most {bounds}") if wrong else ""
        present = sorted((c for c, n in enumerate(counts) if n), key=lambda c: counts[c])
        if not isinstance(strategy, float) or len(present) != 2:
            return ""
        few, many = counts[present[0]], counts[present[1]]

        def takes(ratio: float) -> bool:  # imbalanced-learn's own arithmetic
            return int(many * ratio - few) > 0 if over else int(few / ratio) <= many

        # the smallest ratio of two decimals it takes (its arithmetic truncates: near, not at, the bound)
        least = max(0.01, math.floor(((few + 1) / many if over else few / many) * 100) / 100)
        while least <= 1 and not takes(least):
            least = round(least + 0.01, 2)
        have = (f"class {classes[present[0]]!r} has {few} rows and {classes[present[1]]!r} {many} "
                f"(a ratio of {few / many:.3f})")
        if least > 1:
            return (f"a ratio (minority/majority rows after resampling) of at most 1 adds no rows here: {have}; "
                    f"use a string option such as 'auto' or a mapping of class -> rows")
        return (f"a ratio of {strategy} (minority/majority rows after resampling) "
                f"{'adds no rows' if over else 'would need rows added'}: {have}, and "
                f"{'an over-sampler only adds rows' if over else 'an under-sampler only drops rows'}; use a "
                f"ratio of at least {least:g} (at most 1)")

    def _k_value(self, counts: Sequence[int], targets: Mapping[int, int], value: Any) -> int:
        """The k of `value`: ``auto`` -> min(5, rows of the smallest over-sampled class - 1), at least 1."""
        if value != "auto":
            return int(value)
        return max(1, min([5] + [counts[label] - 1 for label, wanted in targets.items() if wanted]))

    def _k_problem(self, counts: Sequence[int], classes: Sequence[str], targets: Mapping[int, int], k: int,
                   param: str) -> tuple[str, str] | None:
        """``(key, message)`` when a class to over-sample has `k` rows or fewer (interpolating needs a
        row and k neighbours of its class), naming every such class and what would work; else None."""
        small = sorted((c for c, n in targets.items() if n and counts[c] < k + 1), key=lambda c: (counts[c], c))
        if single := [repr(classes[c]) for c in small if counts[c] < 2]:
            # whatever k: no neighbour to interpolate towards
            one, them = len(single) == 1, "it" if len(single) == 1 else "them"
            return ("sampling_strategy", f"{'class' if one else 'classes'} {_listed(single)} "
                                         f"{'has 1 row' if one else 'have 1 row each'}, and a class of one row cannot "
                                         f"be interpolated; over-sample {them} with random-over, or leave {them} out "
                                         f"of sampling_strategy")
        if not small:
            return None
        smallest, others = small[0], [f"{classes[c]!r} {counts[c]}" for c in small[1:]]
        them = "them" if others else "it"
        return (param, f"class {classes[smallest]!r} has {counts[smallest]} rows"
                       f"{f' (and {_listed(others)})' if others else ''}, fewer than {param} + 1 = {k + 1}; set "
                       f"{param} to {counts[smallest] - 1} or lower, or {param}: auto, or over-sample "
                       f"{'these classes' if others else 'the class'} with random-over, or leave {them} out of "
                       f"sampling_strategy")

    def _resolve_k(self, ds: Dataset, y: np.ndarray, targets: Mapping[int, int], value: Any, param: str) -> int:
        """`value` checked against the over-sampled classes; ``auto`` -> min(5, smallest class - 1)."""
        counts = np.bincount(y, minlength=ds.num_classes).tolist()
        k = self._k_value(counts, targets, value)
        if problem := self._k_problem(counts, ds.classes, targets, k, param):
            raise DataError(f"resample '{self.name}' params.{problem[0]}: {problem[1]}")
        return k

    # ------------------------------------------------------------------- output
    def _result(self, ds: Dataset, x: np.ndarray, y: np.ndarray, x_res: np.ndarray, y_res: np.ndarray,
                sampler: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(y)
        if self.output == "indices":
            return self._from_indices(ds, np.asarray(sampler.sample_indices_), x_res, y_res)
        if self.output == "combined":
            index = np.asarray(sampler.sample_indices_)
            kept, new = index[index < n], index[index >= n]
            new_x, new_y = sampler.smote_output_[0][new], sampler.smote_output_[1][new]
            n_appended = len(sampler.smote_output_[1]) - n
            parent = self._parents_of_appended(ds, x, y, sampler.smote_, n_appended, new - n, new_x, new_y)
            return self._pack(ds, kept, new_x, new_y, parent)
        if self.output == "centroids":
            return self._from_centroids(ds, x, y, x_res, y_res, sampler)
        new_x, new_y = x_res[n:], y_res[n:]
        parent = self._parents_of_appended(ds, x, y, sampler, len(new_y), np.arange(len(new_y)), new_x, new_y)
        return self._pack(ds, np.arange(n), new_x, new_y, parent)

    def _parents_of_appended(self, ds: Dataset, x: np.ndarray, y: np.ndarray, sampler: Any, n_appended: int,
                             position: np.ndarray, new_x: np.ndarray, new_y: np.ndarray) -> torch.Tensor:
        """Parents of appended synthetic rows (`position`: their place among the `n_appended` rows
        the SMOTE step appended): the recorded seed rows where the sampler recorded them, else (and for
        any seed not found among the input rows) the nearest same-class real row."""
        parent = torch.full((len(new_y),), -1, dtype=torch.int64)
        seeds = getattr(sampler, "seed_rows_", None)
        if seeds and position.size:
            seeds = np.concatenate(seeds)
            if len(seeds) == n_appended:  # one recorded seed per synthetic row, in output order
                parent = torch.as_tensor(_match_rows(x, y, seeds[position], new_y))
        missing = (parent < 0).nonzero().flatten()
        if missing.numel():
            parent = parent.to(ds.device)
            m = missing.to(ds.device)
            parent[m] = nearest_same_class(ds, self._to_rows(ds, new_x[missing.numpy()]),
                                           torch.as_tensor(new_y[missing.numpy()], device=ds.device))
        return parent

    def _from_indices(self, ds: Dataset, index: np.ndarray, x_res: np.ndarray, y_res: np.ndarray):
        _, first = np.unique(index, return_index=True)
        is_first = np.zeros(len(index), dtype=bool)
        is_first[first] = True
        kept = index[is_first]
        repeat = ~is_first
        return self._pack(ds, kept, x_res[repeat], y_res[repeat], index[repeat])

    def _from_centroids(self, ds: Dataset, x: np.ndarray, y: np.ndarray, x_res: np.ndarray, y_res: np.ndarray,
                        sampler: Any):
        targeted = set(int(k) for k in sampler.sampling_strategy_)
        kept = [np.flatnonzero(y == label) for label in np.unique(y) if int(label) not in targeted]
        replaced = np.isin(y_res, list(targeted))
        new_x, new_y = x_res[replaced], y_res[replaced]
        # A "centroid" equal to an input row (hard voting; or a cluster of equal rows) is that row,
        # kept as it is, whatever its origin, and once: a second centroid equal to it is a copy, a
        # new row with that row as its parent, as random-over's repeats are.
        match = _match_rows(x, y, new_x, new_y)
        found = np.flatnonzero(match >= 0)
        first = np.zeros(len(match), dtype=bool)
        first[found[np.unique(match[found], return_index=True)[1]]] = True
        kept.append(match[first])
        parent = torch.as_tensor(match[~first], device=ds.device)
        centroid = (parent < 0).nonzero().flatten()
        if centroid.numel():
            rows = (~first).nonzero()[0][centroid.cpu().numpy()]
            parent[centroid] = nearest_same_class(ds, self._to_rows(ds, new_x[rows]),
                                                  torch.as_tensor(new_y[rows], device=ds.device))
        kept_index = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
        return self._pack(ds, kept_index, new_x[~first], new_y[~first], parent)

    def _to_rows(self, ds: Dataset, flat: np.ndarray) -> torch.Tensor:
        """Flat numpy rows back to `ds`'s row shape, float32, on its device; images clipped to [0, 1]."""
        rows = torch.as_tensor(np.ascontiguousarray(flat, dtype=np.float32), device=ds.device)
        rows = rows.reshape(rows.shape[0], *ds.shape)
        if ds.modality == "image":
            # SMOTE steps are convex combinations; rounding (and random-over's shrinkage noise) can
            # leave [0, 1] by a hair, which the image contract forbids.
            rows = rows.clamp_(0.0, 1.0)
        return rows

    def _pack(self, ds: Dataset, kept: np.ndarray, new_x: np.ndarray, new_y: np.ndarray, parent: Any):
        device = ds.device
        return (torch.as_tensor(np.asarray(kept, dtype=np.int64), device=device),
                self._to_rows(ds, new_x),
                torch.as_tensor(np.asarray(new_y, dtype=np.int64), device=device),
                torch.as_tensor(parent, device=device).to(torch.int64))
