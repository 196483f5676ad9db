"""``balance``: how the rows are spread over classes and origins, before and after the pipeline."""

from __future__ import annotations

import math

from setforge.components import Evaluator
from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset, Origin

from ._comparison import path_segment

__all__ = ["Balance", "imbalance_ratio", "normalised_entropy"]


def imbalance_ratio(counts: list[int]) -> float:
    """Rows of the largest class over rows of the smallest (infinite when a class has none)."""
    if not counts:
        return float("nan")
    largest, smallest = max(counts), min(counts)
    if smallest == 0:
        return float("inf") if largest else float("nan")
    return largest / smallest


def normalised_entropy(counts: list[int]) -> float:
    """Shannon entropy of the class shares over ``log(C)``: 1 for balanced classes, lower when skewed."""
    total = sum(counts)
    if total == 0 or len(counts) < 2:
        return float("nan")
    entropy = -sum(c / total * math.log(c / total) for c in counts if c)
    return entropy / math.log(len(counts))



# A balanced set: the largest class over the smallest near 1, the class shares' entropy near 1.
_BETTER = {"imbalance_ratio": "lower", "entropy": "higher"}

class Balance(Evaluator):
    """Rows per class and origin, imbalance ratio and normalised class entropy, before and after.

    Paths (under ``balance/``): ``raw/...`` for the raw training split and ``optimised/...`` for
    the optimised one, each with ``rows``, ``by_class/<class>``, ``imbalance_ratio`` (largest over
    smallest class; infinite when a class is empty) and ``entropy`` (normalised to [0, 1]);
    ``optimised/by_origin/<origin>`` and ``optimised/by_class_origin/<class>/<origin>``;
    ``change/imbalance_ratio`` and ``change/entropy`` (optimised minus raw); and for each step
    ``steps/<i>/imbalance_ratio`` and ``steps/<i>/entropy`` of its output.
    """

    name = "balance"
    modalities = ("image", "tabular", "audio", "text")

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        raw = self._describe(metrics, "raw", ectx.raw_train)
        opt = self._describe(metrics, "optimised", ectx.train)
        for origin in Origin:
            metrics.add(f"optimised/by_origin/{origin.label}", int((ectx.train.origin == int(origin)).sum()),
                        n=len(ectx.train))
        for c, name in enumerate(ectx.train.classes):
            in_class = ectx.train.y == c
            for origin in Origin:
                count = int((in_class & (ectx.train.origin == int(origin))).sum())
                metrics.add(f"optimised/by_class_origin/{path_segment(name)}/{origin.label}", count, n=len(ectx.train))
        for what in ("imbalance_ratio", "entropy"):
            before, after = raw[what], opt[what]
            if math.isfinite(before) and math.isfinite(after):
                metrics.add(f"change/{what}", after - before, n=len(ectx.train), better=_BETTER[what])
            else:
                metrics.skip(f"change/{what}", f"{what} is {before} before and {after} after")
        for record in ectx.steps:
            counts = record.output.class_counts()
            metrics.add(f"steps/{record.index}/imbalance_ratio", imbalance_ratio(counts), n=len(record.output),
                        better="lower")
            metrics.add(f"steps/{record.index}/entropy", normalised_entropy(counts), n=len(record.output),
                        better="higher")
        return metrics

    @staticmethod
    def _describe(metrics: Metrics, prefix: str, ds: Dataset) -> dict[str, float]:
        counts = ds.class_counts()
        n = len(ds)
        metrics.add(f"{prefix}/rows", n, n=n)
        for name, count in zip(ds.classes, counts):
            metrics.add(f"{prefix}/by_class/{path_segment(name)}", count, n=n)
        values = {"imbalance_ratio": imbalance_ratio(counts), "entropy": normalised_entropy(counts)}
        for what, value in values.items():
            metrics.add(f"{prefix}/{what}", value, n=n, better=_BETTER[what])
        return values
