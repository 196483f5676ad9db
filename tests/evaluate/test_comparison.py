"""The grouping every distribution metric shares: by origin, all new rows, overall and per class."""

from __future__ import annotations

import torch

from setforge import Dataset, EvalContext, Metrics, Origin
from setforge.plugins.evaluate._comparison import comparison_groups, measure_groups
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

    def measure(real, fresh, group):
        seen.append((group.path, real.shape[0], fresh.shape[0]))
        return {"": (float(fresh.shape[0]), None), "spread": (1.0, 0.5)}

    metrics = measure_groups(ectx, FeatureParams(min_rows=5), "toy", measure)
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
