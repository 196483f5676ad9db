"""The downstream model that evaluators train on a training set and score on the real test split,
shared by ``utility``, ``ablation`` and ``cas``.

One trained model per (training set, val set, model params, seed, device), kept in the run's
cache: the raw baseline that ``utility``, ``ablation`` and ``cas`` all need trains once per run.
Seeds come from ``EvalContext.shared_rng`` (the same for every evaluator of a run), so two
evaluators that ask for the same model on the same rows get the same model, and report the same
baseline numbers.

    probs = test_probabilities(ectx, options, train, repeat=0)     # (N_test, C) on the CPU
    model = trained_model(ectx, options, train, repeat=0)          # the Classifier itself
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Cache, EvalContext
from setforge.dataset import Dataset

from .._shared.classifiers import DOWNSTREAM_KINDS, Classifier, cached_classifier, train_classifier

__all__ = ["ModelParams", "model_options", "trained_model", "test_probabilities", "SCORES", "BUILTIN_MODALITIES",
           "model_problems"]

#: The data each built-in downstream model takes.
BUILTIN_MODALITIES = {"logistic-regression": ("image", "tabular", "audio"), "mlp": ("image", "tabular", "audio"),
                      "cnn": ("image",), "gradient-boosting": ("tabular",)}


def model_problems(model: str, modality: str | None) -> list[tuple[str, str]]:
    """``check_params`` of an evaluator with a ``model`` param: a built-in model that cannot take
    the source's data, at ``model``, naming the built-ins that can (a contributed model is checked
    when it is loaded)."""
    if modality is None or modality in BUILTIN_MODALITIES.get(model, (modality,)):
        return []
    others = [repr(n) for n, takes in BUILTIN_MODALITIES.items() if modality in takes] or ["a contributed model"]
    return [("model", f"'{model}' needs {' or '.join(BUILTIN_MODALITIES[model])} data, and the source gives "
                      f"{modality} data; use {' or '.join(others)}")]

#: The scores every comparison reports.
SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


class ModelParams(Evaluator.Params):
    """The downstream model and how it is trained."""

    model: Literal["logistic-regression", "mlp", "cnn", "gradient-boosting"] = Field(
        "logistic-regression", description="the downstream classifier (cnn needs images; gradient-boosting, "
                                           "scikit-learn's HistGradientBoostingClassifier, tabular rows)")
    epochs: int = Field(100, ge=1, le=10_000, description="most training epochs")
    patience: int = Field(10, ge=1, le=1000, description="epochs without a lower val loss before stopping")
    batch_size: int = Field(128, ge=1, le=65_536, description="rows per training batch")
    lr: float | None = Field(None, gt=0.0, le=10.0, description="learning rate (default: Adam's 1e-2 for "
                                                                 "logistic-regression, 1e-3 mlp, 3e-3 cnn; "
                                                                 "gradient-boosting's 0.1)")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="Adam weight decay")
    hidden: int = Field(128, ge=1, le=65_536, description="hidden units (mlp, cnn)")


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


def _val(ectx: EvalContext) -> Dataset | None:
    return ectx.val if ectx.val is not None and len(ectx.val) else None


def _key(what: str, ectx: EvalContext, options: dict[str, Any], train: Dataset, repeat: int,
         *extra: Any) -> str:
    val = _val(ectx)
    rng = ectx.shared_rng
    return Cache.key("downstream", what, sorted(options.items()), train.fingerprint(),
                     None if val is None else val.fingerprint(), rng.seed, rng.key, int(repeat), str(ectx.device),
                     *extra)


def trained_model(ectx: EvalContext, options: dict[str, Any], train: Dataset, repeat: int = 0) -> Classifier:
    """The model of `options` (from `model_options`) trained on `train` with early stopping on the
    real val split (fixed epochs without one), seeded by ``shared_rng.spawn(repeat)``; trained once
    per run and kept in memory."""
    options = dict(options)
    kind = options.pop("kind")
    if options.get("hidden") is None:
        options["hidden"] = 128
    rng = ectx.shared_rng.spawn(int(repeat))
    key = _key("model", ectx, {"kind": kind, **options}, train, repeat)
    fit = lambda: train_classifier(kind, train, _val(ectx), rng, ectx.device, **options)  # noqa: E731
    if kind == "gradient-boosting":  # scikit-learn trees are no tensors: kept in memory for this run only
        return ectx.cache.get_or_compute(key, fit)
    # torch classifiers are kept as plain tensors, so the run's cache folder holds them and a resumed
    # run reads them back instead of training again
    return cached_classifier(ectx.cache, key, fit, ectx.device)


def test_probabilities(ectx: EvalContext, options: dict[str, Any], train: Dataset, repeat: int = 0) -> torch.Tensor:
    """Class probabilities ``(N_test, C)`` (CPU, float32) of `trained_model` on the real test split.

    Plain tensors, so the run's cache also keeps them on disk: a resumed run does not retrain."""
    test = ectx.test
    if test is None:
        raise ValueError("test_probabilities needs a test split")
    key = _key("test-probabilities", ectx, options, train, repeat, test.fingerprint())
    if options["kind"] not in DOWNSTREAM_KINDS:
        return ectx.cache.get_or_compute(key, lambda: _contributed_probabilities(ectx, options, train, test, repeat))
    return ectx.cache.get_or_compute(
        key, lambda: trained_model(ectx, options, train, repeat).predict_proba(test.x.to(ectx.device)).cpu())


def _contributed_probabilities(ectx: EvalContext, options: dict[str, Any], train: Dataset, test: Dataset,
                               repeat: int) -> torch.Tensor:
    """A model a plugin contributes (entry-point group ``setforge.models``): its ``predict_proba``
    when it has one, else its predictions as one-hot probabilities."""
    from .utility import _load_model

    kind = options["kind"]
    model = _load_model(kind)({k: v for k, v in options.items() if k != "kind"})
    model.fit(train, _val(ectx), ectx.shared_rng.spawn(int(repeat)), torch.device(ectx.device))
    if hasattr(model, "predict_proba"):
        return torch.as_tensor(model.predict_proba(test)).float().cpu()
    predicted = torch.as_tensor(model.predict(test)).to(torch.int64).cpu()
    return torch.nn.functional.one_hot(predicted, test.num_classes).float()
