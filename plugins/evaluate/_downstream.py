"""The downstream model that evaluators train on a training set and score on the real test split,
shared by every evaluator with a ``model`` param (``utility``, ``ablation``, ``cas``, ``tstr``).

A model is named the same way everywhere: a built-in one (`BUILTIN_MODALITIES`), or one an
installed distribution contributes under the entry-point group ``setforge.models``
(`downstream_models`); an evaluator declares its ``model`` param with `model_name` and subclasses
`DownstreamEvaluator`, which refuses at validate a model that cannot take the source's data
(`model_problems`) and resolves the name before training (`DownstreamEvaluator.model_kind`).

One trained model per (training set, val set, model params, seed, device), kept in the run's
cache: the raw baseline that ``utility``, ``ablation`` and ``cas`` all need trains once per run.
Seeds come from ``EvalContext.shared_rng`` (the same for every evaluator of a run), so two
evaluators that ask for the same model on the same rows get the same model, and report the same
baseline numbers. ``utility`` publishes its model params in the run's cache (`publish_model`);
``ablation`` trains that model (`published_model`) where its own params say nothing; ``utility``
runs before the other evaluators (``runs_first``), so the run file's order does not matter.

    probs = test_probabilities(ectx, options, train, repeat=0)     # (N_test, C) on the CPU
    model = trained_model(ectx, options, train, repeat=0)          # a Classifier, or a contributed model
    labels = predicted_labels(ectx, model, ds)                     # (N,) int64 on the CPU
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Protocol

import torch
from pydantic import AfterValidator, Field

from setforge.components import Evaluator
from setforge.context import Cache, EvalContext
from setforge.dataset import Dataset
from setforge.errors import DataError, PluginError
from setforge.rng import Rng

from .._shared.classifiers import (DOWNSTREAM_KINDS, BoostedTrees, Classifier, cached_classifier, summary_scores,
                                   train_classifier)
from ._stats import Estimate, bootstrap_counts, bootstrap_summary

__all__ = ["ModelParams", "DownstreamEvaluator", "DownstreamModel", "model_name", "model_options", "trained_model",
           "test_probabilities", "predicted_labels", "SCORES", "BUILTIN_MODALITIES", "MODEL_ENTRY_POINT_GROUP",
           "downstream_models", "load_model", "model_modalities", "model_problems", "publish_model",
           "published_model", "SHARED_MODEL_PARAMS", "paired_deltas"]

#: The entry-point group where a distribution contributes downstream models.
MODEL_ENTRY_POINT_GROUP = "setforge.models"

#: The data each built-in downstream model takes.
BUILTIN_MODALITIES = {"logistic-regression": ("image", "tabular", "audio"), "mlp": ("image", "tabular", "audio"),
                      "cnn": ("image",), "gradient-boosting": ("tabular",)}

#: The scores every comparison reports.
SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


class DownstreamModel(Protocol):
    """What a contributed downstream model provides (a class, found by its entry point's name).

    ``modalities``: the data it takes. ``__init__(options)`` gets the evaluator's model params as
    a dict (``epochs``, ``lr``, ... — use what applies); ``fit(train, val, rng, device)`` trains on
    the `Dataset` ``train`` (``val`` may be None), drawing every random number from the `Rng`;
    ``predict(ds)`` returns ``(N,)`` int64 labels for a `Dataset` of the same classes (and
    optionally ``predict_proba(ds)``, ``(N, K)`` over its K classes).
    """

    modalities: tuple[str, ...]

    def __init__(self, options: dict[str, Any]) -> None: ...

    def fit(self, train: Dataset, val: Dataset | None, rng: Rng, device: torch.device) -> None: ...

    def predict(self, ds: Dataset) -> torch.Tensor: ...


def downstream_models() -> dict[str, importlib.metadata.EntryPoint]:
    """The downstream models installed distributions contribute, by name (not loaded)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=MODEL_ENTRY_POINT_GROUP)}


