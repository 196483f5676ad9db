"""``utility``: does a model trained on the optimised set beat the same model trained on the raw set,
on the real test split?"""

from __future__ import annotations

import torch
from pydantic import Field

from setforge.components import Evaluator
from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset

from ._classifiers import classification_scores
from ._downstream import SCORES as _SCORES, ModelParams, model_options, test_probabilities

__all__ = ["Utility"]


def _key(name: str) -> str:
    return str(name).replace("/", "_")


class Utility(Evaluator):
    """The same downstream model trained on the raw and on the optimised training set, scored on the real test split.

    Both models share everything but their training rows: architecture, initial weights, batch
    order and early stopping on the real val split (fixed epochs when there is none). Seeds come
    from the run's shared evaluator randomness, so the raw model is the one ``ablation`` and
    ``cas`` train too, and it trains once per run. Paths
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

    class Params(ModelParams):
        """The downstream model, how it is trained, and how many seeds."""

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
            for what, train in (("raw", ectx.raw_train), ("optimised", ectx.train)):
                predictions = self._predictions(ectx, train, repeat)
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

    def _predictions(self, ectx: EvalContext, train: Dataset, repeat: int) -> torch.Tensor:
        # The shared downstream model: trained once per run for each training set and seed, so
        # the raw baseline is the one `ablation` and `cas` see too.
        return test_probabilities(ectx, model_options(self.params), train, repeat).argmax(dim=1)

    @staticmethod
    def _add(metrics: Metrics, path: str, values: torch.Tensor, n: int) -> None:
        std = float(values.std(unbiased=False)) if len(values) > 1 else None
        metrics.add(path, float(values.mean()), n=n, std=std)
