"""smote-nc and smoten: categorical columns come from FeatureInfo and keep valid codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge import Dataset, FeatureInfo, Origin, create
from setforge.testing import check_component

from .conftest import breast_cancer


def mixed_cancer() -> Dataset:
    """breast-cancer's first 5 numeric columns plus two categorical ones (binned features)."""
    base = breast_cancer()
    x = base.x[:, :5]
    size = torch.bucketize(base.x[:, 20].contiguous(), torch.tensor([-0.5, 0.5])).float()  # 3 categories
    texture = (base.x[:, 21] > 0).float()  # 2 categories
    names = ("radius", "texture", "perimeter", "area", "smoothness", "size", "rough")
    features = FeatureInfo(names=names, categorical={"size": ("small", "medium", "large"), "rough": ("no", "yes")})
    return base.replace(x=torch.cat([x, size[:, None], texture[:, None]], dim=1), features=features)


def all_categorical_cancer() -> Dataset:
    base = breast_cancer()
    x = torch.bucketize(base.x[:, :6].contiguous(), torch.tensor([-0.5, 0.5])).float()
    names = tuple(f"f{i}" for i in range(6))
    features = FeatureInfo(names=names, categorical={n: ("low", "mid", "high") for n in names})
    return base.replace(x=x, features=features)


def test_smote_nc_matches_imblearn_and_keeps_codes(ctx):
    from imblearn.over_sampling import SMOTENC

    ds = mixed_cancer()
    out = create("resample", "smote-nc").resample(ds, ctx)
    x_ref, y_ref = SMOTENC(categorical_features=[5, 6], random_state=ctx.rng.sk_seed()).fit_resample(ds.x.numpy(),
                                                                                                      ds.y.numpy())
    assert out.class_counts() == np.bincount(y_ref).tolist()
    new = out.origin == int(Origin.RESAMPLED)
    np.testing.assert_allclose(out.x[new].numpy(), np.asarray(x_ref, dtype=np.float32)[len(ds):], atol=1e-6)
    assert set(out.x[new, 5].tolist()) <= {0.0, 1.0, 2.0} and set(out.x[new, 6].tolist()) <= {0.0, 1.0}
    assert torch.equal(out.y[new], ds.y[out.parent[new]])


def test_smoten_matches_imblearn_and_keeps_codes(ctx):
    from imblearn.over_sampling import SMOTEN

    ds = all_categorical_cancer()
    out = create("resample", "smoten", {"sampling_strategy": {"malignant": 100}}).resample(ds, ctx)
    x_ref, y_ref = SMOTEN(sampling_strategy={0: 100}, random_state=ctx.rng.sk_seed()).fit_resample(ds.x.numpy(),
                                                                                                     ds.y.numpy())
    assert out.class_counts() == np.bincount(y_ref).tolist() == [100, ds.class_counts()[1]]
    new = out.origin == int(Origin.RESAMPLED)
    np.testing.assert_array_equal(out.x[new].numpy(), np.asarray(x_ref, dtype=np.float32)[len(ds):])
    assert set(out.x[new].flatten().tolist()) <= {0.0, 1.0, 2.0}


@pytest.mark.parametrize(("name", "make"), [("smote-nc", mixed_cancer), ("smoten", all_categorical_cancer)])
def test_categorical_samplers_pass_the_kit_and_are_deterministic(name, make):
    from setforge import StepContext

    cls = type(create("resample", name))
    assert cls.modalities == ("tabular",)
    check_component(cls)  # on the kit's categorical sample data (testing_data)
    first = cls().resample(make(), StepContext.from_seed(3, step=1))
    second = cls().resample(make(), StepContext.from_seed(3, step=1))
    assert first.fingerprint() == second.fingerprint() and bool((first.step[first.origin == 2] == 1).all())