def load_model(name: str, evaluator: str = "utility") -> type:
    """The class of the contributed model `name`; a `PluginError` naming `evaluator`, the model and
    its distribution when it fails to load or declares no ``modalities`` tuple."""
    entry_point = downstream_models()[name]
    dist = getattr(entry_point, "dist", None)
    where = f"{getattr(dist, 'name', 'unknown')} {getattr(dist, 'version', '')}".strip()
    try:
        model = entry_point.load()
    except Exception as error:  # noqa: BLE001 - a broken contributed model is named with its distribution
        raise PluginError(f"evaluate '{evaluator}': model '{name}' ({where}) failed to load: {error}") from error
    if not isinstance(getattr(model, "modalities", None), tuple):
        raise PluginError(f"evaluate '{evaluator}': model '{name}' ({where}) has no modalities tuple")
    return model


def model_modalities(name: str, evaluator: str = "utility") -> tuple[str, ...]:
    """The data model `name` takes: a built-in's, or a contributed model's ``modalities`` (loaded)."""
    return BUILTIN_MODALITIES[name] if name in BUILTIN_MODALITIES else load_model(name, evaluator).modalities


def _models_taking(modality: str) -> list[str]:
    """The built-in and the contributed models that take `modality` data (a contributed model that
    fails to load is left out: it is named when it is asked for)."""
    def takes(name: str) -> bool:
        try:
            return modality in model_modalities(name)
        except PluginError:
            return False
    return [n for n in [*DOWNSTREAM_KINDS, *sorted(set(downstream_models()) - set(DOWNSTREAM_KINDS))] if takes(n)]


def model_name(*choices: str) -> Any:
    """The type of an evaluator's ``model`` param: a built-in model's name, one of `choices` (such as
    ``"auto"``), or the name of a model an installed distribution contributes; any other name is
    refused, listing them all. Its annotation, ``Literal[<choices and built-ins>] | str``, says so
    to ``setforge plugins show`` and ``setforge schema``."""
    names = (*choices, *DOWNSTREAM_KINDS)

    def known(name: str) -> str:
        if name not in names and name not in downstream_models():
            contributed = sorted(set(downstream_models()) - set(names))
            raise ValueError(f"unknown model {name!r}; choose one of {', '.join([*names, *contributed])}")
        return name
    return Annotated[Literal[names] | str, AfterValidator(known)]  # type: ignore[valid-type]


def model_problems(model: str, modality: str | None, evaluator: str = "utility") -> list[tuple[str, str]]:
    """``check_params`` of `evaluator`, which has a ``model`` param: a model that cannot take the
    source's data, at ``model``, naming the models that can (``auto`` takes any data; a contributed
    model is loaded to read its ``modalities``: one that fails to load is a `PluginError`)."""
    if modality is None or model not in BUILTIN_MODALITIES and model not in downstream_models():
        return []
    takes = model_modalities(model, evaluator)
    if modality in takes:
        return []
    others = [repr(n) for n in _models_taking(modality)] or ["a contributed model"]
    return [("model", f"'{model}' needs {' or '.join(takes)} data, and the source gives "
                      f"{modality} data; use {' or '.join(others)}")]


class ModelParams(Evaluator.Params):
    """The downstream model and how it is trained."""

    model: model_name() = Field(  # type: ignore[valid-type]
        "logistic-regression", description="the downstream classifier: logistic-regression, mlp, cnn (images), "
                                           "gradient-boosting (scikit-learn's HistGradientBoostingClassifier, "
                                           "tabular rows), or a model an installed plugin contributes (entry-point "
                                           "group setforge.models)")
    epochs: int = Field(100, ge=1, le=10_000, description="most training epochs (boosting iterations for "
                                                         "gradient-boosting)")
    patience: int = Field(10, ge=1, le=1000, description="epochs without a lower val loss before stopping")
    batch_size: int = Field(128, ge=1, le=65_536, description="rows per training batch")
    lr: float | None = Field(None, gt=0.0, le=10.0, description="learning rate (default: Adam's 1e-2 for "
                                                                 "logistic-regression, 1e-3 mlp, 3e-3 cnn; "
                                                                 "gradient-boosting's 0.1)")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="Adam weight decay")
    hidden: int = Field(128, ge=1, le=65_536, description="hidden units (mlp, cnn)")


