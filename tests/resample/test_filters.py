"""Cleaning steps: de-duplication (planted exact and near copies, real rows kept first) and the
per-class outlier filter (planted outliers, scikit-learn's IsolationForest, a numpy robust z)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from setforge import ConfigError, DataError, Dataset, FeatureInfo, Origin, create
from setforge.plugins.resample.filters import Deduplicate, OutlierFilter
from setforge.testing import check_component


def with_planted_copies(ds: Dataset, noise: float = 0.01) -> tuple[Dataset, int]:
    """`ds` with 10 exact and 10 near copies (augmented rows, placed before the real rows)."""
    g = torch.Generator().manual_seed(0)
    near = (ds.x[10:20] + noise * (2 * torch.rand(ds.x[10:20].shape, generator=g) - 1)).clamp(0, 1)
    copies = ds.replace(x=torch.cat([ds.x[:10], near]), y=ds.y[:20], origin=torch.full((20,), int(Origin.AUGMENTED)),
                        step=torch.zeros(20, dtype=torch.int64), parent=torch.arange(20), row_id=None)[:20]
    return Dataset.concat([copies, ds]), 20


def test_deduplicate_drops_planted_copies_and_keeps_real_rows(digits_ds, ctx):
    base = create("resample", "deduplicate").resample(digits_ds, ctx)
    natural = len(digits_ds) - len(base)  # digits has a few near-identical images of its own
    data, planted = with_planted_copies(digits_ds)
    step = create("resample", "deduplicate")
    out = step.resample(data, ctx)
    assert len(out) == len(data) - planted - natural
    assert bool((out.origin == int(Origin.REAL)).all())  # the real originals win over their copies
    assert step.removed["rows"] == planted + natural and step.removed["of"] == len(data)
    assert step.removed["share"] == pytest.approx((planted + natural) / len(data))
    assert sum(c["removed"] for c in step.removed["by_class"].values()) == planted + natural


def test_deduplicate_exact_only_ignores_near_copies(digits_ds, ctx):
    data, _ = with_planted_copies(digits_ds)
    out = create("resample", "deduplicate", {"method": "exact"}).resample(data, ctx)
    assert len(out) == len(data) - 10
    assert int((out.origin == int(Origin.AUGMENTED)).sum()) == 10  # the near copies stay


def test_deduplicate_threshold_is_rms_difference(digits_ds, ctx):
    data, _ = with_planted_copies(digits_ds, noise=0.03)  # uniform noise in [-0.03, 0.03], then clipped
    rms = ((data.x[10:20] - data.x[30:40]).flatten(1).pow(2).mean(1).sqrt())
    assert 0.005 < float(rms.min()) and float(rms.max()) < 0.02
    kept_loose = create("resample", "deduplicate", {"threshold": 0.02}).resample(data, ctx)
    kept_tight = create("resample", "deduplicate", {"threshold": 0.005}).resample(data, ctx)
    loose_aug = int((kept_loose.origin == int(Origin.AUGMENTED)).sum())
    tight_aug = int((kept_tight.origin == int(Origin.AUGMENTED)).sum())
    assert loose_aug == 0 and tight_aug == 10


def test_deduplicate_within_class_keeps_conflicting_labels(cancer_ds, ctx, tmp_path):
    flipped = cancer_ds[:5].replace(y=1 - cancer_ds.y[:5])
    data = Dataset.concat([cancer_ds, flipped])
    step = create("resample", "deduplicate")
    ctx.workdir = tmp_path
    assert len(step.resample(data, ctx)) == len(cancer_ds)
    assert step.removed["conflicting_labels"] == 5
    assert json.loads((tmp_path / "removed.json").read_text())["rows"] == 5
    within = create("resample", "deduplicate", {"within_class": True}).resample(data, ctx)
    assert len(within) == len(data)


def test_deduplicate_public_duplicates_with_priority(cancer_ds):
    data = Dataset.concat([cancer_ds[:3], cancer_ds[:3]])
    step = create("resample", "deduplicate", {"method": "exact"})
    assert step.duplicates(data).tolist() == [-1, -1, -1, 0, 1, 2]
    priority = torch.tensor([1, 1, 1, 0, 0, 0])
    assert step.duplicates(data, priority=priority).tolist() == [3, 4, 5, -1, -1, -1]


def planted_outliers(ds: Dataset, label: int, count: int, size: float) -> Dataset:
    rows = (ds.y == label).nonzero().flatten()[:count]
    x = ds.x.clone()
    x[rows] = ds.x[rows] + size * torch.sign(ds.x[rows] + 1e-3)
    return ds.replace(x=x)


def test_isolation_forest_removes_planted_outliers_and_matches_scikit_learn(cancer_ds, ctx):
    from sklearn.ensemble import IsolationForest

    data = planted_outliers(cancer_ds, label=1, count=5, size=8.0)
    step = create("resample", "outlier-filter", {"contamination": 0.05})
    out = step.resample(data, ctx)
    planted = (data.y == 1).nonzero().flatten()[:5]
    kept_ids = set(out.row_id.tolist())
    assert not kept_ids & set(planted.tolist())
    # the same flags as scikit-learn's IsolationForest fitted per class with the step's seed
    seed = ctx.rng.sk_seed()
    expected_removed = []
    for label in range(2):
        rows = (data.y == label).nonzero().flatten()
        flags = IsolationForest(contamination=0.05, random_state=seed + label).fit_predict(
            data.x[rows].double().numpy()) == -1
        expected_removed += rows[torch.as_tensor(flags)].tolist()
    assert sorted(set(range(len(data))) - kept_ids) == sorted(expected_removed)
    assert step.removed["rows"] == len(expected_removed)
    assert step.removed["by_class"]["benign"]["removed"] == int((data.y[expected_removed] == 1).sum())
    assert step.removed["share"] == pytest.approx(len(expected_removed) / len(data))


def test_robust_z_matches_numpy_reference(cancer_ds, ctx):
    data = planted_outliers(cancer_ds, label=0, count=3, size=10.0)
    step = create("resample", "outlier-filter", {"method": "robust-z", "max_share": 1.0})
    out = step.resample(data, ctx)
    removed = sorted(set(range(len(data))) - set(out.row_id.tolist()))
    expected = []
    for label in range(2):
        rows = np.flatnonzero(data.y.numpy() == label)
        x = data.x[rows].double().numpy()
        med = np.median(x, axis=0)
        mad = np.median(np.abs(x - med), axis=0)
        keep = mad > 0
        d = np.sqrt((((x[:, keep] - med[keep]) / (1.4826 * mad[keep])) ** 2).mean(axis=1))
        z = 0.6745 * (d - np.median(d)) / np.median(np.abs(d - np.median(d)))
        expected += rows[z > 3.5].tolist()
    assert removed == sorted(expected)
    assert set((data.y == 0).nonzero().flatten()[:3].tolist()) <= set(removed)


def test_max_share_min_rows_and_categorical_columns(ctx):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(40, 3, generator=g), torch.randn(6, 3, generator=g)])
    x[:, 2] = torch.randint(0, 4, (46,), generator=g).float()
    x[:10, 0] += 50.0                      # 10 of class 0's 40 rows are far out
    x[:, 2][:40] = torch.where(torch.arange(40) < 20, 0.0, 3.0)  # a categorical split is no outlier
    features = FeatureInfo(names=("a", "b", "c"), categorical={"c": ("p", "q", "r", "s")})
    ds = Dataset(x=x, y=torch.tensor([0] * 40 + [1] * 6), classes=["big", "small"], modality="tabular",
                 features=features)
    step = create("resample", "outlier-filter", {"method": "robust-z", "max_share": 0.1, "min_rows": 10})
    out = step.resample(ds, ctx)
    assert step.removed["by_class"]["big"] == {"removed": 4, "of": 40}  # capped at 10% of 40
    assert set(range(46)) - set(out.row_id.tolist()) <= set(range(10))  # only the far rows go
    assert step.removed["by_class"]["small"] == {"removed": 0, "of": 6}
    assert step.removed["classes_not_filtered"] == ["small"]
    every_column_categorical = ds.replace(features=FeatureInfo(names=("a", "b", "c"), categorical={
        "a": ("x",), "b": ("y",), "c": ("p", "q", "r", "s")}))
    with pytest.raises(DataError, match="outlier-filter.*categorical"):
        step.resample(every_column_categorical, ctx)


def test_contamination_bounds():
    with pytest.raises(ConfigError, match="contamination"):
        create("resample", "outlier-filter", {"contamination": 0.7})


@pytest.mark.parametrize("cls, params", [(Deduplicate, None), (Deduplicate, {"method": "exact"}),
                                         (OutlierFilter, None), (OutlierFilter, {"method": "robust-z"})])
def test_conformance(cls, params):
    check_component(cls, params)
