"""The grouping every distribution metric shares: by origin, all new rows, overall and per class."""

from __future__ import annotations

import pytest
import torch

from setforge import Dataset, EvalContext, Metrics, Origin
from setforge.plugins.evaluate._comparison import comparison_groups, matched_reference, measure_groups
from setforge.plugins.evaluate._stats import Estimate
from setforge.plugins.evaluate._features import FeatureParams


def test_groups_by_origin_then_new_overall_then_classes():
    real_y = torch.tensor([0, 0, 1, 1, 2])
    new_y = torch.tensor([0, 1, 1, 2, 0])
    new_origin = torch.tensor([int(Origin.GENERATED), int(Origin.AUGMENTED), int(Origin.GENERATED),
                               int(Origin.AUGMENTED), int(Origin.GENERATED)])
    groups = comparison_groups(real_y, new_y, new_origin, ("a", "b", "c"))
    paths = [g.path for g in groups]
    assert paths == ["augmented/overall", "augmented/by_class/b", "augmented/by_class/c",
                     "generated/overall", "generated/by_class/a", "generated/by_class/b",
                     "new/overall", "new/by_class/a", "new/by_class/b", "new/by_class/c"]
    by_path = {g.path: g for g in groups}
    assert by_path["generated/overall"].new_index.tolist() == [0, 2, 4]
    assert by_path["generated/by_class/a"].new_index.tolist() == [0, 4]
    assert by_path["generated/by_class/a"].real_index.tolist() == [0, 1]
    assert by_path["new/overall"].real_index.tolist() == [0, 1, 2, 3, 4]
    assert by_path["new/by_class/c"].describe() == "new rows of class 'c'"
    assert [g.path for g in comparison_groups(real_y, new_y, new_origin, ("a", "b", "c"), per_class=False)] == [
        "augmented/overall", "generated/overall", "new/overall"]


def test_measure_groups_files_numbers_with_counts_and_skips_small_groups():
    x = torch.arange(40, dtype=torch.float32).view(20, 2)
    y = torch.tensor([0] * 12 + [1] * 8)
    train = Dataset(x=x, y=y, classes=("p", "q"), modality="tabular")
    rows = torch.arange(7, 16)  # 5 rows of class p, 4 of class q
    new = Dataset(x=x[rows] + 0.5, y=y[rows], classes=("p", "q"), modality="tabular",
                  origin=torch.full((9,), int(Origin.RESAMPLED)), parent=rows, row_id=torch.full((9,), -1))
    ectx = EvalContext.from_seed(0, train, train=Dataset.concat([train, new]))
    seen = []

    def measure(real, fresh, task):
        seen.append((task.group.path, real.shape[0], fresh.shape[0]))
        return {"": (float(fresh.shape[0]), None), "spread": (1.0, 0.5)}

    metrics = measure_groups(ectx, FeatureParams(min_rows=5, small_sample=False), "toy", measure)
    assert isinstance(metrics, Metrics)
    # "new" equals "resampled" here (one origin), so it is measured once and filed twice.
    assert seen == [("resampled/overall", 20, 9), ("resampled/by_class/p", 12, 5)]
    flat = metrics.flat()
    assert flat["resampled/overall"].n == 9 and flat["new/overall"] == flat["resampled/overall"]
    assert flat["resampled/by_class/p/spread"].std == 0.5 and flat["new/by_class/p"].value == 5
    skipped = metrics.skipped[""]
    assert set(skipped) == {"resampled/by_class/q", "new/by_class/q"}
    assert skipped["resampled/by_class/q"] == ("4 resampled rows of class 'q' against 8 real rows; toy reports a "
                                               "number only from at least 5 of each (param min_rows)")


