"""``utility``: does a model trained on the optimised set beat the same model trained on the raw set,
on the real test split?"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Cache, EvalContext, Metrics
from setforge.dataset import Dataset

from ._classifiers import classification_scores, train_classifier

__all__ = ["Utility"]

_SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


def _key(name: str) -> str:
    return str(name).replace("/", "_")


class Utility(Evaluator):
    """The same downstream model trained on the raw and on the optimised training set, scored on the real test split.

    Both models share everything but their training rows: architecture, initial weights, batch
    order and early stopping on the real val split (fixed epochs when there is none). Paths
    (under ``utility/``): ``raw/<score>``, ``optimised/<score>`` and ``delta/<score>`` (optimised
    minus raw) for ``accuracy``, ``balanced_accuracy`` and ``macro_f1``; ``raw/recall/<class>``,
    ``optimised/recall/<class>`` and ``delta/recall/<class>`` per class. ``n`` is the number of
    test rows. With ``repeats > 1`` the pair is trained with that many seeds and each number is
    the mean, with its standard deviation.
    """

    name = "utility"
    modalities = ("image", "tabular", "audio")
    testing_params = {"epochs": 5, "patience": 2}

    @classmethod
    def check_params(cls, params, modality):
        if params.model == "cnn" and modality is not None and modality != "image":
            return [("model", f"'cnn' needs image data, and the source gives {modality} data; use 'mlp' or "
                              f"'logistic-regression'")]
        return []

    class Params(Evaluator.Params):
        """The downstream model and how it is trained."""

        model: Literal["logistic-regression", "mlp", "cnn"] = Field(
            "logistic-regression", description="the downstream classifier (cnn needs images)")
        epochs: int = Field(100, ge=1, le=10_000, description="most training epochs")
        patience: int = Field(10, ge=1, le=1000, description="epochs without a lower val loss before stopping")
        batch_size: int = Field(128, ge=1, le=65_536, description="rows per training batch")
        lr: float | None = Field(None, gt=0.0, le=10.0, description="Adam learning rate (default: 1e-2 for "
                                                                     "logistic-regression, 1e-3 mlp, 3e-3 cnn)")
        weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="Adam weight decay")
        hidden: int = Field(128, ge=1, le=65_536, description="hidden units (mlp, cnn)")
        repeats: int = Field(1, ge=1, le=100, description="train the pair with this many seeds; report mean and std")

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        test = ectx.test
        if test is None or len(test) == 0:
            for what in ("raw", "optimised", "delta"):
                metrics.skip(what, "there is no real test split to score on")
            return metrics
        scores: dict[str, list[dict]] = {"raw": [], "optimised": []}
        for repeat in range(self.params.repeats):
            rng = ectx.rng.spawn(repeat)
            for what, train in (("raw", ectx.raw_train), ("optimised", ectx.train)):
                predictions = self._predictions(ectx, train, test, rng)
                scores[what].append(classification_scores(test.y, predictions, test.num_classes))
        n = len(test)
        for score in _SCORES:
            raw = torch.tensor([s[score] for s in scores["raw"]], dtype=torch.float64)
            opt = torch.tensor([s[score] for s in scores["optimised"]], dtype=torch.float64)
            self._add(metrics, f"raw/{score}", raw, n)
            self._add(metrics, f"optimised/{score}", opt, n)
            self._add(metrics, f"delta/{score}", opt - raw, n)
        support = scores["raw"][0]["support"]
        for c, name in enumerate(test.classes):
            if support[c] == 0:
                metrics.skip(f"raw/recall/{_key(name)}", f"class {name!r} has no rows in the test split")
                continue
            raw = torch.tensor([s["recall"][c] for s in scores["raw"]], dtype=torch.float64)
            opt = torch.tensor([s["recall"][c] for s in scores["optimised"]], dtype=torch.float64)
            self._add(metrics, f"raw/recall/{_key(name)}", raw, support[c])
            self._add(metrics, f"optimised/recall/{_key(name)}", opt, support[c])
            self._add(metrics, f"delta/recall/{_key(name)}", opt - raw, support[c])
        return metrics

    def _predictions(self, ectx: EvalContext, train: Dataset, test: Dataset, rng) -> torch.Tensor:
        params = self.params
        val = ectx.val if ectx.val is not None and len(ectx.val) else None
        # The trained model depends only on its data, params and seed: cached by content, so a
        # resumed run (and a raw baseline shared by several evaluators) trains it once.
        key = Cache.key("utility", train.fingerprint(), None if val is None else val.fingerprint(), test.fingerprint(),
                        params.model_dump_json(exclude={"repeats"}), rng.seed, rng.key, str(ectx.device))

        def fit() -> torch.Tensor:
            model = train_classifier(params.model, train, val, rng, ectx.device, epochs=params.epochs,
                                     patience=params.patience, batch_size=params.batch_size, lr=params.lr,
                                     weight_decay=params.weight_decay, hidden=params.hidden)
            return model.predict(test.x.to(ectx.device)).cpu()

        return ectx.cache.get_or_compute(key, fit)

    @staticmethod
    def _add(metrics: Metrics, path: str, values: torch.Tensor, n: int) -> None:
        std = float(values.std(unbiased=False)) if len(values) > 1 else None
        metrics.add(path, float(values.mean()), n=n, std=std)
