"""The leakage evaluator: planted cross-split copies counted exactly, raw and optimised training
sets, figures, the mask behind split.drop_leaked, and the conformance kit."""

from __future__ import annotations

import pytest
import torch

from setforge import Dataset, EvalContext, FeatureInfo, Origin, create
from setforge.plugins.evaluate.leakage import Leakage
from setforge.testing import check_component

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    """Digits split 1200 / 597 with 6 exact and 4 near copies of training rows planted in test."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(data.target)
    classes = [str(c) for c in range(10)]
    train = Dataset(x=x[:1200], y=y[:1200], classes=classes, modality="image")
    test_x, test_y = x[1200:].clone(), y[1200:].clone()
    test_x[:6], test_y[:6] = x[:6], y[:6]                                 # exact copies, same labels
    g = torch.Generator().manual_seed(0)
    test_x[6:10] = (x[100:104] + 0.01 * torch.randn(4, 1, 8, 8, generator=g)).clamp(0, 1)  # near copies
    test_y[6:10] = y[100:104]
    return train, Dataset(x=test_x, y=test_y, classes=classes, modality="image")


def measures(metrics, prefix="leakage/"):
    return {path[len(prefix):]: m for path, m in metrics.flat().items()}


def natural_leaks(train: Dataset, test: Dataset, threshold: float) -> int:
    """Test rows (before planting) closer than `threshold` to a training row: brute force."""
    d = torch.cdist(test.x.flatten(1).double(), train.x.flatten(1).double()) / 8.0
    return int((d.min(dim=1).values < threshold).sum())


def test_planted_copies_are_counted(digits):
    train, test = digits
    metrics = create("evaluate", "leakage").evaluate(EvalContext.from_seed(0, train, test=test))
    m = measures(metrics)
    natural = natural_leaks(train, test[10:], 0.05)
    assert m["raw/exact_test_rows"].value == 6 and m["raw/exact_test_rows"].n == len(test)
    assert m["raw/exact_train_rows"].value == 6 and m["raw/exact_train_rows"].n == len(train)
    assert m["raw/near_test_rows"].value == 10 + natural
    assert m["raw/near_test_share"].value == pytest.approx((10 + natural) / len(test))
    assert m["raw/near_same_label"].n == 10 + natural and m["raw/near_same_label"].value >= 10
    assert m["raw/nearest_min"].value == 0.0
    # the optimised set is the raw set here: the same numbers under optimised/
    assert m["optimised/near_test_rows"].value == m["raw/near_test_rows"].value
    assert m["optimised/near_by_origin/real"].value == m["raw/near_train_rows"].value
    figures = metrics.figures["leakage"]
    assert set(figures) == {"closest-pairs", "nearest-distances"}
    assert all(png.startswith(PNG) for png in figures.values())


def test_optimised_set_with_copies_of_leaked_rows(digits):
    train, test = digits
    # an "augmentation" that copies the 6 leaked rows: the optimised set leaks more than the raw one
    copies = train[:6].replace(origin=torch.full((6,), int(Origin.AUGMENTED)), step=torch.zeros(6, dtype=torch.int64),
                               parent=torch.arange(6), row_id=None)
    optimised = Dataset.concat([train, copies])
    metrics = create("evaluate", "leakage").evaluate(EvalContext.from_seed(0, train, train=optimised, test=test))
    m = measures(metrics)
    assert m["optimised/exact_train_rows"].value == m["raw/exact_train_rows"].value + 6
    assert m["optimised/exact_test_rows"].value == m["raw/exact_test_rows"].value  # the same test rows
    assert m["optimised/near_by_origin/augmented"].value == 6 and m["optimised/near_by_origin/augmented"].n == 6
    assert "closest-pairs-optimised" in metrics.figures["leakage"]


def test_leaked_mask_and_exact_only(digits):
    train, test = digits
    near = Leakage().leaked_mask(train, test)
    assert near[:6].all() and near[100:104].all()
    exact = Leakage({"near": False}).leaked_mask(train, test)
    assert exact.nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]
    metrics = Leakage({"near": False, "pairs": 0}).evaluate(EvalContext.from_seed(0, train, test=test))
    m = measures(metrics)
    assert "raw/near_test_rows" not in m and m["raw/exact_test_rows"].value == 6
    assert "raw/nearest_median" in metrics.skipped["leakage"]
    assert not metrics.figures


def test_tabular_leakage_is_measured_in_standardized_units_with_categories_equal():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([1000 * torch.rand(300, generator=g), torch.rand(300, generator=g),
                     torch.randint(0, 3, (300,), generator=g).float()], dim=1)
    features = FeatureInfo(names=("income", "ratio", "kind"), categorical={"kind": ("a", "b", "c")})
    train = Dataset(x=x[:200], y=torch.zeros(200, dtype=torch.int64), classes=["n"], modality="tabular",
                    features=features)
    test_x = x[200:].clone()
    test_x[:3] = x[:3] + torch.tensor([0.5, 0.0, 0.0])    # a tiny change in the big column: a near copy
    test_x[3:6] = x[3:6]
    test_x[3:6, 2] = (x[3:6, 2] + 1) % 3                    # same numbers, another category: no copy
    test = Dataset(x=test_x, y=torch.zeros(100, dtype=torch.int64), classes=["n"], modality="tabular",
                   features=features)
    m = measures(Leakage({"threshold": 0.01}).evaluate(EvalContext.from_seed(0, train, test=test)))
    assert m["raw/exact_test_rows"].value == 0
    assert m["raw/near_test_rows"].value == 3


def test_no_test_split_is_skipped(digits):
    train, _ = digits
    metrics = Leakage().evaluate(EvalContext.from_seed(0, train))
    assert not metrics.flat() and "raw" in metrics.skipped["leakage"]


def test_conformance():
    check_component(Leakage)
    check_component(Leakage, {"near": False, "pairs": 2})