class DownstreamEvaluator(Evaluator):
    """Base of the evaluators that train a downstream model named by their ``model`` param (their
    `Params` subclass `ModelParams`): ``setforge validate`` refuses a model that cannot take the
    source's data (`model_problems`), and `model_kind` gives the model to train."""

    #: What ``model: auto`` means, by modality (other modalities: ``mlp``), for Params that take it.
    auto_models: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def check_params(cls, params, modality):
        return model_problems(params.model, modality, cls.name)

    def model_kind(self, modality: str) -> str:
        """The model to train on `modality` data: ``auto`` resolved; a model that cannot take the data is
        a `DataError` naming those that can (a contributed model is first checked here, when loaded)."""
        name = self.params.model
        if name == "auto":
            return self.auto_models.get(modality, "mlp")
        accepted = model_modalities(name, self.name)
        if modality not in accepted:
            others = _models_taking(modality)
            hint = f"choose model: {' or '.join(others)}" if others else \
                "install a plugin that contributes a model for it (such as setforge-text for text)"
            raise DataError(f"evaluate '{self.name}': model '{name}' takes {list(accepted)} data, not {modality}; "
                            f"{hint}")
        return name


def model_options(params: Any, kind: str | None = None) -> dict[str, Any]:
    """The training options of a model: ``kind`` plus what `train_classifier` takes, from `params`
    (any object with ModelParams' fields; a missing ``weight_decay`` means the default)."""
    kind = params.model if kind is None else kind
    options = {"kind": kind, "epochs": int(params.epochs), "patience": int(params.patience),
               "batch_size": int(params.batch_size), "lr": params.lr,
               "weight_decay": float(getattr(params, "weight_decay", 1e-4)), "hidden": int(params.hidden)}
    if kind == "logistic-regression":
        options["hidden"] = None  # a linear model has no hidden layer: the same model whatever it says
    return options


#: The params that make the run's downstream model: what ``utility`` publishes and ``ablation`` takes.
SHARED_MODEL_PARAMS = ("model", "repeats", "epochs", "patience", "batch_size", "lr", "weight_decay", "hidden")


class _Board:
    """The run's published downstream model params. Not plain data, so the run's cache keeps it in
    memory only: a resumed run publishes afresh, and never reads params of an earlier try."""

    def __init__(self) -> None:
        self.params: Any = None


def _board(ectx: EvalContext) -> _Board:
    rng = ectx.shared_rng
    return ectx.cache.get_or_compute(Cache.key("downstream", "published-model", rng.seed, rng.key), _Board)


def publish_model(ectx: EvalContext, params: Any) -> None:
    """Make `params` (``utility``'s: model, training params and ``repeats``) the run's downstream
    model, for the evaluators that run after it (`published_model`). Evaluators share nothing but
    the run's `EvalContext` (one ``cache``, one ``shared_rng``), so the cache carries it; the first
    call of a run wins (of two ``utility`` evaluators, the first in ``evaluate``)."""
    board = _board(ectx)
    if board.params is None:
        board.params = params


def published_model(ectx: EvalContext) -> Any:
    """The params `publish_model` made the run's downstream model, or None when no evaluator has
    published one (no ``utility`` in the run; it runs before the other evaluators)."""
    return _board(ectx).params


def _val(ectx: EvalContext) -> Dataset | None:
    return ectx.val if ectx.val is not None and len(ectx.val) else None


def _key(what: str, ectx: EvalContext, options: dict[str, Any], train: Dataset, repeat: int,
         *extra: Any) -> str:
    val = _val(ectx)
    rng = ectx.shared_rng
    return Cache.key("downstream", what, sorted(options.items()), train.fingerprint(),
                     None if val is None else val.fingerprint(), rng.seed, rng.key, int(repeat), str(ectx.device),
                     *extra)


