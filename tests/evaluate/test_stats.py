"""The Fréchet, KID and ball-count math against reference formulas written here in numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.spatial.distance import cdist

from setforge.plugins.evaluate import _stats as stats


# ---------------------------------------------------------------------- reference formulas
def pytorch_fid_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance: scipy sqrtm of the product of covariances."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def torch_fidelity_mmd2(k_xx, k_xy, k_yy):
    """torch-fidelity's mmd2 with mmd_est='unbiased', unit_diagonal=False."""
    m = k_xx.shape[0]
    diag_x, diag_y = np.diagonal(k_xx), np.diagonal(k_yy)
    kt_xx_sum = (k_xx.sum(axis=1) - diag_x).sum()
    kt_yy_sum = (k_yy.sum(axis=1) - diag_y).sum()
    k_xy_sum = k_xy.sum(axis=0).sum()
    return (kt_xx_sum + kt_yy_sum) / (m * (m - 1)) - 2 * k_xy_sum / (m * m)


def torch_fidelity_polynomial_mmd(x, y, degree=3, gamma=None, coef0=1):
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    kernel = lambda a, b: (a @ b.T * gamma + coef0) ** degree  # noqa: E731
    return torch_fidelity_mmd2(kernel(x, x), kernel(x, y), kernel(y, y))


def torch_fidelity_kid(f1, f2, subsets, subset_size, seed):
    """torch-fidelity's kid_features_to_metric loop; returns (mean, std, the subset indices)."""
    m = min(min(len(f1), len(f2)), subset_size)
    rng = np.random.RandomState(seed)
    values, index1, index2 = [], [], []
    for _ in range(subsets):
        i1 = rng.choice(len(f1), m, replace=False)
        i2 = rng.choice(len(f2), m, replace=False)
        values.append(torch_fidelity_polynomial_mmd(f1[i1], f2[i2]))
        index1.append(i1)
        index2.append(i2)
    values = np.array(values)
    return values.mean(), values.std(), np.stack(index1), np.stack(index2)


def features(n, d, seed, shift=0.0, mix=0.3):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    return base @ (np.eye(d) + mix * rng.normal(size=(d, d)) / np.sqrt(d)) + shift


# ------------------------------------------------------------------------------------ FID
@pytest.mark.parametrize(("n", "d", "shift"), [(400, 16, 0.5), (600, 64, 0.1), (1000, 96, 0.02), (300, 8, 3.0)])
def test_frechet_agrees_with_pytorch_fid_sqrtm(n, d, shift):
    a, b = features(n, d, seed=d), features(n + 37, d, seed=d + 1, shift=shift, mix=0.6)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = pytorch_fid_frechet(mu1, s1, mu2, s2)
    assert stats.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    # The features route (moments in float64 from float32 rows) agrees with numpy's covariances.
    a32, b32 = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    a64, b64 = a32.double().numpy(), b32.double().numpy()
    expected32 = pytorch_fid_frechet(a64.mean(0), np.cov(a64, rowvar=False), b64.mean(0), np.cov(b64, rowvar=False))
    assert stats.frechet_distance_from_features(a32, b32) == pytest.approx(expected32, rel=1e-6)


def test_moments_match_numpy_cov():
    a = features(50, 6, seed=3)
    m = stats.moments(a)
    np.testing.assert_allclose(m.mean.numpy(), a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.cov.numpy(), np.cov(a, rowvar=False), rtol=1e-12)
    assert m.n == 50
    with pytest.raises(ValueError, match="at least 2 rows"):
        stats.moments(a[:1])


def test_singular_covariance_takes_the_eigen_factor_and_agrees():
    # Fewer rows than dimensions: S1 is singular, Cholesky fails, the eigen factor takes over.
    a, b = features(20, 40, seed=5), features(300, 40, seed=6, shift=0.2)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert torch.linalg.cholesky_ex(torch.tensor(s1))[1] != 0
    # Reference: the symmetric square root by eigendecomposition, then the trace of sqrt(S1) S2 sqrt(S1).
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    expected_trace = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    assert float(stats.trace_sqrt_product(s1, s2)) == pytest.approx(expected_trace, rel=1e-8)
    # and the Cholesky route (S2 is definite) gives the same trace from the other side
    assert float(stats.trace_sqrt_product(s2, s1)) == pytest.approx(expected_trace, rel=1e-8)


