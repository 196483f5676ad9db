"""``ablation``: which step earned the gain? The downstream model after each step of the pipeline,
cumulatively, and with each step left out, scored on the real test split."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from setforge.context import EvalContext, Metrics, interval_verdict
from setforge.dataset import Dataset

from .._shared.classifiers import classification_scores
from ._comparison import path_segment
from ._downstream import (SCORES, SHARED_MODEL_PARAMS, DownstreamEvaluator, ModelParams, model_options,
                          paired_deltas, published_model, test_probabilities)
from ._stats import Estimate

__all__ = ["Ablation", "verdict"]

#: Pipelines up to this many steps get the leave-one-step-out runs (each re-runs later steps).
MAX_LEAVE_ONE_OUT_STEPS = 6


def verdict(change: Estimate) -> str:
    """``helped`` or ``hurt`` when a score change's interval (`paired_deltas`: over the test rows
    and the seeds) lies above or below 0, else ``within noise`` (also without an interval)."""
    return "within noise" if change.interval is None else interval_verdict(change.interval, "helped", "hurt")


def _pm(values: torch.Tensor) -> str:
    return f"{float(values.mean()):.4f} ± {float(values.std(unbiased=True)):.4f}"


def _change(change: Estimate) -> str:
    if change.interval is None:
        return f"{change.value:+.4f}"
    return f"{change.value:+.4f} ({change.interval[0]:+.4f} to {change.interval[1]:+.4f})"


class Ablation(DownstreamEvaluator):
    """The downstream model trained after each pipeline step (raw, +step 0, +steps 0-1, ...) and with each step left out, with a verdict per step.

    Every training set is scored by the same model (``utility``'s: architecture, seeds, early
    stopping on the real val split) on the real test split, ``repeats`` seeds each; the seeds are
    the run's shared ones, so the raw baseline is ``utility``'s and trains once per run. With a
    ``utility`` in ``evaluate`` (which runs first, wherever it is listed), every model param (``model``, ``epochs``,
    ``patience``, ``batch_size``, ``lr``, ``weight_decay``, ``hidden``, and ``repeats`` when it is 2
    or more) that its own params do not set is ``utility``'s, so ``cumulative/<last>`` is
    ``utility/optimised``; without one, its own defaults. ``report.json`` records the params it
    trained with. Paths
    (under ``ablation/``; ``<s>`` is ``<position>-<component>``, ``<score>`` one of ``accuracy``,
    ``balanced_accuracy``, ``macro_f1``):

    - ``cumulative/<k>/<score>``: after the first ``k`` steps (``k = 0`` is the raw set), mean and
      standard deviation over the seeds;
    - ``step/<s>/gain/<score>``: what adding the step did (after it minus before it, paired by seed);
    - ``step/<s>/without/<score>`` and ``step/<s>/loo/<score>``: the pipeline with that step left
      out (every other step re-run through the host's ``EvalContext.replay``, each with its own
      seed), and the full pipeline minus that (what the step is worth in the final pipeline), for
      pipelines of up to 6 steps.

    Each ``gain`` and ``loo`` also has the ``level`` interval of a paired bootstrap over the test
    rows and the seeds (`paired_deltas`). The verdict per step (table ``steps``, in the report and
    the summary) reads it: ``helped`` when the interval lies above 0, ``hurt`` below, else
    ``within noise``. The interval covers the test split's rows and the downstream model's seeds;
    each step ran once, with the run's seed.
    """

    name = "ablation"
    modalities = ("image", "tabular", "audio")
    testing_params = {"epochs": 3, "patience": 2, "repeats": 2}

    class Params(ModelParams):
        """The downstream model, the seeds, and what the verdict is judged on (model params left unset
        are those of the run's ``utility``)."""

        repeats: int = Field(3, ge=2, le=100, description="seeds per training set (a verdict needs a spread); "
                                                          "unset: utility's when 2 or more")
        score: Literal["accuracy", "balanced_accuracy", "macro_f1"] = Field(
            "balanced_accuracy", description="the score the verdicts are judged on")
        bootstrap: int = Field(1000, ge=100, le=100_000, description="rounds of the paired bootstrap (test rows and "
                                                                     "seeds) behind each gain's interval")
        level: float = Field(0.95, ge=0.5, lt=1.0, description="a step helped (hurt) when its gain's interval of "
                                                               "this coverage lies above (below) 0")
        leave_one_out: bool = Field(True, description="also score the pipeline with each step left out "
                                                      f"(pipelines of up to {MAX_LEAVE_ONE_OUT_STEPS} steps)")

        @model_validator(mode="before")
        @classmethod
        def _noise_is_gone(cls, data: Any) -> Any:
            # (a run file written for the seeds'-std rule is told what replaced its key, not just "unknown key")
            if isinstance(data, dict) and "noise" in data:
                raise ValueError("`noise` (a multiple of the seeds' std) is gone: a step's verdict now reads the "
                                 "interval of a paired bootstrap over the test rows and seeds; set `level` (the "
                                 "interval's coverage, default 0.95) instead")
            return data

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._given = self.params  # the run file's; `_evaluate` fills what they leave unset from utility's

    def _model_params(self, ectx: EvalContext) -> "Ablation.Params":
        """The params this evaluation trains with: the run file's, and for every model param it does
        not set, the published ``utility`` model's (its ``repeats`` only when a verdict can use it)."""
        given, utility = self._given, published_model(ectx)
        if utility is None:
            return given
        taken = {key: getattr(utility, key) for key in SHARED_MODEL_PARAMS
                 if key not in given.model_fields_set and hasattr(utility, key)}
        if taken.get("repeats", 2) < 2:  # (one seed gives no spread: ablation keeps its own)
            del taken["repeats"]
        return given.model_copy(update=taken)

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        self.params = self._model_params(ectx)  # (what report.json records: the params it trained with)
        test = ectx.test
        if test is None or len(test) == 0:
            metrics.skip("cumulative", "there is no real test split to score on")
            return metrics
        steps = list(ectx.steps)
        if not steps:
            metrics.skip("step", "the pipeline has no steps to ablate")
        params = self.params
        options = model_options(params, self.model_kind(ectx.train.modality))
        labels = [f"{s.index}-{path_segment(s.name)}" for s in steps]
        # cumulative[k]: the model's test predictions (repeats, N_test) after the first k steps
        cumulative = [self._predictions(ectx, options, train) for train in (ectx.raw_train, *(s.output for s in steps))]
        n, column = len(test), SCORES.index(params.score)
        scores = [self._scores(test, predicted) for predicted in cumulative]  # (repeats, len(SCORES)) each
        for k, values in enumerate(scores):
            self._add(metrics, f"cumulative/{k}", values, n)
        without: list[torch.Tensor | None] = [None] * len(steps)
        if steps and params.leave_one_out:
            if len(steps) > MAX_LEAVE_ONE_OUT_STEPS:
                metrics.skip("step", f"leave-one-step-out runs for pipelines of up to {MAX_LEAVE_ONE_OUT_STEPS} "
                                     f"steps; this one has {len(steps)}")
            elif ectx.replay is None and len(steps) > 1:
                metrics.skip("step", "leave-one-step-out needs the host's replay (a pipeline run); only the "
                                     "cumulative numbers were measured")
            else:
                for i in range(len(steps)):
                    rest = [j for j in range(len(steps)) if j != i]
                    # Leaving out the last step is the run's own prefix; only other cases re-run steps.
                    without[i] = (cumulative[i] if rest == list(range(i))
                                  else self._predictions(ectx, options, ectx.replay(rest)))
        rows = []

        def change(path: str, before: torch.Tensor, after: torch.Tensor, differences: torch.Tensor) -> Estimate:
            # after minus before, paired by seed and test row: each score's mean and seeds' std, with its
            # interval; the judged score's change
            changes = paired_deltas(test.y, before, after, test.num_classes, params.bootstrap,
                                    ectx.rng.spawn(path).torch, params.level)
            self._add(metrics, path, differences, n, changes)
            return changes[params.score]

        for i, label in enumerate(labels):
            gain = change(f"step/{label}/gain", cumulative[i], cumulative[i + 1], scores[i + 1] - scores[i])
            row = [label, _pm(scores[i + 1][:, column]), _change(gain), verdict(gain)]
            if without[i] is not None:
                left_out = self._scores(test, without[i])
                self._add(metrics, f"step/{label}/without", left_out, n)
                loo = change(f"step/{label}/loo", without[i], cumulative[-1], scores[-1] - left_out)
                row += [_pm(left_out[:, column]), _change(loo), verdict(loo)]
            else:
                row += ["", "", ""]
            rows.append(row)
        if rows:
            header = ["step", f"{params.score} after it", "gain when added", "verdict", "without it",
                      "final minus without", "verdict (left out)"]
            rows.insert(0, ["raw", _pm(scores[0][:, column]), "", "", "", "", ""])
            metrics.table("steps", header, rows)
        return metrics

    def _predictions(self, ectx: EvalContext, options: dict[str, Any], train: Dataset) -> torch.Tensor:
        """The shared downstream model's (`options`) labels for the test rows, trained on `train`:
        ``(repeats, N_test)``, one row per seed."""
        return torch.stack([test_probabilities(ectx, options, train, repeat).argmax(dim=1)
                            for repeat in range(self.params.repeats)])

    @staticmethod
    def _scores(test: Dataset, predicted: torch.Tensor) -> torch.Tensor:
        """``(repeats, len(SCORES))``: each seed's scores of `predicted` on the test rows."""
        return torch.tensor([[classification_scores(test.y, labels, test.num_classes)[score] for score in SCORES]
                             for labels in predicted], dtype=torch.float64)

    @staticmethod
    def _add(metrics: Metrics, path: str, values: torch.Tensor, n: int,
             intervals: dict[str, Estimate] | None = None) -> None:
        """``<path>/<score>``: the mean over seeds of each column of `values`, with the seeds' std and,
        for a change, its bootstrap interval."""
        for j, score in enumerate(SCORES):
            bootstrap = None if intervals is None else intervals[score]
            metrics.add(f"{path}/{score}", float(values[:, j].mean()), n=n, std=float(values[:, j].std(unbiased=True)),
                        better="higher", estimator=None if bootstrap is None else bootstrap.estimator,
                        interval=None if bootstrap is None else bootstrap.interval)
