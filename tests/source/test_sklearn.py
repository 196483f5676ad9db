"""scikit-learn's bundled datasets as sources, and the long-tailed digits protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine

from setforge import ConfigError, Dataset, Splits, StepContext
from setforge.plugins.source.sklearn import BreastCancerSource, DigitsSource, WineSource, long_tail_counts
from setforge.testing import check_component


def ctx(seed: int = 0) -> StepContext:
    return StepContext.from_seed(seed)


@pytest.mark.parametrize("cls", [DigitsSource, BreastCancerSource, WineSource])
def test_conformance(cls):
    check_component(cls)


def test_digits_without_imbalance_gives_every_row_as_images():
    ds = DigitsSource().load(ctx())
    reference = load_digits()
    assert isinstance(ds, Dataset) and ds.modality == "image" and ds.shape == (1, 8, 8)
    assert len(ds) == 1797 and ds.classes == tuple(str(c) for c in range(10))
    assert torch.equal(ds.x[:, 0].double() * 16, torch.tensor(reference.images))
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0


def test_long_tail_profile_numbers():
    assert long_tail_counts(100, 10, 10.0) == [int(np.floor(100 * 10 ** (-c / 9) + 1e-9)) for c in range(10)]
    assert long_tail_counts(100, 10, 10.0)[0] == 100 and long_tail_counts(100, 10, 10.0)[-1] == 10
    assert long_tail_counts(50, 3, 1.0) == [50, 50, 50]
    assert long_tail_counts(10, 4, 1000.0)[-1] == 1  # never an empty class


def test_digits_long_tailed_protocol():
    splits = DigitsSource({"imbalance": 10}).load(ctx())
    assert isinstance(splits, Splits) and splits.val is None
    per_class = np.bincount(load_digits().target)
    n_test = int(np.floor(0.3 * per_class.min()))
    assert splits.test.class_counts() == [n_test] * 10  # balanced real test part
    assert splits.train.class_counts() == long_tail_counts(int(per_class.min()) - n_test, 10, 10.0)
    # disjoint real rows: no training image is also a test image (by position in the source)
    train_rows = {tuple(r) for r in splits.train.x.flatten(1).tolist()}
    test_rows = [tuple(r) for r in splits.test.x.flatten(1).tolist()]
    assert sum(r in train_rows for r in test_rows) <= 2  # the digits data holds a few exact duplicates itself
    assert torch.equal(splits.train.row_id, torch.arange(len(splits.train)))


def test_digits_protocol_is_fixed_by_its_own_seed_not_the_run_seed():
    a = DigitsSource({"imbalance": 20}).load(ctx(0))
    b = DigitsSource({"imbalance": 20}).load(ctx(123))
    c = DigitsSource({"imbalance": 20, "protocol_seed": 1}).load(ctx(0))
    assert a.train.fingerprint() == b.train.fingerprint() and a.test.fingerprint() == b.test.fingerprint()
    assert a.train.fingerprint() != c.train.fingerprint()
    assert a.train.class_counts() == c.train.class_counts()


def test_digits_params_are_checked():
    with pytest.raises(ConfigError, match="imbalance"):
        DigitsSource({"imbalance": 0.5})
    with pytest.raises(ConfigError, match="test_share"):
        DigitsSource({"test_share": 1.0})


def test_digits_protocol_keys_without_imbalance_are_refused_not_ignored():
    # (found by an audit: labelled_share 0.1 without imbalance gave all 1,797 rows, every one labelled)
    with pytest.raises(ConfigError, match=r"labelled_share 0.1 only applies with imbalance"):
        DigitsSource({"labelled_share": 0.1})
    with pytest.raises(ConfigError, match=r"test_share 0.2, protocol_seed 3 only apply with imbalance"):
        DigitsSource({"test_share": 0.2, "protocol_seed": 3})
    DigitsSource({"labelled_share": 1.0, "protocol_seed": 0})  # the defaults, spelt out, change nothing
    assert isinstance(DigitsSource({"imbalance": 1, "labelled_share": 0.1}).load(ctx()), Splits)


@pytest.mark.parametrize("cls, loader, classes", [
    (BreastCancerSource, load_breast_cancer, ("malignant", "benign")),
    (WineSource, load_wine, ("class_0", "class_1", "class_2")),
])
def test_tabular_sources_keep_columns_and_units(cls, loader, classes):
    ds = cls().load(ctx())
    reference = loader()
    assert ds.modality == "tabular" and ds.classes == classes
    assert ds.features.names == tuple(reference.feature_names)
    assert set(ds.features.dtypes.values()) == {"float64"} and not ds.features.categorical
    assert torch.allclose(ds.x.double(), torch.tensor(reference.data), rtol=1e-6)
    assert ds.y.tolist() == reference.target.tolist()
