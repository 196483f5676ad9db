"""``utility``: does a model trained on the optimised set beat the same model trained on the raw set,
on the real test split?"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset

from .._shared.classifiers import calibration_scores, classification_scores
from ._comparison import path_segment
from ._stats import Estimate
from ._downstream import (SCORES as _SCORES, MODEL_ENTRY_POINT_GROUP, DownstreamEvaluator, DownstreamModel,
                          ModelParams, downstream_models, model_options, paired_deltas, publish_model,
                          test_probabilities)

# (DownstreamModel, MODEL_ENTRY_POINT_GROUP and downstream_models live in ._downstream, shared by every
# evaluator with a ``model`` param; they stay importable from here, where plugins first found them)
__all__ = ["Utility", "DownstreamModel", "MODEL_ENTRY_POINT_GROUP", "downstream_models", "PREDICTIONS_FILE"]

#: What utility writes into its folder of the run: the test rows' labels and each seed's predictions, for
#: `Utility.compare_runs` (``setforge compare``).
PREDICTIONS_FILE = "test-predictions.npz"


class Utility(DownstreamEvaluator):
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
    the mean, with its standard deviation. ``delta/<score>`` for ``accuracy``, ``balanced_accuracy``,
    ``macro_f1`` and ``minority_recall``, and ``delta/recall/<class>``, also have (with ``repeats``
    of 2 or more) the ``level`` interval of a paired bootstrap over the test rows and the seeds
    (estimator ``paired-bootstrap``, `paired_deltas`; none where a class's single test row
    changed): the headline's verdict reads it.
    In a run it writes the test rows' labels and each seed's predictions (`PREDICTIONS_FILE`), so
    that ``setforge compare`` pairs two runs on the same test rows (`compare_runs`).
    Its model params (``model``, the training params and
    ``repeats``) are the run's downstream model: ``ablation`` trains the same (``utility`` runs
    before the other evaluators, wherever it is listed).
    """

    name = "utility"
    runs_first = True  # ablation reads its published model params
    modalities = ("image", "tabular", "audio", "text")
    testing_params = {"epochs": 5, "patience": 2}

    class Params(ModelParams):
        """The downstream model, how it is trained, and how many seeds."""

        repeats: int = Field(1, ge=1, le=100, description="train the pair with this many seeds; report mean and std")
        calibration_bins: int = Field(15, ge=1, le=1000, description="equal-width confidence bins of the expected "
                                                                     "calibration error")
        bootstrap: int = Field(1000, ge=0, le=100_000, description="rounds of the paired bootstrap (test rows and "
                                                                   "seeds) behind each delta's interval, with "
                                                                   "repeats of 2 or more; 0: none")
        level: float = Field(0.95, ge=0.5, lt=1.0, description="the coverage of the deltas' intervals")

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        self.model_kind(ectx.train.modality)  # a model that cannot take the data is named before any training
        publish_model(ectx, self.params)  # the run's downstream model: ablation trains the same
        test = ectx.test
        if test is None or len(test) == 0:
            for what in ("raw", "optimised", "delta"):
                metrics.skip(what, "there is no real test split to score on")
            return metrics
        scores: dict[str, list[dict]] = {"raw": [], "optimised": []}
        predicted: dict[str, list[torch.Tensor]] = {"raw": [], "optimised": []}
        minority = self._minority(ectx.raw_train, test)
        for repeat in range(self.params.repeats):
            for what, train in (("raw", ectx.raw_train), ("optimised", ectx.train)):
                probabilities = self._probabilities(ectx, train, repeat)
                predicted[what].append(probabilities.argmax(dim=1))
                result = classification_scores(test.y, predicted[what][-1], test.num_classes)
                result.update(calibration_scores(test.y, probabilities, self.params.calibration_bins))
                if minority:
                    result["minority_recall"] = sum(result["recall"][c] for c in minority) / len(minority)
                scores[what].append(result)
        n = len(test)
        if not minority:
            metrics.skip("raw/minority_recall", "no minority: every class has as many training rows, or the smallest "
                                                "has no rows in the test split")
        if ectx.workdir is not None:
            self._save_predictions(ectx.workdir / PREDICTIONS_FILE, test, predicted, minority)
        # (one seed leaves the seeds' noise unmeasured: an interval of the test rows' alone would look surer
        # than it is, where the headline cannot judge)
        deltas = {} if not self.params.bootstrap or self.params.repeats < 2 else paired_deltas(
            test.y, torch.stack(predicted["raw"]), torch.stack(predicted["optimised"]), test.num_classes,
            self.params.bootstrap, ectx.rng.spawn("delta").torch, self.params.level, minority)
        for score in (*_SCORES, "ece", "brier", *(("minority_recall",) if minority else ())):
            raw = torch.tensor([s[score] for s in scores["raw"]], dtype=torch.float64)
            opt = torch.tensor([s[score] for s in scores["optimised"]], dtype=torch.float64)
            better = "lower" if score in ("ece", "brier") else "higher"
            self._add(metrics, f"raw/{score}", raw, n, better)
            self._add(metrics, f"optimised/{score}", opt, n, better)
            self._add(metrics, f"delta/{score}", opt - raw, n, better, deltas.get(score))
        support = scores["raw"][0]["support"]
        for c, name in enumerate(test.classes):
            if support[c] == 0:
                metrics.skip(f"raw/recall/{path_segment(name)}", f"class {name!r} has no rows in the test split")
                continue
            raw = torch.tensor([s["recall"][c] for s in scores["raw"]], dtype=torch.float64)
            opt = torch.tensor([s["recall"][c] for s in scores["optimised"]], dtype=torch.float64)
            self._add(metrics, f"raw/recall/{path_segment(name)}", raw, support[c], "higher")
            self._add(metrics, f"optimised/recall/{path_segment(name)}", opt, support[c], "higher")
            self._add(metrics, f"delta/recall/{path_segment(name)}", opt - raw, support[c], "higher",
                      deltas.get(f"recall/{c}"))
        self._table(metrics, ectx, test, scores, minority)
        return metrics

    def _save_predictions(self, path: Path, test: Dataset, predicted: dict[str, list[torch.Tensor]],
                          minority: list[int]) -> None:
        np.savez_compressed(path, y=test.y.cpu().numpy(), classes=np.array([str(c) for c in test.classes]),
                            test=test.fingerprint(), minority=np.array(minority, dtype=np.int64),
                            raw=torch.stack(predicted["raw"]).numpy(), bootstrap=self.params.bootstrap,
                            optimised=torch.stack(predicted["optimised"]).numpy(), level=self.params.level)

    @classmethod
    def compare_runs(cls, base: Path, other: Path) -> dict[str, dict[str, Any]]:
        """``optimised/<score>``, ``optimised/recall/<class>`` and ``optimised/minority_recall`` of two
        runs paired on the same test rows and seeds: the other run's model minus the first's, with
        the interval of `paired_deltas` (the first run's ``bootstrap`` rounds and ``level``); the
        same ``delta/...`` paths too when both runs' raw models predicted alike (the same raw
        training rows and seeds), as the difference of the deltas is then the same. Nothing
        when either run lacks the predictions, their test rows differ (another split, seed or
        source), they trained another number of seeds or one seed (whose noise no pairing measures:
        the headline cannot judge such a run either), or a file is damaged (labels that are no
        class index included)."""
        keys = {"y", "classes", "test", "minority", "raw", "optimised", "bootstrap", "level"}
        try:
            with (np.load(base / PREDICTIONS_FILE, allow_pickle=False) as first,
                  np.load(other / PREDICTIONS_FILE, allow_pickle=False) as second):
                a, b = dict(first), dict(second)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
            return {}  # (a run from before the file, or a damaged one: empty, cut short, corrupt)
        if (not keys <= set(a) & set(b) or str(a["test"]) != str(b["test"]) or not np.array_equal(a["y"], b["y"])
                or a["optimised"].shape != b["optimised"].shape or not int(a["bootstrap"])
                or a["optimised"].ndim != 2 or a["optimised"].shape[0] < 2):
            return {}
        classes = [str(c) for c in a["classes"]]
        labels = (a["y"], a["raw"], a["optimised"], b["raw"], b["optimised"])
        if (a["y"].ndim != 1 or any(p.ndim != 2 or p.shape[1] != len(a["y"]) for p in labels[1:])
                or any(p.dtype.kind not in "iu" or (p.size and not 0 <= p.min() <= p.max() < len(classes))
                       for p in labels)):
            return {}  # (labels that are no class index: a damaged file)
        # (minority_recall pairs only when both runs' raw training sets had the same smallest classes)
        minority = a["minority"].tolist() if np.array_equal(a["minority"], b["minority"]) else []
        changes = paired_deltas(torch.from_numpy(a["y"]), torch.from_numpy(a["optimised"]),
                                torch.from_numpy(b["optimised"]), len(classes), int(a["bootstrap"]),
                                torch.Generator().manual_seed(0), float(a["level"]), minority)
        same_raw = np.array_equal(a["raw"], b["raw"])
        out = {}
        for key, change in changes.items():
            if change.interval is None:
                continue
            path = f"recall/{path_segment(classes[int(key.split('/')[1])])}" if key.startswith("recall/") else key
            result = {"value": change.value, "interval": list(change.interval), "estimator": change.estimator}
            out[f"optimised/{path}"] = result
            if same_raw:
                out[f"delta/{path}"] = result
        return out

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
        """The per-class table: training rows before and after, test rows, recall and F1 of both models
        (``-`` for a class without test rows)."""
        raw_counts = torch.bincount(ectx.raw_train.y.cpu(), minlength=test.num_classes).tolist()
        opt_counts = torch.bincount(ectx.train.y.cpu(), minlength=test.num_classes).tolist()
        support = scores["raw"][0]["support"]

        def mean(what: str, key: str, c: int) -> float | None:
            # A class without test rows has no recall and no F1 of its own (its F1 would be 0 for
            # any prediction; macro F1 leaves it out unless the model predicts it): shown as "-".
            values = [s[key][c] for s in scores[what]]
            return None if support[c] == 0 or any(v is None for v in values) else sum(values) / len(values)

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

    @staticmethod
    def _add(metrics: Metrics, path: str, values: torch.Tensor, n: int, better: str,
             bootstrap: Estimate | None = None) -> None:
        std = float(values.std(unbiased=True)) if len(values) > 1 else None  # (n - 1), as ablation's
        metrics.add(path, float(values.mean()), n=n, std=std, better=better,
                    estimator=None if bootstrap is None else bootstrap.estimator,
                    interval=None if bootstrap is None else bootstrap.interval)
