"""Tabular scalers: statistics from the training split only, scikit-learn's numbers, categorical
columns untouched, exact inverses, state round trips, and the conformance kit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge import DataError, Dataset, FeatureInfo, StepContext, create
from setforge.plugins.preprocess.tabular import MinMax, Quantile, Standardize
from setforge.testing import check_component

SCALERS = ["standardize", "min-max", "quantile"]


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return Dataset(x=torch.tensor(data.data, dtype=torch.float32), y=torch.tensor(data.target),
                   classes=list(data.target_names), modality="tabular",
                   features=FeatureInfo(names=tuple(data.feature_names)))


@pytest.fixture()
def ctx() -> StepContext:
    return StepContext.from_seed(0)


@pytest.mark.parametrize("name", SCALERS)
def test_statistics_come_from_the_training_split_only(name, cancer, ctx):
    train, test = cancer[:400], cancer[400:]
    fitted = create("preprocess", name).fit(train, ctx)
    shifted = test.replace(x=test.x * 3 + 100)  # a very different test split
    refit = create("preprocess", name).fit(train, ctx)
    refit.transform(shifted)
    state, again = fitted.state_dict(), refit.state_dict()
    assert state.keys() == again.keys()
    for key in state:
        assert torch.equal(torch.as_tensor(state[key]), torch.as_tensor(again[key])), key
    # and transforming any split leaves the training transform unchanged
    assert torch.equal(fitted.transform(train).x, refit.transform(train).x)
    # the statistics are those of the training rows, not of all rows
    whole = create("preprocess", name).fit(cancer, ctx)
    assert not torch.equal(whole.transform(train).x, fitted.transform(train).x)


@pytest.mark.parametrize("name, reference", [
    ("standardize", lambda: __import__("sklearn.preprocessing").preprocessing.StandardScaler()),
    ("min-max", lambda: __import__("sklearn.preprocessing").preprocessing.MinMaxScaler()),
])
def test_matches_scikit_learn(name, reference, cancer, ctx):
    train = cancer[:400]
    ours = create("preprocess", name).fit(train, ctx).transform(cancer).x.double().numpy()
    theirs = reference().fit(train.x.double().numpy()).transform(cancer.x.double().numpy())
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_quantile_matches_scikit_learn(distribution, cancer, ctx):
    from sklearn.preprocessing import QuantileTransformer

    train = cancer[:400]
    params = {"n_quantiles": 100, "output_distribution": distribution}
    ours = create("preprocess", "quantile", {**params, "beyond": "clip"}).fit(train, ctx).transform(cancer)
    theirs = QuantileTransformer(**params).fit(train.x.double().numpy()).transform(cancer.x.double().numpy())
    np.testing.assert_allclose(ours.x.double().numpy(), theirs, atol=2e-5)
    # The default extends the end segments: the same inside the training range, invertible beyond it.
    extend = create("preprocess", "quantile", params).fit(train, ctx)
    out = extend.transform(cancer).x
    low, high = train.x.min(0).values, train.x.max(0).values
    inside = (cancer.x >= low) & (cancer.x <= high)
    assert not bool(inside.all())
    torch.testing.assert_close(out[inside], ours.x[inside])
    torch.testing.assert_close(extend.inverse(extend.transform(cancer)).x, cancer.x, rtol=1e-4, atol=1e-4)
    assert bool((out[cancer.x > high] > ours.x[cancer.x > high]).all())


def test_quantile_repeated_values_map_to_the_middle_of_their_stretch(ctx):
    x = torch.tensor([[0.0], [1.0], [1.0], [1.0], [2.0]])
    ds = Dataset(x=x, y=torch.zeros(5, dtype=torch.int64), classes=["a"], modality="tabular")
    out = create("preprocess", "quantile").fit(ds, ctx).transform(ds).x.flatten().tolist()
    assert out == pytest.approx([0.0, 0.5, 0.5, 0.5, 1.0])


@pytest.mark.parametrize("rows, n_quantiles", [(300, 1000), (1000, 1000), (2501, 100)])
def test_quantile_ties_land_in_the_middle_of_their_stretch_exactly(rows, n_quantiles, ctx):
    # Integer columns repeat values; quantile k sits at row k (rows - 1) / (n - 1) of the sorted
    # column, which floating point put a hair beside a repeated value (7 as 6.999999999999999).
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (rows, 3), generator=g).float()
    ds = Dataset(x=x, y=torch.zeros(rows, dtype=torch.int64), classes=["a"], modality="tabular")
    out = create("preprocess", "quantile", {"n_quantiles": n_quantiles}).fit(ds, ctx).transform(ds).x
    n = min(n_quantiles, rows)
    for column in range(3):
        ordered = x[:, column].sort().values
        for value in (1.0, 2.0, 3.0):  # inside the range
            first, last = (ordered == value).nonzero().flatten()[[0, -1]].tolist()
            equal = [k for k in range(n) if first * (n - 1) <= k * (rows - 1) <= last * (n - 1)]
            expected = (equal[0] + equal[-1]) / 2 / (n - 1)
            got = out[x[:, column] == value, column]
            torch.testing.assert_close(got, torch.full_like(got, expected), atol=1e-7, rtol=0)


@pytest.mark.parametrize("beyond", ["extend", "clip"])
def test_quantile_normal_inverse_gives_the_training_extremes_back_exactly(beyond, ctx):
    # The training ends map to ndtri(1e-7) and ndtri(1 - 1e-7); read back through the quantiles
    # without snapping, they came back 999e-7 of the end segment inside (9891.22 as 9891.02).
    g = torch.Generator().manual_seed(0)
    x = (-1000 * torch.rand(2000, 2, generator=g, dtype=torch.float64).log()).float()  # a long tail
    ds = Dataset(x=x, y=torch.zeros(2000, dtype=torch.int64), classes=["a"], modality="tabular")
    pre = create("preprocess", "quantile", {"output_distribution": "normal", "beyond": beyond}).fit(ds, ctx)
    back = pre.inverse(pre.transform(ds)).x
    for ends in (x.max(0), x.min(0)):
        assert torch.equal(back[ends.indices, [0, 1]], ends.values)
    torch.testing.assert_close(back, x, rtol=2e-6, atol=0)  # elsewhere: float32 rounding of the outputs
    if beyond == "extend":  # values just beyond the training range still come back as themselves
        outside = torch.stack([x.min(0).values - 1, x.max(0).values + 1])
        rows = ds[:2].replace(x=outside)
        torch.testing.assert_close(pre.inverse(pre.transform(rows)).x, outside, rtol=1e-5, atol=1e-3)
    # A constant column's ends are one value; values beside it still come back as themselves.
    constant = Dataset(x=torch.full((20, 1), 3.0), y=torch.zeros(20, dtype=torch.int64), classes=["a"],
                       modality="tabular")
    pre = create("preprocess", "quantile", {"output_distribution": "normal", "beyond": beyond}).fit(constant, ctx)
    values = torch.tensor([[0.0], [3.0], [3.5], [30.0]])
    back = pre.inverse(pre.transform(constant[:4].replace(x=values))).x
    expected = values if beyond == "extend" else torch.tensor([[3.0], [3.0], [3.0], [3.0]])
    torch.testing.assert_close(back, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", SCALERS)
def test_categorical_columns_are_never_scaled_and_inverse_gives_units_back(name, ctx):
    g = torch.Generator().manual_seed(0)
    x = torch.stack([50 + 10 * torch.randn(200, generator=g), torch.randint(0, 3, (200,), generator=g).float(),
                     torch.rand(200, generator=g)], dim=1)
    features = FeatureInfo(names=("age", "colour", "score"), categorical={"colour": ("red", "green", "blue")})
    ds = Dataset(x=x, y=torch.zeros(200, dtype=torch.int64), classes=["a"], modality="tabular", features=features)
    pre = create("preprocess", name).fit(ds[:150], ctx)
    out = pre.transform(ds)
    assert torch.equal(out.x[:, 1], x[:, 1])
    assert not torch.allclose(out.x[:, 0], x[:, 0])
    assert pre.state_dict()["columns"] == [0, 2]
    back = pre.inverse(pre.transform(ds[:150]))
    torch.testing.assert_close(back.x, x[:150], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", SCALERS)
def test_state_round_trip_and_column_check(name, cancer, ctx):
    pre = create("preprocess", name).fit(cancer[:300], ctx)
    state = pre.state_dict()
    assert all(isinstance(v, (int, list, torch.Tensor)) for v in state.values())
    restored = create("preprocess", name).load_state_dict(state)
    assert torch.equal(restored.transform(cancer).x, pre.transform(cancer).x)
    narrow = Dataset(x=cancer.x[:, :5], y=cancer.y, classes=cancer.classes, modality="tabular")
    with pytest.raises(DataError, match="fitted on 30 columns"):
        pre.transform(narrow)


def test_min_max_range_and_clip(cancer, ctx):
    pre = create("preprocess", "min-max", {"feature_range": [-1, 1], "clip": True}).fit(cancer[:300], ctx)
    out = pre.transform(cancer).x
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    train_out = pre.transform(cancer[:300]).x
    assert torch.allclose(train_out.min(0).values, torch.tensor(-1.0)) and torch.allclose(train_out.max(0).values,
                                                                                             torch.tensor(1.0))


@pytest.mark.parametrize("cls, params", [(Standardize, None), (MinMax, {"feature_range": [-2, 3]}),
                                         (Quantile, {"output_distribution": "normal"})])
def test_conformance(cls, params):
    check_component(cls, params)
