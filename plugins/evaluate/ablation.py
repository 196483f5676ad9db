"""``ablation``: which step earned the gain? The downstream model after each step of the pipeline,
cumulatively, and with each step left out, scored on the real test split."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field

from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset

from .._shared.classifiers import classification_scores
from ._comparison import path_segment
from ._downstream import (SCORES, SHARED_MODEL_PARAMS, DownstreamEvaluator, ModelParams, model_options,
                          published_model, test_probabilities)

__all__ = ["Ablation", "verdict"]

#: Pipelines up to this many steps get the leave-one-step-out runs (each re-runs later steps).
MAX_LEAVE_ONE_OUT_STEPS = 6


def verdict(deltas: torch.Tensor, noise: float = 1.0) -> str:
    """``helped``, ``hurt`` or ``within noise`` for paired score differences (one per seed): the
    mean difference against `noise` times their standard deviation (n - 1 in the denominator)."""
    deltas = deltas.double()
    mean = float(deltas.mean())
    std = float(deltas.std(unbiased=True)) if len(deltas) > 1 else math.inf
    tie = 1e-12 * max(1.0, abs(mean))  # (a mean equal to its bound is within noise, whatever the rounding)
    if mean > noise * std + tie:
        return "helped"
    if mean < -noise * std - tie:
        return "hurt"
    return "within noise"



def _pm(values: torch.Tensor, signed: bool = False) -> str:
    mean, std = float(values.mean()), float(values.std(unbiased=True))
    return f"{mean:+.4f} ± {std:.4f}" if signed else f"{mean:.4f} ± {std:.4f}"


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

    The verdict per step (table ``steps``, in the report and the summary) compares the mean of
    the paired differences with ``noise`` times their standard deviation (n - 1): ``helped``,
    ``hurt`` or ``within noise``. The spread covers the downstream model's seeds; each step ran
    once, with the run's seed.
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
        noise: float = Field(1.0, gt=0.0, le=100.0, description="a step helped (hurt) when its mean paired gain "
                                                                "is above (below minus) noise x its std")
        leave_one_out: bool = Field(True, description="also score the pipeline with each step left out "
                                                      f"(pipelines of up to {MAX_LEAVE_ONE_OUT_STEPS} steps)")

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
        # scores[k]: {score: (repeats,) tensor} after the first k steps
        cumulative = [self._scores(ectx, options, train) for train in (ectx.raw_train, *(s.output for s in steps))]
        n = len(test)
        for k, scores in enumerate(cumulative):
            for score in SCORES:
                self._add(metrics, f"cumulative/{k}/{score}", scores[score], n)
        without: list[dict[str, torch.Tensor] | None] = [None] * len(steps)
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
                    data = cumulative[i] if rest == list(range(i)) else self._scores(ectx, options, ectx.replay(rest))
                    without[i] = data
        rows = []
        chosen = params.score
        for i, label in enumerate(labels):
            gain = {score: cumulative[i + 1][score] - cumulative[i][score] for score in SCORES}
            for score in SCORES:
                self._add(metrics, f"step/{label}/gain/{score}", gain[score], n)
            row = [label, _pm(cumulative[i + 1][chosen]), _pm(gain[chosen], signed=True),
                   verdict(gain[chosen], params.noise)]
            if without[i] is not None:
                loo = {score: cumulative[-1][score] - without[i][score] for score in SCORES}
                for score in SCORES:
                    self._add(metrics, f"step/{label}/without/{score}", without[i][score], n)
                    self._add(metrics, f"step/{label}/loo/{score}", loo[score], n)
                row += [_pm(without[i][chosen]), _pm(loo[chosen], signed=True), verdict(loo[chosen], params.noise)]
            else:
                row += ["", "", ""]
            rows.append(row)
        if rows:
            header = ["step", f"{chosen} after it", "gain when added", "verdict", "without it",
                      "final minus without", "verdict (left out)"]
            rows.insert(0, ["raw", _pm(cumulative[0][chosen]), "", "", "", "", ""])
            metrics.table("steps", header, rows)
        return metrics

    def _scores(self, ectx: EvalContext, options: dict[str, Any], train: Dataset) -> dict[str, torch.Tensor]:
        """Each score of the shared downstream model (`options`) trained on `train`, one value per seed."""
        test = ectx.test
        per_seed: list[dict[str, Any]] = []
        for repeat in range(self.params.repeats):
            predicted = test_probabilities(ectx, options, train, repeat).argmax(dim=1)
            per_seed.append(classification_scores(test.y, predicted, test.num_classes))
        return {score: torch.tensor([s[score] for s in per_seed], dtype=torch.float64) for score in SCORES}

    @staticmethod
    def _add(metrics: Metrics, path: str, values: torch.Tensor, n: int) -> None:
        metrics.add(path, float(values.mean()), n=n, std=float(values.std(unbiased=True)), better="higher")
