"""The headline of a run: the downstream score of the raw training set against the optimised one on
the real test split (``utility``), whether the difference is beyond its spread, and which step
earned it (``ablation``, when it ran), naming the model and seeds behind that step's gain when they
are not the headline's (an ablation listed before ``utility``, or with its own params). Read from
``report.json`` alone, so the printed summary, ``report.html`` and ``setforge compare`` say the
same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..context import interval_verdict

__all__ = ["Headline", "headline", "measure_value", "measure_interval", "SCORE_PREFERENCE"]

# The score a headline quotes: the first of these that `utility` reported.
SCORE_PREFERENCE = ("macro_f1", "balanced_accuracy", "accuracy")


def measure_value(measure: Any) -> float | None:
    """The value of a stored measure (``{"value", "n", "std"}``), None when absent or not a number;
    a count stays an int, so that it prints whole (0 rows, not 0.0000)."""
    if not isinstance(measure, Mapping):
        return None
    value = measure.get("value")
    if isinstance(value, str):  # non-finite numbers are stored as strings
        try:
            return float(value)
        except ValueError:
            return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None if value is None else float(value)


def _std(measure: Any) -> float | None:
    if not isinstance(measure, Mapping) or measure.get("std") is None:
        return None
    std = float(measure["std"])
    return std if math.isfinite(std) else None


def measure_interval(measure: Any) -> tuple[float, float] | None:
    """A stored measure's uncertainty interval ``(low, high)``, None when absent or not finite."""
    interval = measure.get("interval") if isinstance(measure, Mapping) else None
    try:
        low, high = (float(v) for v in interval)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


