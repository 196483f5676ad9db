"""The imbalanced-learn resamplers: counts as imbalanced-learn gives them, provenance, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge import Origin, create

from .conftest import flat


def test_random_over_matches_imblearn_and_traces_parents(digits_ds, ctx):
    from imblearn.over_sampling import RandomOverSampler

    out = create("resample", "random-over").resample(digits_ds, ctx)
    _, y_ref = RandomOverSampler(random_state=ctx.rng.sk_seed()).fit_resample(*flat(digits_ds))
    assert out.class_counts() == np.bincount(y_ref, minlength=10).tolist()
    n = len(digits_ds)
    assert torch.equal(out.x[:n], digits_ds.x) and bool((out.origin[:n] == int(Origin.REAL)).all())
    new = out.origin == int(Origin.RESAMPLED)
    assert int(new.sum()) == len(out) - n
    # every new row is an exact copy of its parent, of the same class
    parent = out.parent[new]
    assert torch.equal(out.x[new], digits_ds.x[parent]) and torch.equal(out.y[new], digits_ds.y[parent])


def test_random_over_mapping_by_name_and_shrinkage(cancer_ds, ctx):
    sampler = create("resample", "random-over", {"sampling_strategy": {"malignant": 200}, "shrinkage": 0.5})
    out = sampler.resample(cancer_ds, ctx)
    assert out.class_counts() == [200, cancer_ds.class_counts()[1]]
    new = out.origin == int(Origin.RESAMPLED)
    assert not torch.equal(out.x[new], cancer_ds.x[out.parent[new]])  # smoothed, not copies
