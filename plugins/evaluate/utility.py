"""``utility``: does a model trained on the optimised set beat the same model trained on the raw set,
on the real test split?"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Protocol

import torch
from pydantic import Field, field_validator

from setforge.components import Evaluator
from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset
from setforge.errors import DataError, PluginError
from setforge.rng import Rng

from .._shared.classifiers import DOWNSTREAM_KINDS as CLASSIFIER_KINDS, calibration_scores, classification_scores
from ._comparison import path_segment
from ._downstream import (SCORES as _SCORES, BUILTIN_MODALITIES, ModelParams, model_options, model_problems,
                          test_probabilities)

__all__ = ["Utility", "DownstreamModel", "MODEL_ENTRY_POINT_GROUP", "downstream_models"]

#: The entry-point group where a distribution contributes downstream models for ``utility``.
MODEL_ENTRY_POINT_GROUP = "setforge.models"


class DownstreamModel(Protocol):
    """What a contributed ``utility`` model provides (a class, found by its entry point's name).

    ``modalities``: the data it takes. ``__init__(options)`` gets utility's params as a dict
    (``epochs``, ``lr``, ... — use what applies); ``fit(train, val, rng, device)`` trains on the
    `Dataset` ``train`` (``val`` may be None), drawing every random number from the `Rng`;
    ``predict(ds)`` returns ``(N,)`` int64 labels for a `Dataset` of the same classes.
    """

    modalities: tuple[str, ...]

    def __init__(self, options: dict[str, Any]) -> None: ...

    def fit(self, train: Dataset, val: Dataset | None, rng: Rng, device: torch.device) -> None: ...

    def predict(self, ds: Dataset) -> torch.Tensor: ...


def downstream_models() -> dict[str, importlib.metadata.EntryPoint]:
    """The downstream models installed distributions contribute, by name (not loaded)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=MODEL_ENTRY_POINT_GROUP)}


def _load_model(name: str) -> type:
    entry_point = downstream_models()[name]
    dist = getattr(entry_point, "dist", None)
    where = f"{getattr(dist, 'name', 'unknown')} {getattr(dist, 'version', '')}".strip()
    try:
        model = entry_point.load()
    except Exception as error:  # noqa: BLE001 - a broken contributed model is named with its distribution
        raise PluginError(f"evaluate 'utility': model '{name}' ({where}) failed to load: {error}") from error
    if not isinstance(getattr(model, "modalities", None), tuple):
        raise PluginError(f"evaluate 'utility': model '{name}' ({where}) has no modalities tuple")
    return model



