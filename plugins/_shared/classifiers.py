"""The small classifiers that evaluators and generators train: ``logistic-regression``, ``mlp``
and ``cnn`` (torch), trained with early stopping on a validation split, deterministic for a given
`Rng`, on any device; and, for tabular rows, ``gradient-boosting`` (scikit-learn's
`HistGradientBoostingClassifier` with native categorical columns, `BoostedTrees`), through
`train_classifier`.

    model = train_classifier("cnn", train_ds, val_ds, rng, device)
    labels = model.predict(test_ds.x)          # (N,) int64
    probs = model.predict_proba(test_ds.x)     # (N, C)
    feats = model.features(test_ds.x)          # (N, F): the penultimate layer (a feature space)

Model-facing normalisation (per-column mean/std for tabular rows, per-channel for images, both
from the training rows) lives inside the model, so callers pass data in pipeline units.
Randomness (initial weights, batch order) comes only from the `Rng` given; there is no dropout and
the cnn's batch norm uses its running statistics in evaluation, so evaluation is deterministic too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from setforge.dataset import Dataset
from setforge.errors import DataError
from setforge.rng import Rng
from .threads import one_thread_if_small

__all__ = ["CLASSIFIER_KINDS", "DOWNSTREAM_KINDS", "Classifier", "BoostedTrees", "TrainHistory", "train_classifier",
           "fit_classifier", "fit_boosted_trees", "classification_scores", "summary_scores", "calibration_scores",
           "classifier_state", "classifier_from_state", "cached_classifier"]

CLASSIFIER_KINDS = ("logistic-regression", "mlp", "cnn")
#: What `train_classifier` trains: the torch classifiers and gradient-boosted trees (tabular rows).
DOWNSTREAM_KINDS = CLASSIFIER_KINDS + ("gradient-boosting",)
_SMALL_MODEL_MACS = 2**30
_DEFAULT_LR = {"logistic-regression": 1e-2, "mlp": 1e-3, "cnn": 3e-3}
_MIN_EPOCH_BATCHES = 8


@dataclass
class TrainHistory:
    """What training did: epochs run, the epoch whose weights were kept, losses per epoch."""

    epochs_run: int = 0
    best_epoch: int = -1
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    stopped_early: bool = False


class Classifier(nn.Module):
    """A small classifier whose ``features`` (penultimate layer) double as a feature space.

    ``kind``: ``logistic-regression`` (a linear layer on the normalised, flattened input; its
    features are that input), ``mlp`` (two hidden ReLU layers of ``hidden`` units) or ``cnn``
    (images only: two blocks of two conv + batch-norm + ReLU layers, global average pooling, one
    hidden layer; any image size).
    """

    def __init__(self, kind: str, row_shape: tuple[int, ...], num_classes: int, mean: torch.Tensor,
                 std: torch.Tensor, hidden: int = 128):
        super().__init__()
        if kind not in CLASSIFIER_KINDS:
            raise DataError(f"unknown classifier {kind!r}; choose one of {', '.join(CLASSIFIER_KINDS)}")
        if kind == "cnn" and len(row_shape) != 3:
            raise DataError(f"the cnn classifier needs images (C, H, W); these rows have shape {row_shape}: "
                            "use mlp or logistic-regression")
        self.kind, self.row_shape, self.num_classes = kind, tuple(row_shape), int(num_classes)
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())
        flat = math.prod(row_shape)
        if kind == "logistic-regression":
            self.body: nn.Module = nn.Flatten()
            width = flat
        elif kind == "mlp":
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                      nn.ReLU())
            width = hidden
        else:
            pool = nn.MaxPool2d(2) if min(row_shape[1:]) >= 4 else nn.Identity()
            # batch norm after every conv: without it the signal fades through four ReLU convs and global
            # pooling, and on a few hundred rows the net sits at the class prior until early stopping ends it
            widths = (row_shape[0], 16, 16, 32, 32)
            blocks = [[nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()] for i, o in zip(widths, widths[1:])]
            self.body = nn.Sequential(*blocks[0], *blocks[1], pool, *blocks[2], *blocks[3], nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(32, hidden), nn.ReLU())
            width = hidden
        self.head = nn.Linear(width, self.num_classes)
        self.feature_dim = width
        self.history = TrainHistory()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.mean.device, torch.float32) - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer for a batch (call under ``torch.no_grad()`` for inference)."""
        return self.body(self.normalise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C)``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def _batched(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            outs = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        if not outs:
            width = self.num_classes if fn is self.forward else self.feature_dim
            return torch.zeros((0, width), device=self.mean.device)
        return torch.cat(outs)

    def predict_logits(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return self._batched(self.forward, x, batch_size)

    def predict_proba(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return torch.softmax(self.predict_logits(x, batch_size), dim=1)

    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Predicted labels ``(N,)`` int64."""
        return self.predict_logits(x, batch_size).argmax(dim=1)

    def embed(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """`features` for many rows, in batches, in eval mode."""
        return self._batched(self.features, x, batch_size)


def _normalisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column (tabular) or per-channel (images, audio) mean and std, shaped to broadcast."""
    x = x.double()
    if x.ndim == 2:
        mean, std = x.mean(0), x.std(0, unbiased=False)
    else:
        dims = [0] + list(range(2, x.ndim))
        mean, std = x.mean(dims), x.std(dims, unbiased=False)
        shape = (-1,) + (1,) * (x.ndim - 2)
        mean, std = mean.view(shape), std.view(shape)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean.float(), std.float()


@torch.no_grad()
def _init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default init (uniform within 1/sqrt(fan_in)), drawn from `generator` instead of
    the global RNG."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            for param in (module.weight, module.bias):
                if param is None:
                    continue
                values = torch.rand(param.shape, generator=generator, device=generator.device) * (2 * bound) - bound
                param.copy_(values.to(param.device))


def _macs_per_batch(model: Classifier, batch_size: int) -> int:
    """A rough count of multiply-adds in one training batch's forward pass."""
    spatial = math.prod(model.row_shape[1:]) if model.kind == "cnn" else 1
    convs = sum(p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    return batch_size * (convs * spatial + sum(p.numel() for p in model.parameters()))


def _as_rng(rng: Rng | int) -> Rng:
    return rng if isinstance(rng, Rng) else Rng(int(rng))


#: The bias given to the output of a class with no training rows: its probability is about
#: exp(-1e4), so no row is assigned to it, and logs of it stay finite.
_ABSENT_LOGIT = -1e4


def fit_classifier(kind: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, rng: Rng | int,
                   device: Any = "cpu", *, x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                   epochs: int = 100, patience: int = 10, batch_size: int = 128, lr: float | None = None,
                   weight_decay: float = 1e-4, hidden: int = 128,
                   on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> Classifier:
    """Train a `Classifier` on tensors ``x`` (rows) and ``y`` (labels).

    Adam on mini-batches of ``batch_size`` drawn in an order from `rng`; an epoch is one pass over
    the rows, or as many passes as make 8 batches when the rows fill fewer (so that a few hundred
    rows still get enough steps). With validation rows, training stops after ``patience`` epochs
    without a lower validation loss and the best weights are kept; without them it runs ``epochs``
    epochs. ``lr`` defaults per kind (1e-2 for logistic regression, 1e-3 mlp, 3e-3 cnn). Deterministic on the CPU for the same inputs and `rng`.
    Small models train on one CPU thread (restored afterwards).
    """
    device = torch.device(device)
    rng = _as_rng(rng)
    if len(x) == 0:
        raise DataError("cannot train a classifier on 0 rows")
    if kind not in CLASSIFIER_KINDS:
        raise DataError(f"unknown classifier {kind!r}; choose one of {', '.join(CLASSIFIER_KINDS)}")
    x, y = x.to(device, torch.float32), y.to(device, torch.int64)
    mean, std = _normalisation(x)
    model = Classifier(kind, tuple(x.shape[1:]), num_classes, mean, std, hidden=hidden).to(device)
    _init_weights(model, rng.spawn("init").torch)
    order = rng.spawn("batches").torch
    optimiser = torch.optim.Adam(model.parameters(), lr=_DEFAULT_LR[kind] if lr is None else lr,
                                 weight_decay=weight_decay)
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        x_val, y_val = x_val.to(device, torch.float32), y_val.to(device, torch.int64)
    with one_thread_if_small(_macs_per_batch(model, batch_size), _SMALL_MODEL_MACS, device):
        history, best_state = _train_loop(model, optimiser, x, y, x_val if has_val else None, y_val if has_val else None,
                                          order, device, kind, epochs, patience, batch_size, on_epoch)
    if best_state is not None:
        model.load_state_dict(best_state)
    elif not has_val:
        history.best_epoch = history.epochs_run - 1
    with torch.no_grad():  # a class without training rows is never predicted (its output unit learnt nothing)
        model.head.bias[torch.bincount(y, minlength=num_classes) == 0] = _ABSENT_LOGIT
    model.history = history
    model.eval()
    return model


def _train_loop(model: Classifier, optimiser: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                x_val: torch.Tensor | None, y_val: torch.Tensor | None, order: torch.Generator, device: torch.device,
                kind: str, epochs: int, patience: int, batch_size: int,
                on_epoch: Callable[[int, dict[str, float]], None] | None) -> tuple[TrainHistory, dict | None]:
    loss_fn = nn.CrossEntropyLoss()
    has_val = x_val is not None
    history = TrainHistory()
    best_loss, best_state, waited = math.inf, None, 0
    n = len(x)
    # a lone trailing row joins the batch before it (one row is a noisy step, and batch norm needs two)
    ends = list(range(batch_size, n, batch_size)) + [n]
    if len(ends) > 1 and ends[-1] - ends[-2] == 1:
        ends.pop(-2)
    # an epoch is at least _MIN_EPOCH_BATCHES steps (several passes over a small set), so that epochs and
    # patience mean enough optimiser steps to leave the class prior however few the rows
    passes = -(-_MIN_EPOCH_BATCHES // len(ends))
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for _ in range(passes):
            perm = torch.randperm(n, generator=order, device=order.device).to(device)
            for start, end in zip([0] + ends[:-1], ends):
                index = perm[start:end]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[index]), y[index])
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(index)
        history.train_loss.append(total / (n * passes))
        history.epochs_run = epoch + 1
        losses = {"train": history.train_loss[-1]}
        if has_val:
            logits = model.predict_logits(x_val)
            val_loss = float(loss_fn(logits, y_val))
            history.val_loss.append(val_loss)
            losses["val"] = val_loss
            if not math.isfinite(val_loss):
                raise DataError(f"classifier {kind}: the validation loss became {val_loss}; lower lr")
            if val_loss < best_loss - 1e-7:
                best_loss, waited, history.best_epoch = val_loss, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        if on_epoch is not None:
            on_epoch(epoch, losses)
        if not math.isfinite(history.train_loss[-1]):
            raise DataError(f"classifier {kind}: the training loss became {history.train_loss[-1]}; lower lr")
        if has_val and waited >= patience:
            history.stopped_early = True
            break
    return history, best_state


class BoostedTrees:
    """``gradient-boosting``: a fitted `HistGradientBoostingClassifier` behind the `Classifier`
    prediction methods (``predict``, ``predict_proba``) on tensors of any device. A training set
    of one class predicts that class."""

    kind = "gradient-boosting"

    def __init__(self, model: Any, num_classes: int, constant: int | None = None):
        self.model, self.num_classes, self.constant = model, int(num_classes), constant

    def predict_proba(self, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
        out = torch.zeros((len(x), self.num_classes), dtype=torch.float32)
        if self.constant is not None:
            out[:, self.constant] = 1.0
        elif len(x):
            rows = x.detach().reshape(len(x), -1).double().cpu().numpy()
            probs = torch.from_numpy(self.model.predict_proba(rows)).float()
            out[:, torch.as_tensor(self.model.classes_, dtype=torch.int64)] = probs
        return out.to(x.device)

    def predict(self, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
        """Predicted labels ``(N,)`` int64."""
        return self.predict_proba(x, batch_size).argmax(dim=1)


def fit_boosted_trees(train: Dataset, val: Dataset | None, rng: Rng | int, *, epochs: int = 100, patience: int = 10,
                      lr: float | None = None, **_ignored: Any) -> BoostedTrees:
    """Fit `HistGradientBoostingClassifier` on tabular rows: ``epochs`` boosting iterations at most,
    learning rate ``lr`` (default 0.1), early stopping after ``patience`` iterations without a lower
    loss on the real `val` split (none: all iterations); the columns `FeatureInfo` names categorical
    (up to 255 categories) are split natively. Deterministic for a given `rng`. Options of the
    torch classifiers (batch_size, hidden, weight_decay) do not apply and are ignored."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if train.modality != "tabular":
        raise DataError(f"the gradient-boosting model takes tabular rows, not {train.modality}: use mlp or cnn")
    if len(train) == 0:
        raise DataError("cannot train a classifier on 0 rows")
    y = train.y.cpu().numpy()
    present = sorted(set(y.tolist()))
    if len(present) == 1:
        return BoostedTrees(None, train.num_classes, constant=present[0])
    features = train.features
    categorical = [features is not None and name in features.categorical and len(features.categorical[name]) <= 255
                   for name in (features.names if features is not None else range(train.x.shape[1]))]
    has_val = val is not None and len(val) > 0 and set(val.y.tolist()) <= set(present)
    model = HistGradientBoostingClassifier(
        learning_rate=0.1 if lr is None else lr, max_iter=epochs, categorical_features=categorical if any(categorical)
        else None, early_stopping=has_val, n_iter_no_change=patience, random_state=_as_rng(rng).sk_seed())
    x = train.x.detach().double().cpu().numpy()
    if has_val:
        model.fit(x, y, X_val=val.x.detach().double().cpu().numpy(), y_val=val.y.cpu().numpy())
    else:
        model.fit(x, y)
    return BoostedTrees(model, train.num_classes)


def train_classifier(kind: str, train: Dataset, val: Dataset | None, rng: Rng | int, device: Any = "cpu",
                     **options: Any) -> Classifier | BoostedTrees:
    """Train a `Classifier` of `kind` on the `train` dataset with early stopping on `val`
    (None: fixed epochs). `options` are those of `fit_classifier` (epochs, patience, batch_size,
    lr, weight_decay, hidden, on_epoch). ``gradient-boosting`` (tabular rows) gives `BoostedTrees`
    (`fit_boosted_trees`)."""
    if train.modality == "text":
        raise DataError("the shared classifiers take image, tabular or audio rows, not text")
    if val is not None and val.classes != train.classes:
        raise DataError("train and val must have the same classes")
    if kind == "gradient-boosting":
        return fit_boosted_trees(train, val, rng, **options)
    return fit_classifier(kind, train.x, train.y, train.num_classes, rng, device,
                          x_val=None if val is None else val.x, y_val=None if val is None else val.y, **options)


def calibration_scores(y_true: torch.Tensor, probabilities: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """Expected calibration error and Brier score of class `probabilities` ``(N, C)`` for labels `y_true`.

    ECE (Guo et al. 2017): rows binned by their top probability (the confidence) into `bins`
    equal-width bins of (0, 1]; the sum over bins of ``rows in bin / N * |accuracy - mean
    confidence|``. Brier: ``mean_i sum_c (p_ic - [y_i = c])^2``, halved for two classes, which is
    scikit-learn's ``brier_score_loss`` (its default ``scale_by_half="auto"``): the classic binary
    Brier score in [0, 1], and the multi-class one in [0, 2]. Lower is better for both.
    """
    y_true = torch.as_tensor(y_true).cpu().to(torch.int64)
    probabilities = torch.as_tensor(probabilities).cpu().to(torch.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != y_true.shape[0] or len(y_true) == 0:
        raise DataError(f"calibration needs (N, C) probabilities for N labels, got {tuple(probabilities.shape)} for "
                        f"{len(y_true)} labels")
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == y_true).double()
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(which, minlength=bins).double()
    gap = (torch.bincount(which, correct, minlength=bins) - torch.bincount(which, confidence, minlength=bins)).abs()
    onehot = torch.nn.functional.one_hot(y_true, probabilities.shape[1]).double()
    brier = float(((probabilities - onehot) ** 2).sum(dim=1).mean())
    return {"ece": float(gap.sum() / count.sum()), "brier": brier / 2 if probabilities.shape[1] == 2 else brier}


def classifier_state(model: Classifier) -> dict[str, Any]:
    """A trained `Classifier` as plain values and tensors (what ``torch.load(weights_only=True)``
    reads back, so the run's cache keeps it on disk); `classifier_from_state` rebuilds it."""
    hidden = model.head.in_features if model.kind != "logistic-regression" else 128
    return {"kind": model.kind, "row_shape": list(model.row_shape), "num_classes": model.num_classes,
            "hidden": int(hidden), "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def classifier_from_state(state: dict[str, Any], device: Any = "cpu") -> Classifier:
    """The `Classifier` saved by `classifier_state`, in eval mode on `device`."""
    weights = state["weights"]
    model = Classifier(state["kind"], tuple(int(d) for d in state["row_shape"]), int(state["num_classes"]),
                       weights["mean"], weights["std"], hidden=int(state["hidden"]))
    model.load_state_dict(weights)
    return model.to(device).eval()


def cached_classifier(cache: Any, key: str, train: Callable[[], Classifier], device: Any = "cpu") -> Classifier:
    """`train()`'s classifier, kept in `cache` (a ``setforge.context.Cache``, or None for none)
    under `key` as plain tensors, so that a resumed run reads it back instead of training again."""
    if cache is None:
        return train().to(device).eval()
    # the rebuilt module is kept in memory (not plain: never on disk), so asking again gives the same object
    return cache.get_or_compute(f"{key}-module-{device}", lambda: classifier_from_state(
        cache.get_or_compute(key, lambda: classifier_state(train())), device))


def summary_scores(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accuracy, balanced accuracy and macro-F1 of confusion matrices ``(..., C, C)`` (rows: true
    class, columns: predicted; counts, or rows weighted as a bootstrap weights them), one value
    per matrix, with `classification_scores`' conventions. Batched, so the rounds of a bootstrap
    are scored at once."""
    confusion = confusion.double()
    correct = confusion.diagonal(dim1=-2, dim2=-1)
    support, predicted = confusion.sum(-1), confusion.sum(-2)
    seen, present = support > 0, (support > 0) | (predicted > 0)
    recall = torch.where(seen, correct / support.clamp_min(1e-300), 0.0)
    precision = torch.where(predicted > 0, correct / predicted.clamp_min(1e-300), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-300), 0.0)
    return {"accuracy": correct.sum(-1) / support.sum(-1),
            "balanced_accuracy": (recall * seen).sum(-1) / seen.sum(-1),
            "macro_f1": (f1 * present).sum(-1) / present.sum(-1)}


def classification_scores(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall, precision and F1.

    Conventions follow scikit-learn: balanced accuracy averages the recall of the classes present
    in ``y_true``; macro-F1 averages F1 over the classes present in ``y_true`` or ``y_pred``, with
    0 where precision and recall are both 0. ``recall[c]`` is None for a class absent from
    ``y_true``.
    """
    y_true = torch.as_tensor(y_true).cpu().to(torch.int64)
    y_pred = torch.as_tensor(y_pred).cpu().to(torch.int64)
    if y_true.shape != y_pred.shape:
        raise DataError(f"y_true {tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)} differ in shape")
    n = len(y_true)
    if n == 0:
        raise DataError("no rows to score")
    confusion = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    confusion = confusion.view(num_classes, num_classes).double()
    correct = confusion.diag()
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    recall = [float(correct[c] / support[c]) if support[c] > 0 else None for c in range(num_classes)]
    precision = [float(correct[c] / predicted[c]) if predicted[c] > 0 else 0.0 for c in range(num_classes)]
    f1 = []
    for c in range(num_classes):
        r, p = recall[c] or 0.0, precision[c]
        f1.append(0.0 if r + p == 0 else 2 * p * r / (p + r))
    return {**{score: float(value) for score, value in summary_scores(confusion).items()},
            "recall": recall, "precision": precision, "f1": f1, "support": [int(s) for s in support.tolist()], "n": n}