def test_frechet_properties():
    a, b = features(500, 10, seed=1), features(500, 10, seed=2, shift=1.0)
    assert stats.frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    ab = stats.frechet_distance_from_features(a, b)
    assert ab == pytest.approx(stats.frechet_distance_from_features(b, a), rel=1e-10)
    # A pure mean shift of c in every one of 10 dimensions adds 10 c^2 exactly.
    assert stats.frechet_distance_from_features(a, a + 2.0) == pytest.approx(40.0, rel=1e-9)
    with pytest.raises(ValueError, match="shapes disagree"):
        stats.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ------------------------------------------------------------------------------------ KID
@pytest.mark.parametrize(("n1", "n2", "d", "subset_size"), [(300, 250, 16, 100), (80, 120, 32, 1000)])
def test_kid_agrees_with_torch_fidelity(n1, n2, d, subset_size):
    f1, f2 = features(n1, d, seed=11), features(n2, d, seed=12, shift=0.1)
    mean, std, index1, index2 = torch_fidelity_kid(f1, f2, subsets=20, subset_size=subset_size, seed=123)
    result = stats.kid_from_subsets(f1, f2, torch.tensor(index1), torch.tensor(index2))
    assert result.subset_size == min(n1, n2, subset_size)
    assert result.mean == pytest.approx(mean, rel=1e-9)
    assert result.std == pytest.approx(std, rel=1e-7)
    # Chunking the subsets (tiny memory budget) changes nothing.
    chunked = stats.kid_from_subsets(f1, f2, torch.tensor(index1), torch.tensor(index2), max_elements=1)
    torch.testing.assert_close(chunked.values, result.values, rtol=1e-12, atol=1e-15)


def test_polynomial_mmd_matches_reference_with_other_kernel_params():
    x, y = features(40, 5, seed=1), features(40, 5, seed=2, shift=0.3)
    expected = torch_fidelity_polynomial_mmd(x, y, degree=2, gamma=0.5, coef0=0.25)
    got = stats.polynomial_mmd2_unbiased(torch.tensor(x), torch.tensor(y), degree=2, gamma=0.5, coef0=0.25)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_kid_draws_subsets_without_replacement_and_is_seeded(monkeypatch):
    f1, f2 = torch.tensor(features(60, 4, seed=1)), torch.tensor(features(90, 4, seed=2, shift=1.0))
    drawn = []
    real_subsets = stats.kid_from_subsets
    monkeypatch.setattr(stats, "kid_from_subsets", lambda x, y, i1, i2, *a: drawn.append((i1, i2)) or
                        real_subsets(x, y, i1, i2, *a))
    first = stats.kid(f1, f2, subsets=7, subset_size=50, generator=torch.Generator().manual_seed(3))
    again = stats.kid(f1, f2, subsets=7, subset_size=50, generator=torch.Generator().manual_seed(3))
    assert first.subset_size == 50 and first.values.shape == (7,)
    torch.testing.assert_close(first.values, again.values, rtol=0, atol=0)
    same = stats.kid(f1, f1.clone(), subsets=7, subset_size=50, generator=torch.Generator().manual_seed(3))
    assert abs(same.mean) < 0.1 * first.mean
    # every subset holds distinct rows of each set (without replacement), 50 of them
    assert drawn and all(len(set(r.tolist())) == 50 for i1, i2 in drawn for r in (*i1, *i2))


# ---------------------------------------------------------------------------- ball counts
def reference_ball_counts(points, centres, radii):
    return (cdist(points, centres) < radii[None, :]).sum(axis=1)


@pytest.mark.parametrize(("block_size", "offset"), [(1, 0.0), (7, 0.0), (2048, 0.0), (16, 1000.0)])
def test_ball_counts_match_brute_force(block_size, offset):
    rng = np.random.default_rng(0)
    points = (rng.normal(size=(53, 6)) + offset).astype(np.float32)
    centres = (rng.normal(size=(41, 6)) + offset).astype(np.float32)
    radii = rng.uniform(0.5, 3.0, size=41)
    expected = reference_ball_counts(points.astype(np.float64), centres.astype(np.float64), radii)
    got = stats.ball_counts(torch.tensor(points), torch.tensor(centres), torch.tensor(radii) ** 2, block_size)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_ball_counts_are_exact_on_boundaries_and_duplicates():
    # Integer coordinates make every squared distance exact, so ties are real ties: a point on a
    # ball's boundary is outside (strict <), a duplicate of a centre (distance 0) is inside.
    rng = np.random.default_rng(1)
    centres = rng.integers(-5, 6, size=(30, 4)).astype(np.float32)
    points = rng.integers(-5, 6, size=(40, 4)).astype(np.float32)
    points[:10] = centres[:10]
    radii_squared = ((centres - points[:30]) ** 2).sum(axis=1).astype(np.float64)  # point j on ball j's edge
    radii_squared[:10] = 2.0  # balls 0..9 contain their duplicate points (distance 0)
    d2 = ((points[:, None, :].astype(np.float64) - centres[None, :, :]) ** 2).sum(-1)
    expected = (d2 < radii_squared[None, :]).sum(axis=1)
    got = stats.ball_counts(torch.tensor(points) * 1000, torch.tensor(centres) * 1000,
                            torch.tensor(radii_squared) * 1e6, block_size=8)
    np.testing.assert_array_equal(got.numpy(), expected)