class Utility(Evaluator):
    """The same downstream model trained on the raw and on the optimised training set, scored on the real test split.

    Both models share everything but their training rows: architecture, initial weights, batch
    order and early stopping on the real val split (fixed epochs when there is none). Seeds come
    from the run's shared evaluator randomness, so the raw model is the one ``ablation`` and
    ``cas`` train too, and it trains once per run. Paths
    (under ``utility/``): ``raw/<score>``, ``optimised/<score>`` and ``delta/<score>`` (optimised
    minus raw) for ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``ece`` and ``brier`` (calibration,
    lower is better) and ``minority_recall`` (the smallest training classes' mean test recall, when
    they have test rows); ``raw/recall/<class>``,
    ``optimised/recall/<class>`` and ``delta/recall/<class>`` per class. ``n`` is the number of
    test rows. With ``repeats > 1`` the pair is trained with that many seeds and each number is
    the mean, with its standard deviation.
    """

    name = "utility"
    modalities = ("image", "tabular", "audio", "text")
    testing_params = {"epochs": 5, "patience": 2}

    @classmethod
    def check_params(cls, params, modality):
        return model_problems(params.model, modality)

    class Params(ModelParams):
        """The downstream model, how it is trained, and how many seeds."""

        model: str = Field("logistic-regression", description="the downstream classifier: logistic-regression, "
                           "mlp, cnn (images), gradient-boosting (tabular rows), or a model an installed plugin contributes (entry-point group "
                           "setforge.models)")
        repeats: int = Field(1, ge=1, le=100, description="train the pair with this many seeds; report mean and std")
        calibration_bins: int = Field(15, ge=1, le=1000, description="equal-width confidence bins of the expected "
                                                                     "calibration error")

        @field_validator("model")
        @classmethod
        def _known_model(cls, name: str) -> str:
            if name not in CLASSIFIER_KINDS and name not in downstream_models():
                choices = ", ".join([*CLASSIFIER_KINDS, *sorted(downstream_models())])
                raise ValueError(f"unknown model {name!r}; choose one of {choices}")
            return name

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        self._check_model_modality(ectx.train.modality)
        test = ectx.test
        if test is None or len(test) == 0:
            for what in ("raw", "optimised", "delta"):
                metrics.skip(what, "there is no real test split to score on")
            return metrics
        scores: dict[str, list[dict]] = {"raw": [], "optimised": []}
        minority = self._minority(ectx.raw_train, test)
        for repeat in range(self.params.repeats):
            for what, train in (("raw", ectx.raw_train), ("optimised", ectx.train)):
                probabilities = self._probabilities(ectx, train, repeat)
                result = classification_scores(test.y, probabilities.argmax(dim=1), test.num_classes)
                result.update(calibration_scores(test.y, probabilities, self.params.calibration_bins))
                if minority:
                    result["minority_recall"] = sum(result["recall"][c] for c in minority) / len(minority)
                scores[what].append(result)
        n = len(test)
        if not minority:
            metrics.skip("raw/minority_recall", "no minority: every class has as many training rows, or the smallest "
                                                "has no rows in the test split")
        for score in (*_SCORES, "ece", "brier", *(("minority_recall",) if minority else ())):
            raw = torch.tensor([s[score] for s in scores["raw"]], dtype=torch.float64)
            opt = torch.tensor([s[score] for s in scores["optimised"]], dtype=torch.float64)
            better = "lower" if score in ("ece", "brier") else "higher"
            self._add(metrics, f"raw/{score}", raw, n, better)
            self._add(metrics, f"optimised/{score}", opt, n, better)
            self._add(metrics, f"delta/{score}", opt - raw, n, better)
        support = scores["raw"][0]["support"]
        for c, name in enumerate(test.classes):
            if support[c] == 0:
                metrics.skip(f"raw/recall/{path_segment(name)}", f"class {name!r} has no rows in the test split")
                continue
            raw = torch.tensor([s["recall"][c] for s in scores["raw"]], dtype=torch.float64)
            opt = torch.tensor([s["recall"][c] for s in scores["optimised"]], dtype=torch.float64)
            self._add(metrics, f"raw/recall/{path_segment(name)}", raw, support[c], "higher")
            self._add(metrics, f"optimised/recall/{path_segment(name)}", opt, support[c], "higher")
            self._add(metrics, f"delta/recall/{path_segment(name)}", opt - raw, support[c], "higher")
        self._table(metrics, ectx, test, scores, minority)
        return metrics

    def _probabilities(self, ectx: EvalContext, train: Dataset, repeat: int) -> torch.Tensor:
        # The shared downstream model: trained once per run for each training set and seed, so
        # the raw baseline is the one `ablation` and `cas` see too.
        return test_probabilities(ectx, model_options(self.params), train, repeat)

    @staticmethod
    def _minority(raw_train: Dataset, test: Dataset) -> list[int]:
        """The classes with the fewest real rows in the raw training split (ties: all of them) that
        have test rows; their mean test recall is ``minority_recall``. None when every class has
        as many rows: balanced data has no minority."""
        counts = torch.bincount(raw_train.y.cpu(), minlength=raw_train.num_classes)
        present = counts > 0
        if not bool(present.any()) or int(counts[present].min()) == int(counts[present].max()):
            return []
        fewest = int(counts[present].min())
        in_test = torch.bincount(test.y.cpu(), minlength=test.num_classes)
        return [c for c in range(len(counts)) if counts[c] == fewest and in_test[c] > 0]

    @staticmethod
    def _table(metrics: Metrics, ectx: EvalContext, test: Dataset, scores: dict[str, list[dict]],
               minority: list[int]) -> None:
        """The per-class table: training rows before and after, test rows, recall and F1 of both models."""
        raw_counts = torch.bincount(ectx.raw_train.y.cpu(), minlength=test.num_classes).tolist()
        opt_counts = torch.bincount(ectx.train.y.cpu(), minlength=test.num_classes).tolist()
        support = scores["raw"][0]["support"]

        def mean(what: str, key: str, c: int) -> float | None:
            values = [s[key][c] for s in scores[what]]
            return None if any(v is None for v in values) else sum(values) / len(values)

        rows = []
        for c, name in enumerate(test.classes):
            recall_raw, recall_opt = mean("raw", "recall", c), mean("optimised", "recall", c)
            cells = [f"{v:.4f}" if v is not None else "-" for v in
                     (recall_raw, recall_opt, None if recall_raw is None else recall_opt - recall_raw,
                      mean("raw", "f1", c), mean("optimised", "f1", c))]
            rows.append([name + (" (minority)" if c in minority else ""), raw_counts[c], opt_counts[c], support[c],
                         *cells])
        metrics.table("per_class", ["class", "train raw", "train optimised", "test rows", "recall raw",
                                    "recall optimised", "recall change", "f1 raw", "f1 optimised"], rows)

    def _check_model_modality(self, modality: str) -> None:
        name = self.params.model
        takes = lambda n: BUILTIN_MODALITIES[n] if n in BUILTIN_MODALITIES else _load_model(n).modalities  # noqa: E731
        accepted = takes(name)
        if modality not in accepted:
            others = [n for n in [*CLASSIFIER_KINDS, *sorted(downstream_models())] if modality in takes(n)]
            hint = f"choose model: {' or '.join(others)}" if others else \
                "install a plugin that contributes a model for it (such as setforge-text for text)"
            raise DataError(f"evaluate 'utility': model '{name}' takes {list(accepted)} data, not {modality}; {hint}")

    @staticmethod
    def _add(metrics: Metrics, path: str, values: torch.Tensor, n: int, better: str) -> None:
        std = float(values.std(unbiased=True)) if len(values) > 1 else None  # (n - 1), as ablation's
        metrics.add(path, float(values.mean()), n=n, std=std, better=better)
