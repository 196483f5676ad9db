"""prdc: precision, recall, density, coverage (Naeem et al. 2020) with blocked exact neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from setforge import Origin
from setforge.plugins.evaluate.prdc import PrecisionRecallDensityCoverage, prdc
from setforge.testing import check_component
from tests.evaluate._distribution_data import context, derived, flipped, noisy_copies, real_split


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The prdc package's compute_prdc, with exact distances (scipy cdist) and full matrices."""
    def kth_neighbour_distance(x):
        distances = cdist(x, x)
        return np.sort(distances, axis=1)[:, k]  # position 0 is the row itself

    real_radii, fake_radii = kth_neighbour_distance(real), kth_neighbour_distance(fake)
    real_fake = cdist(real, fake)
    inside_real = real_fake < real_radii[:, None]
    return {
        "precision": inside_real.any(axis=0).mean(),
        "recall": (real_fake < fake_radii[None, :]).any(axis=1).mean(),
        "density": inside_real.sum(axis=0).mean() / k,
        "coverage": (real_fake.min(axis=1) < real_radii).mean(),
    }


@pytest.mark.parametrize(("k", "block_size"), [(5, 2048), (3, 16), (1, 7)])
def test_agrees_with_the_reference(k, block_size):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(300, 8)).astype(np.float32)
    fake = (rng.normal(size=(240, 8)) * 1.2 + 0.3).astype(np.float32)
    fake[:20] = real[:20]  # exact copies of real rows: distance 0
    expected = reference_prdc(real.astype(np.float64), fake.astype(np.float64), k)
    got = prdc(torch.tensor(real), torch.tensor(fake), k=k, block_size=block_size)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_identical_and_disjoint_sets():
    rng = np.random.default_rng(0)
    real = torch.tensor(rng.normal(size=(200, 4)), dtype=torch.float32)
    far = prdc(real, real + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    same = prdc(real, real.clone(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["density"] >= 1.0
    with pytest.raises(ValueError, match="more than k=5 rows"):
        prdc(real, real[:5], k=5)


def test_conforms():
    check_component(PrecisionRecallDensityCoverage)


def test_digits_generated_and_augmented_rows():
    train, test = real_split("digits")
    generated = noisy_copies(train, torch.arange(600), 0.01, Origin.GENERATED)
    augmented = flipped(train, torch.arange(600, 900))
    metrics = PrecisionRecallDensityCoverage({"feature_space": "raw", "per_class": False}).evaluate(
        context(train, [generated, augmented], test))
    get = lambda path: metrics.get(f"prdc/{path}").value  # noqa: E731
    # Noisy copies of half the real rows: realistic (precision near 1) but covering only part.
    assert get("generated/overall/precision") > 0.9
    assert 0.3 < get("generated/overall/coverage") < 0.8
    assert get("augmented/overall/precision") < get("generated/overall/precision")
    assert get("augmented/overall/density") < get("generated/overall/density")
    assert metrics.get("prdc/new/overall/recall").n == 900


def test_breast_cancer_realistic_and_off_manifold_rows():
    train, test = real_split("breast-cancer")
    rows = torch.arange(200)
    good = noisy_copies(train, rows, 0.05, Origin.GENERATED)
    bad = derived(train, train.x[rows] + 5 * train.x.std(dim=0), rows, Origin.RESAMPLED)
    metrics = PrecisionRecallDensityCoverage({"min_rows": 30}).evaluate(context(train, [good, bad], test))
    assert metrics.get("prdc/generated/overall/precision").value > 0.9
    assert metrics.get("prdc/generated/by_class/benign/precision").value > 0.9
    assert metrics.get("prdc/resampled/overall/precision").value < 0.05
    assert metrics.get("prdc/resampled/overall/coverage").value < 0.05


def test_minimum_rows_is_at_least_k_plus_one():
    train, test = real_split("breast-cancer")
    few = noisy_copies(train, torch.arange(6), 0.1, Origin.GENERATED)
    metrics = PrecisionRecallDensityCoverage({"min_rows": 2, "k": 6, "small_sample": False}).evaluate(
        context(train, [few], test))
    reason = metrics.skipped["prdc"]["generated/overall"]
    assert "at least 7" in reason and "more than k=6" in reason
    # By default such a group gets k cut below its row counts and Wilson intervals.
    small = PrecisionRecallDensityCoverage({"min_rows": 2, "k": 6}).evaluate(context(train, [few], test))
    precision = small.get("prdc/generated/overall/precision")
    assert precision.estimator == "prdc-k5-wilson-class-weighted"
    assert 0 <= precision.interval[0] <= precision.value <= precision.interval[1] <= 1