# ---------------------------------------------------------- class-weighted and small-sample
def test_weighted_moments_match_numpy_aweights():
    a = features(80, 5, seed=4)
    w = np.random.default_rng(0).uniform(0.1, 2.0, size=80)
    m = stats.moments(a, w)
    np.testing.assert_allclose(m.mean.numpy(), np.average(a, axis=0, weights=w), rtol=1e-12)
    np.testing.assert_allclose(m.cov.numpy(), np.cov(a, rowvar=False, aweights=w), rtol=1e-10)


def test_class_weighted_fid_equals_plain_fid_when_the_class_mixes_match():
    # Real rows 300/200/100 over three classes, new rows 150/100/50: the same mix.
    rng = np.random.default_rng(7)
    real_y = np.repeat([0, 1, 2], [300, 200, 100])
    new_y = np.repeat([0, 1, 2], [150, 100, 50])
    real = features(600, 12, seed=1) + 2.0 * real_y[:, None]
    new = features(300, 12, seed=2, shift=0.3) + 2.0 * new_y[:, None] + 0.1 * rng.normal(size=(300, 12))
    shares = np.bincount(new_y) / len(new_y)
    weights = shares[real_y] / np.bincount(real_y)[real_y]
    plain = stats.frechet_distance_from_features(real, new)
    assert stats.frechet_distance_from_features(real, new, weights) == pytest.approx(plain, rel=1e-10)
    # A different mix weights the classes differently and so changes the distance.
    other = np.array([0.1, 0.1, 0.8])[real_y] / np.bincount(real_y)[real_y]
    assert abs(stats.frechet_distance_from_features(real, new, other) - plain) > 0.1 * plain


def test_class_weighted_kid_is_unbiased_for_the_mixture():
    # The first set over-represents class 0 (400 rows against 40); weighted to shares 0.5/0.5 it
    # stands for the mixture, so it is close to the second set drawn 50/50, and the plain KID is not.
    g = torch.Generator().manual_seed(0)
    d = 6
    centre = torch.zeros(d, dtype=torch.float64)
    centre[0] = 3.0
    x = torch.cat([torch.randn(400, d, generator=g, dtype=torch.float64),
                   torch.randn(40, d, generator=g, dtype=torch.float64) + centre])
    strata = torch.tensor([0] * 400 + [1] * 40)
    y = torch.cat([torch.randn(200, d, generator=g, dtype=torch.float64),
                   torch.randn(200, d, generator=g, dtype=torch.float64) + centre])
    weighted = stats.kid(x, y, subsets=50, subset_size=200, generator=g, strata1=strata, shares=[0.5, 0.5])
    plain = stats.kid(x, y, subsets=50, subset_size=200, generator=g)
    assert abs(weighted.mean) < 3 * weighted.std / 50 ** 0.5 + 0.02
    assert plain.mean > 10 * abs(weighted.mean) and plain.mean > 0.1


def test_class_mmd_with_one_class_is_the_unbiased_mmd_for_unequal_sizes():
    x, y = torch.tensor(features(15, 4, seed=1)), torch.tensor(features(40, 4, seed=2, shift=0.5))
    k = stats.polynomial_kernel
    expected = (((k(x, x).sum() - k(x, x).trace()) / (15 * 14)) + ((k(y, y).sum() - k(y, y).trace()) / (40 * 39))
                - 2 * k(x, y).mean())
    estimate = stats.kid_small_sample(x, y, rounds=20, generator=torch.Generator().manual_seed(0))
    assert estimate.value == pytest.approx(float(expected), rel=1e-10)
    assert estimate.estimator == "kid-unbiased-bootstrap"