@dataclass(frozen=True)
class Headline:
    """Baseline against optimised on the real test split, in one score."""

    evaluator: str
    score: str
    raw: float
    optimised: float
    n: int | None
    raw_std: float | None
    optimised_std: float | None
    delta_std: float | None
    repeats: int
    delta_interval: tuple[float, float] | None = None  # e.g. utility's paired bootstrap over test rows and seeds
    level: float | None = None  # that interval's coverage
    delta_estimator: str | None = None  # what made the change's interval (``paired-bootstrap``), where recorded
    step: str | None = None  # the step that earned (or cost) the most, by ablation
    step_gain: float | None = None
    step_verdict: str | None = None
    step_model: str | None = None  # the model behind the step's gain, when it is not the headline's
    minority: "Headline | None" = None  # the smallest classes' recall, judged alike, when recorded

    @property
    def delta(self) -> float:
        return self.optimised - self.raw

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` when the change's interval (`delta_interval`: over the test rows
        and the seeds) lies above or below 0, else ``within noise``; for a report without an
        interval, when the change is beyond one standard deviation of the paired differences (or
        of either side when those are not recorded). ``cannot judge (...)`` with one seed (the
        seeds' noise is not measured), when a score is not a number, and when the paired
        bootstrap recorded the change without an interval (a class's one test row changed: no
        redraw of the test rows can weigh it; or fewer than 2 rounds); ``unchanged`` when the two
        are equal."""
        spread = self.delta_std if self.delta_std is not None else max(
            [s for s in (self.raw_std, self.optimised_std) if s is not None], default=None)
        if math.isnan(self.delta):
            return "cannot judge (a score is not a number)"
        if self.delta == 0:
            return "unchanged"
        if self.repeats < 2 or (spread is None and self.delta_interval is None):
            return f"cannot judge ({'one seed' if self.repeats < 2 else 'no std recorded'}: no spread to judge by)"
        if self.delta_interval is None and self.delta_estimator == "paired-bootstrap":
            return ("cannot judge (the paired bootstrap gave the change no interval: a class's single test row "
                    "changed, which no redraw of the test rows can weigh, or `bootstrap` is below 2)")
        if self.delta_interval is not None:
            return interval_verdict(self.delta_interval, "better", "worse")
        assert spread is not None
        if abs(self.delta) <= spread + 1e-12 * max(1.0, abs(self.delta)):  # (a tie is within noise, whatever the rounding)
            return "within noise"
        return "better" if self.delta > 0 else "worse"

    @property
    def worse(self) -> bool:
        return self.verdict.startswith("worse")

    @property
    def seeds_unmeasured(self) -> bool:
        """Whether the verdict cannot judge for want of seeds (one seed, or no std recorded)."""
        return self.verdict.startswith(("cannot judge (one seed", "cannot judge (no std"))

    def _interval_text(self) -> str:
        if self.delta_interval is None:
            return ""
        level = "" if self.level is None else f"{100 * self.level:g}% "
        return f", {level}interval {self.delta_interval[0]:+.4f} to {self.delta_interval[1]:+.4f}"

    def _pm(self, value: float, std: float | None) -> str:
        return f"{value:.4f}" + ("" if std is None else f" ± {std:.4f}")

    def text(self) -> str:
        """One line, e.g. ``macro f1 on the real test split (520 rows, 3 seeds): raw 0.9135 ± 0.0033
        -> optimised 0.9264 ± 0.0025 (+0.0129, 95% interval -0.0064 to +0.0331): within noise;
        minority recall +0.1667 (95% interval +0.0704 to +0.2885): better; step 1-random-over
        earned +0.0119 macro f1 (within noise)``."""
        rows = f"{self.n} rows, " if self.n else ""
        seeds = f"{self.repeats} seed{'s' if self.repeats != 1 else ''}"
        line = (f"{self.score.replace('_', ' ')} on the real test split ({rows}{seeds}): "
                f"raw {self._pm(self.raw, self.raw_std)} -> optimised {self._pm(self.optimised, self.optimised_std)} "
                f"({self.delta:+.4f}{self._interval_text()}): {self.verdict}")
        if self.worse:
            line += " — the optimised training set is WORSE than the raw one"
        elif self.seeds_unmeasured:
            line += f" — set {self.evaluator}'s `repeats` to 3 or more to tell a change from noise"
        if self.minority is not None and not math.isnan(self.minority.delta):
            # (what rebalancing is for, beside the overall score, which a small class hardly moves)
            interval = self.minority._interval_text().removeprefix(", ")
            line += f"; minority recall {self.minority.delta:+.4f}" + (f" ({interval})" if interval else "") + (
                "" if self.minority.seeds_unmeasured else f": {self.minority.verdict}")
        if self.step is not None and self.step_gain is not None:
            earned = "earned" if self.step_gain > 0 else "cost" if self.step_gain < 0 else "changed"
            # (in the headline's score, which may not be the one the ablation table judges by)
            line += f"; step {self.step} {earned} {self.step_gain:+.4f} {self.score.replace('_', ' ')}"
            notes = [n for n in (self.step_verdict, self.step_model) if n]
            if notes:
                line += f" ({'; '.join(notes)})"
        return line


# The params that make a downstream model (ModelParams' and ``repeats``), in the order a note names them.
_MODEL_PARAMS = ("model", "repeats", "epochs", "patience", "batch_size", "lr", "weight_decay", "hidden")


def _model_note(report: Mapping[str, Any], evaluator: str, ablation: str) -> str | None:
    """How `ablation`'s downstream model differs from `evaluator`'s, from their params in the report
    (e.g. ``ablation's logistic-regression, 3 seeds, not utility's mlp, 5 seeds``), or None when it is
    the same model with the same seeds, or either records no model."""
    evaluators = report.get("evaluators", {})
    ours, theirs = (evaluators.get(e, {}).get("params", {}) for e in (evaluator, ablation))
    if not isinstance(ours, Mapping) or not isinstance(theirs, Mapping) or "model" not in ours or "model" not in theirs:
        return None
    linear = ours.get("model") == theirs.get("model") == "logistic-regression"  # (no hidden layer to differ)
    keys = [k for k in _MODEL_PARAMS if k in ours and k in theirs and ours[k] != theirs[k]
            and not (linear and k == "hidden")]
    if not keys:
        return None

    def say(params: Mapping[str, Any]) -> str:
        return ", ".join(str(params[k]) if k == "model" else
                         f"{params[k]} seed{'s' if params[k] != 1 else ''}" if k == "repeats" else
                         f"{k} {params[k]}" for k in keys)
    return f"{ablation}'s {say(theirs)}, not {evaluator}'s {say(ours)}"


def _estimator(measure: Any) -> str | None:
    estimator = measure.get("estimator") if isinstance(measure, Mapping) else None
    return estimator if isinstance(estimator, str) else None


def _level(report: Mapping[str, Any], evaluator: str) -> float | None:
    level = report.get("evaluators", {}).get(evaluator, {}).get("params", {}).get("level")
    return float(level) if isinstance(level, (int, float)) and not isinstance(level, bool) else None


def _repeats(report: Mapping[str, Any], evaluator: str) -> int:
    params = report.get("evaluators", {}).get(evaluator, {}).get("params", {})
    try:
        return int(params.get("repeats", 1))
    except (TypeError, ValueError):
        return 1


def _ablation_step(report: Mapping[str, Any], score: str) -> tuple[str, float, str | None, str] | None:
    """The step whose addition changed `score` the most (by absolute mean gain), from the first
    evaluator that reports each step's gain as ``step/<label>/gain/<score>`` (as the built-in
    ablation does), with the verdict from its ``steps`` table (a ``verdict`` column) and that
    evaluator's scope."""
    measures = report.get("metrics", {}).get("measures", {})
    for evaluator in sorted(report.get("evaluators", {})):
        gains = {}
        for path, measure in measures.get(evaluator, {}).items():
            parts = path.split("/")
            if len(parts) == 4 and parts[0] == "step" and parts[2] == "gain" and parts[3] == score:
                value = measure_value(measure)
                if value is not None:
                    gains[parts[1]] = value
        if not gains:
            continue
        label = max(sorted(gains), key=lambda k: abs(gains[k]))
        params = report.get("evaluators", {}).get(evaluator, {}).get("params", {})
        verdict = None
        table = report.get("metrics", {}).get("tables", {}).get(evaluator, {}).get("steps")
        if params.get("score", score) != score:  # its table judged another score: judge this one's gain alike
            verdict = _step_verdict(measures[evaluator][f"step/{label}/gain/{score}"], params.get("noise", 1.0))
        elif isinstance(table, Mapping):
            header = list(table.get("header", []))
            for row in table.get("rows", []):
                if row and str(row[0]) == label and "verdict" in header:
                    verdict = str(row[header.index("verdict")])
        return label, gains[label], verdict, evaluator
    return None


def _step_verdict(measure: Mapping[str, Any], noise: Any) -> str | None:
    """``helped``, ``hurt`` or ``within noise`` for a step's gain by the rule of the built-in
    ablation's ``steps`` table: its interval excludes 0; without an interval (a report written
    before there were any), the mean gain against `noise` times its std; a gain the paired bootstrap
    recorded without an interval is within noise, as in that table. None without either."""
    interval = measure_interval(measure)
    if interval is not None:
        return interval_verdict(interval, "helped", "hurt")
    if _estimator(measure) == "paired-bootstrap":  # (recorded without one: ablation's table reads it as noise)
        return "within noise"
    mean, std = measure_value(measure), measure.get("std") if isinstance(measure, Mapping) else None
    if mean is None or not isinstance(std, (int, float)) or not isinstance(noise, (int, float)):
        return None
    bound = float(noise) * float(std) + 1e-12 * max(1.0, abs(mean))
    return "helped" if mean > bound else "hurt" if mean < -bound else "within noise"


def _judged(report: Mapping[str, Any], evaluator: str, score: str) -> Headline | None:
    """`evaluator`'s ``raw/<score>`` against ``optimised/<score>`` with what judges the change
    (``delta/<score>``'s std, interval and estimator), or None when either number is missing."""
    own = report.get("metrics", {}).get("measures", {}).get(evaluator, {})
    raw, opt, delta = own.get(f"raw/{score}"), own.get(f"optimised/{score}"), own.get(f"delta/{score}")
    raw_value, opt_value = measure_value(raw), measure_value(opt)
    if raw_value is None or opt_value is None:
        return None
    return Headline(evaluator=evaluator, score=score, raw=raw_value, optimised=opt_value, n=raw.get("n"),
                    raw_std=_std(raw), optimised_std=_std(opt), delta_std=_std(delta),
                    repeats=_repeats(report, evaluator), delta_interval=measure_interval(delta),
                    level=_level(report, evaluator), delta_estimator=_estimator(delta))


def headline(report: Mapping[str, Any]) -> Headline | None:
    """The run's headline from the first evaluator (by scope) that measured the downstream model
    trained on the raw and on the optimised set (``raw/<score>`` and ``optimised/<score>``, as the
    built-in ``utility`` does), or None when none did; with that evaluator's ``minority_recall``
    judged alike, when it has one."""
    for evaluator in sorted(report.get("evaluators", {})):
        for score in SCORE_PREFERENCE:
            head = _judged(report, evaluator, score)
            if head is None:
                continue
            step = _ablation_step(report, score)
            return replace(
                head, minority=_judged(report, evaluator, "minority_recall"),
                step=None if step is None else step[0], step_gain=None if step is None else step[1],
                step_verdict=None if step is None else step[2],
                step_model=None if step is None else _model_note(report, evaluator, step[3]))
    return None