def test_overall_groups_are_class_matched_and_small_groups_flagged():
    x = torch.arange(40, dtype=torch.float32).view(20, 2)
    y = torch.tensor([0] * 12 + [1] * 8)
    train = Dataset(x=x, y=y, classes=("p", "q"), modality="tabular")
    rows = torch.tensor([0, 1, 2, 3, 4, 5, 12, 13])  # 6 new rows of p, 2 of q
    new = Dataset(x=x[rows] + 0.5, y=y[rows], classes=("p", "q"), modality="tabular",
                  origin=torch.full((8,), int(Origin.GENERATED)), parent=torch.full((8,), -1),
                  row_id=torch.full((8,), -1))
    ectx = EvalContext.from_seed(0, train, train=Dataset.concat([train, new]))
    tasks = {}

    def measure(real, fresh, task):
        tasks[task.group.path] = (task, real.shape[0])
        return {"": Estimate(1.0, None, "toy")}

    metrics = measure_groups(ectx, FeatureParams(min_rows=5), "toy", measure)
    overall, n_real = tasks["generated/overall"]
    assert n_real == 20 and overall.shares.tolist() == [0.75, 0.25] and not overall.small
    weights = overall.real_weights()
    # Each class of real rows carries its share among the new rows.
    assert float(weights[y == 0].sum()) == pytest.approx(0.75) and float(weights[y == 1].sum()) == pytest.approx(0.25)
    assert metrics.get("generated/overall").estimator == "toy-class-weighted"
    # 2 new rows of q (< min_rows): measured with the small-sample flag, not skipped.
    q, _ = tasks["generated/by_class/q"]
    assert q.small and q.shares is None and q.real_weights() is None
    assert metrics.get("generated/by_class/q").estimator == "toy"
    assert not metrics.skipped


def test_matched_reference_draws_real_rows_in_the_new_class_proportions():
    real_y = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)
    generator = torch.Generator().manual_seed(0)
    # The same mix: every real row.
    same = torch.tensor([0] * 3 + [1] * 2 + [2] * 1)
    assert matched_reference(real_y, same, generator).tolist() == list(range(60))
    # New rows mostly of the smallest class: as many real rows as class 2's ten allow.
    skewed = torch.tensor([0] * 10 + [2] * 30)
    index = matched_reference(real_y, skewed, generator)
    assert torch.bincount(real_y[index], minlength=3).tolist() == [3, 0, 10]
    assert len(set(index.tolist())) == len(index)


def test_pseudo_labelled_rows_are_real_rows_not_new_ones():
    # (found by an audit: far-off pseudo-labelled rows raised fid's new/overall from 0.09 to 29,
    # and with pseudo-labelled rows alone fid and memorisation recorded neither a number nor a skip)
    from setforge.plugins.evaluate._comparison import new_rows
    from setforge.plugins.evaluate.fid import FrechetDistance
    from setforge.plugins.evaluate.memorisation import Memorisation

    g = torch.Generator().manual_seed(0)

    def rows(n: int, shift: float, origin: Origin) -> Dataset:
        y = torch.arange(n) % 2
        x = torch.randn(n, 4, generator=g) + 2 * y[:, None] + shift
        extra = {} if origin == Origin.REAL else {"origin": torch.full((n,), int(origin)), "parent": torch.full((n,), -1),
                                                  "step": torch.zeros(n, dtype=torch.int64),
                                                  "row_id": torch.full((n,), -1)}
        return Dataset(x=x, y=y, classes=("a", "b"), modality="tabular", **extra)

    real, test = rows(160, 0, Origin.REAL), rows(100, 0, Origin.REAL)
    generated, pseudo = rows(120, 0, Origin.GENERATED), rows(400, 5, Origin.PSEUDO_LABELLED)
    both = Dataset.concat([real, generated, pseudo])
    assert new_rows(both).origin.unique().tolist() == [int(Origin.GENERATED)] and len(new_rows(both)) == 120

    def fid(train: Dataset) -> Metrics:
        ectx = EvalContext.from_seed(0, real, train=train, test=test)
        return FrechetDistance({"feature_space": "raw", "per_class": False}).evaluate(ectx)

    alone, mixed = fid(Dataset.concat([real, generated])), fid(both)
    assert mixed.get("fid/new/overall").n == 120
    assert mixed.get("fid/new/overall").value == alone.get("fid/new/overall").value
    only_pseudo = EvalContext.from_seed(0, real, train=Dataset.concat([real, pseudo]), test=test)
    assert "new/overall" in fid(Dataset.concat([real, pseudo])).skipped["fid"]
    memorisation = Memorisation({"feature_space": "raw", "per_class": False, "figure_pairs": 0}).evaluate(only_pseudo)
    assert "new/overall" in memorisation.skipped["memorisation"]