def trained_model(ectx: EvalContext, options: dict[str, Any], train: Dataset, repeat: int = 0) -> Any:
    """The model of `options` (from `model_options`) trained on `train` with early stopping on the
    real val split (fixed epochs without one), seeded by ``shared_rng.spawn(repeat)``; trained once
    per run and kept in memory. A built-in model is a `Classifier` (or `BoostedTrees`), a contributed
    one an instance of its class, given the options without ``kind``; `predicted_labels` predicts
    with either."""
    options = dict(options)
    kind = options.pop("kind")
    rng = ectx.shared_rng.spawn(int(repeat))
    if kind not in DOWNSTREAM_KINDS:  # a contributed model: kept in memory for this run only
        def fit() -> Any:
            model = load_model(kind)(dict(options))
            model.fit(train, _val(ectx), rng, torch.device(ectx.device))
            return model
        return ectx.cache.get_or_compute(_key("model", ectx, {"kind": kind, **options}, train, repeat), fit)
    if options.get("hidden") is None:
        options["hidden"] = 128
    key = _key("model", ectx, {"kind": kind, **options}, train, repeat)
    fit = lambda: train_classifier(kind, train, _val(ectx), rng, ectx.device, **options)  # noqa: E731
    if kind == "gradient-boosting":  # scikit-learn trees are no tensors: kept in memory for this run only
        return ectx.cache.get_or_compute(key, fit)
    # torch classifiers are kept as plain tensors, so the run's cache folder holds them and a resumed
    # run reads them back instead of training again
    return cached_classifier(ectx.cache, key, fit, ectx.device)


def predicted_labels(ectx: EvalContext, model: Any, ds: Dataset) -> torch.Tensor:
    """``(N,)`` int64 labels (CPU) that a `trained_model` gives the rows of `ds`."""
    if isinstance(model, (Classifier, BoostedTrees)):
        return model.predict(ds.x.to(ectx.device)).cpu()
    return torch.as_tensor(model.predict(ds)).to(torch.int64).cpu()


def test_probabilities(ectx: EvalContext, options: dict[str, Any], train: Dataset, repeat: int = 0) -> torch.Tensor:
    """Class probabilities ``(N_test, C)`` (CPU, float32) of `trained_model` on the real test split: a
    contributed model's ``predict_proba`` when it has one, else its predictions as one-hot
    probabilities.

    Plain tensors, so the run's cache also keeps them on disk: a resumed run does not retrain."""
    test = ectx.test
    if test is None:
        raise ValueError("test_probabilities needs a test split")

    def probabilities() -> torch.Tensor:
        model = trained_model(ectx, options, train, repeat)
        if isinstance(model, (Classifier, BoostedTrees)):
            return model.predict_proba(test.x.to(ectx.device)).cpu()
        if hasattr(model, "predict_proba"):
            return torch.as_tensor(model.predict_proba(test)).float().cpu()
        return torch.nn.functional.one_hot(predicted_labels(ectx, model, test), test.num_classes).float()
    return ectx.cache.get_or_compute(_key("test-probabilities", ectx, options, train, repeat, test.fingerprint()),
                                     probabilities)


# Rows of bootstrap weights scored at once: bounds the working memory whatever the test split's size.
_BOOTSTRAP_CHUNK_BYTES = 16 * 2**20


def _paired_statistics(confusion: torch.Tensor, tested: list[int], minority: list[int]) -> dict[str, torch.Tensor]:
    """`SCORES`, ``recall/<c>`` of each class `c` with test rows, and ``minority_recall`` (the mean
    recall of the `minority` classes, when there are any) of confusion matrices ``(..., C, C)``."""
    out = summary_scores(confusion)
    recall = confusion.diagonal(dim1=-2, dim2=-1).double() / confusion.sum(-1).double().clamp_min(1e-300)
    out.update({f"recall/{c}": recall[..., c] for c in tested})
    if minority:
        out["minority_recall"] = recall[..., minority].mean(-1)
    return out