def test_small_sample_kid_interval_covers_the_large_sample_value_on_gaussians():
    d = 8
    shift = torch.zeros(d, dtype=torch.float64)
    shift[0] = 0.8
    g = torch.Generator().manual_seed(1)
    large = stats.kid(torch.randn(4000, d, generator=g, dtype=torch.float64),
                      torch.randn(4000, d, generator=g, dtype=torch.float64) + shift,
                      subsets=50, subset_size=1000, generator=g).mean
    covered, trials = 0, 20
    for trial in range(trials):
        gen = torch.Generator().manual_seed(100 + trial)
        real = torch.randn(10, d, generator=gen, dtype=torch.float64)
        new = torch.randn(40, d, generator=gen, dtype=torch.float64) + shift
        estimate = stats.kid_small_sample(real, new, rounds=200, generator=gen)
        low, high = estimate.interval
        covered += low <= large <= high
        assert low <= estimate.value <= high
    # A 95% interval from 10 rows: it covers the value 4000 rows give in nearly every trial.
    assert covered >= 17


def test_small_sample_frechet_uses_fewer_dims_than_rows_and_separates_shifts():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(7, 64, generator=g, dtype=torch.float64)
    near = torch.randn(300, 64, generator=g, dtype=torch.float64)
    far = torch.randn(300, 64, generator=g, dtype=torch.float64) + 1.5
    close = stats.frechet_small_sample(real, near, rounds=100, generator=g)
    apart = stats.frechet_small_sample(real, far, rounds=100, generator=g)
    assert close.estimator == apart.estimator == "frechet-pca6-bootstrap"
    assert close.interval[0] <= close.value <= close.interval[1]
    assert apart.value > close.interval[1]
    # The estimate is the plain Fréchet distance of the two sets projected onto 6 directions.
    basis = stats._pooled_basis(real, torch.ones(7, dtype=torch.float64), near, 6)
    assert close.value == pytest.approx(stats.frechet_distance_from_features(real @ basis, near @ basis), rel=1e-9)


def test_weighted_median_and_wilson_interval():
    values = torch.tensor([5.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    # numpy's median: the middle two of an even count averaged (torch.median takes the lower one, 2)
    assert float(stats.weighted_median(values, torch.ones(4))) == float(np.median(values.numpy())) == 2.5
    assert float(stats.weighted_median(values)) == 2.5 and float(stats.weighted_median(values[:3])) == 3.0
    assert float(stats.weighted_median(values, torch.tensor([0.0, 0.0, 1.0, 0.0]))) == 3.0
    # integer weights (bootstrap counts) equal the median of the rows repeated that often
    weights = torch.tensor([[1.0, 1, 1, 1], [3.0, 0, 0, 0], [2.0, 0, 1, 1], [0.0, 2, 0, 2]])
    expected = [float(np.median(np.repeat(values.numpy(), w.int().numpy()))) for w in weights]
    assert stats.weighted_median(values, weights).tolist() == expected == [2.5, 5.0, 4.0, 1.5]
    # Wilson's score interval, from its closed form: 5 of 10 at 95%.
    low, high = stats.wilson_interval(0.5, 10)
    assert (low, high) == (pytest.approx(0.236593, abs=1e-6), pytest.approx(0.763407, abs=1e-6))
    assert stats.wilson_interval(0.0, 4)[0] == 0.0


def test_bootstrap_counts_keep_strata_sizes():
    strata = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    counts = stats.bootstrap_counts(9, 30, torch.Generator().manual_seed(0), strata)
    assert counts.shape == (30, 9) and bool((counts.sum(1) == 9).all())
    assert bool((counts[:, :3].sum(1) == 3).all()) and bool((counts[:, 5:].sum(1) == 4).all())


def test_small_sample_frechet_basis_stays_orthonormal_when_the_pooled_rows_have_lower_rank():
    # (found by an audit: a zero-variance direction of the Gram branch was noise of any length,
    # and the distance came out 17.1 where the exact one is 11.9)
    g = torch.Generator().manual_seed(37)
    a, b = torch.rand(64, generator=g, dtype=torch.float64), torch.rand(64, generator=g, dtype=torch.float64)
    real, new = a.expand(3, 64).clone(), b.expand(3, 64).clone()  # one duplicated record, and a collapsed set
    basis = stats._pooled_basis(real, torch.ones(3, dtype=torch.float64), new, 2)
    assert torch.allclose(basis.T @ basis, torch.eye(2, dtype=torch.float64), atol=1e-12)
    value = stats.frechet_small_sample(real, new, rounds=10, generator=torch.Generator().manual_seed(0)).value
    assert value == pytest.approx(float(((a - b) ** 2).sum()), rel=1e-9)
    x, y = torch.from_numpy(features(5, 40, 1)), torch.from_numpy(features(6, 40, 2, shift=0.5))  # full rank
    projected = stats._pooled_basis(x, torch.ones(5, dtype=torch.float64), y, 4)
    assert torch.allclose(projected.T @ projected, torch.eye(4, dtype=torch.float64), atol=1e-10)