def paired_deltas(y: torch.Tensor, before: torch.Tensor, after: torch.Tensor, num_classes: int, rounds: int,
                  generator: torch.Generator, level: float = 0.95, minority: list[int] | None = None
                  ) -> dict[str, Estimate]:
    """How each of `SCORES` changes from the `before` to the `after` predictions ``(seeds, N)`` of
    the same test rows `y` (seed *s* of both sides trained alike but for the training rows): the
    mean over seeds of the paired differences, with the percentile interval (`level`) of a
    two-level paired bootstrap of `rounds` rounds. So does ``recall/<c>`` for each class index
    `c` with test rows, and ``minority_recall`` (the mean recall of the `minority` classes) when
    they are given.

    Each round redraws the test rows with replacement within each true class (so every class keeps
    its size, as the stratified split made it) and the seeds with replacement, and scores both
    sides on the same draw. The interval thus covers both sources of noise in a downstream score:
    which rows the test split happened to hold, and which seeds trained the models. A model that
    gives the same predictions whatever its seed still gets an interval as wide as its test split
    warrants, where the seeds' spread alone would be zero. ``estimator`` is ``paired-bootstrap``;
    ``std`` the rounds' standard deviation.

    A class with a single test row keeps that row in every round, so the rounds cannot tell how
    much its change is noise: when that row's prediction differs between the two sides (for some
    seed), every number it enters has no interval (``std`` and ``interval`` None): `SCORES`, its
    ``recall/<c>``, and ``minority_recall`` when it is a minority class. Whatever else changed,
    one test row would otherwise read as a certain change (a degenerate interval, ``+1 to +1``
    for its recall)."""
    y = torch.as_tensor(y, device="cpu").to(torch.int64)
    before, after = (torch.as_tensor(p, device="cpu").to(torch.int64).reshape(-1, len(y)) for p in (before, after))
    if before.shape != after.shape:
        raise ValueError(f"paired_deltas: {tuple(before.shape)} predictions before, {tuple(after.shape)} after")
    seeds, n, cells = before.shape[0], len(y), num_classes * num_classes
    cpu = torch.device("cpu")  # (every tensor here: whatever torch's default device is)
    support = torch.bincount(y, minlength=num_classes)
    tested = support.nonzero().flatten().tolist()
    minority = [c for c in (minority or []) if c in tested]
    # (classes whose one test row changed: every round keeps it, so its change would read as certain)
    unresampled = {c for c in tested if int(support[c]) == 1
                   and bool((before[:, y == c] != after[:, y == c]).any())}

    def statistics(labels: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        confusion = torch.zeros(len(weights), cells, dtype=torch.float64, device=cpu).index_add_(
            1, y * num_classes + labels, weights)
        return _paired_statistics(confusion.view(-1, num_classes, num_classes), tested, minority)

    ones = torch.ones(1, n, dtype=torch.float64, device=cpu)
    full = [statistics(p[s], ones) for p in (before, after) for s in range(seeds)]
    points = {key: float(sum(full[seeds + s][key] - full[s][key] for s in range(seeds)) / seeds) for key in full[0]}
    per_chunk = max(1, _BOOTSTRAP_CHUNK_BYTES // (8 * max(n, cells * seeds)))
    values: dict[str, list[torch.Tensor]] = {key: [] for key in points}
    seed_counts = bootstrap_counts(seeds, rounds, generator)  # (the seeds first, then the rows piece by piece)
    for start in range(0, rounds, per_chunk):
        size = min(per_chunk, rounds - start)
        rows, seed_weights = bootstrap_counts(n, size, generator, strata=y), seed_counts[start:start + size]
        diffs = {key: torch.empty(size, seeds, dtype=torch.float64, device=cpu) for key in points}
        for s in range(seeds):
            sides = [statistics(p[s], rows) for p in (before, after)]
            for key in points:
                diffs[key][:, s] = sides[1][key] - sides[0][key]
        for key in points:
            values[key].append((diffs[key] * seed_weights).sum(1) / seeds)
    blind = set(SCORES) | {f"recall/{c}" for c in unresampled} | (
        {"minority_recall"} if unresampled & set(minority) else set()) if unresampled else set()
    return {key: Estimate(points[key], None, "paired-bootstrap", None) if key in blind else
            bootstrap_summary(points[key], torch.cat(values[key]) if values[key] else torch.empty(0, device=cpu),
                              "paired-bootstrap", level) for key in points}

