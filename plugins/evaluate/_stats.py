"""The math behind the distribution metrics: Fréchet distance and polynomial-kernel MMD (KID).

Everything runs in torch float64 on the features' device, so a GPU run keeps its features on the
GPU and a CPU run needs neither scipy nor a copy to numpy.

Fréchet distance (FID) between N(mu1, S1) and N(mu2, S2)::

    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

pytorch-fid evaluates the last term with ``scipy.linalg.sqrtm`` of the non-symmetric product S1 S2
(a complex Schur decomposition: slow, and prone to small imaginary parts). S1 S2 is similar to
the symmetric positive semi-definite ``M = R^T S2 R`` for any factor ``S1 = R R^T``, so the trace
of its square root is the sum of the square roots of M's eigenvalues, which a symmetric
eigensolver (``eigvalsh``) gives fast and real. R is the Cholesky factor of S1 when S1 is
positive definite, else ``V diag(sqrt(w))`` from S1's symmetric eigendecomposition (which
also covers the singular covariances of fewer rows than dimensions).

KID: the unbiased estimator of the squared MMD with the polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (Bińkowski et al. 2018; the formula of
torch-fidelity and the MMD-GAN code), in float64.

Ball counts (for PRDC): how many balls ``|p - c| < r_c`` contain each point, in blocks, exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Moments", "moments", "frechet_distance", "frechet_distance_from_features", "trace_sqrt_product",
           "ball_counts", "exact_squared_distances",
           "polynomial_kernel", "polynomial_mmd2_unbiased", "kid", "kid_from_subsets", "KidResult",
           "Estimate", "bootstrap_counts", "bootstrap_summary", "kid_small_sample", "frechet_small_sample",
           "weighted_median", "wilson_interval"]


def _as_float64(values: Any, device: torch.device | str | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.float64)


@dataclass(frozen=True)
class Moments:
    """Mean ``(d,)`` and covariance ``(d, d)`` of a set of feature rows (float64), and the row count."""

    mean: torch.Tensor
    cov: torch.Tensor
    n: int


def moments(features: Any, weights: Any = None) -> Moments:
    """Mean and unbiased covariance (``ddof=1``, as ``numpy.cov(rowvar=False)``) in float64.

    With `weights` (one non-negative number per row) the mean and covariance are weighted with
    reliability weights: ``w`` normalised to sum 1, ``cov = sum w_i (x_i - mu)(x_i - mu)^T /
    (1 - sum w_i^2)``, which is ``numpy.cov(aweights=w)`` and, for equal weights, exactly the
    unweighted covariance. ``n`` is then the number of rows with a weight above 0.
    """
    x = _as_float64(features)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(x.shape)}")
    if weights is None:
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"a covariance needs at least 2 rows, got {n}")
        mean = x.mean(dim=0)
        centred = x - mean
        cov = centred.T @ centred / (n - 1)
        return Moments(mean=mean, cov=cov, n=n)
    w = _as_float64(weights, x.device).reshape(-1)
    if w.shape[0] != x.shape[0] or bool((w < 0).any()):
        raise ValueError(f"weights must be {x.shape[0]} non-negative numbers, one per row, got {tuple(w.shape)}")
    n = int((w > 0).sum())
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 rows of weight above 0, got {n}")
    w = w / w.sum()
    mean = w @ x
    centred = x - mean
    cov = (centred.T * w) @ centred / (1 - (w * w).sum())
    return Moments(mean=mean, cov=cov, n=n)


def _symmetric_factor(cov: torch.Tensor) -> torch.Tensor:
    """A matrix R with ``cov = R R^T`` (batched over leading dimensions): Cholesky when every
    matrix is positive definite, else the eigen square root."""
    factor, info = torch.linalg.cholesky_ex(cov)
    if not bool((info != 0).any()) and bool(torch.isfinite(factor).all()):
        return factor
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    return eigenvectors * eigenvalues.clamp_min(0).sqrt().unsqueeze(-2)


def trace_sqrt_product(cov1: Any, cov2: Any) -> torch.Tensor:
    """``tr((cov1 cov2)^(1/2))`` for symmetric positive semi-definite matrices, through a symmetric
    eigensolver (float64): the eigenvalues of ``R^T cov2 R`` with ``cov1 = R R^T``. Batched over
    leading dimensions (``(..., d, d)`` in, ``(...)`` out)."""
    cov1 = _as_float64(cov1)
    cov2 = _as_float64(cov2, cov1.device)
    # Symmetrise: rounding in a covariance product can leave it a hair off symmetric.
    cov1 = (cov1 + cov1.mT) / 2
    cov2 = (cov2 + cov2.mT) / 2
    factor = _symmetric_factor(cov1)
    middle = factor.mT @ cov2 @ factor
    eigenvalues = torch.linalg.eigvalsh((middle + middle.mT) / 2)
    # Eigenvalues of a PSD matrix are >= 0; tiny negatives are rounding.
    return eigenvalues.clamp_min(0).sqrt().sum(dim=-1)


def _frechet_values(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """Fréchet distances, batched over leading dimensions, clamped at 0 (float64)."""
    diff = mean1 - mean2
    value = ((diff * diff).sum(-1) + cov1.diagonal(dim1=-2, dim2=-1).sum(-1) + cov2.diagonal(dim1=-2, dim2=-1).sum(-1)
             - 2 * trace_sqrt_product(cov1, cov2))
    # The distance is >= 0; a tiny negative value is rounding between two near-identical sets.
    return value.clamp_min(0)


def frechet_distance(mean1: Any, cov1: Any, mean2: Any, cov2: Any) -> float:
    """The Fréchet distance between two Gaussians given by mean and covariance (float64)."""
    mean1 = _as_float64(mean1)
    device = mean1.device
    mean2, cov1, cov2 = (_as_float64(v, device) for v in (mean2, cov1, cov2))
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (mean1.numel(), mean1.numel()):
        raise ValueError(f"mean/covariance shapes disagree: {tuple(mean1.shape)}, {tuple(cov1.shape)}, "
                         f"{tuple(mean2.shape)}, {tuple(cov2.shape)}")
    return float(_frechet_values(mean1, cov1, mean2, cov2))


def frechet_distance_from_features(features1: Any, features2: Any, weights1: Any = None) -> float:
    """The Fréchet distance between the Gaussians fitted to two sets of feature rows (the first
    set's moments weighted by `weights1` when given, see `moments`)."""
    first, second = moments(features1, weights1), moments(features2)
    return frechet_distance(first.mean, first.cov, second.mean, second.cov)


# ------------------------------------------------------------------------------------ KID
def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> torch.Tensor:
    """``(gamma x y^T + coef0)^degree`` over the last two dimensions (batched); gamma defaults to 1/d."""
    gamma = 1.0 / x.shape[-1] if gamma is None else gamma
    return (x @ y.transpose(-1, -2) * gamma + coef0) ** degree


def polynomial_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                             coef0: float = 1.0) -> torch.Tensor:
    """Unbiased squared MMD between equal-sized sets, batched: ``x``, ``y`` of shape ``(..., m, d)``.

    Within-set kernel sums leave out the diagonal (``m (m - 1)`` terms); the cross term keeps all
    ``m^2`` (torch-fidelity's ``mmd_est="unbiased"``).
    """
    m = x.shape[-2]
    if y.shape[-2] != m:
        raise ValueError(f"both sets need the same number of rows, got {m} and {y.shape[-2]}")
    if m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 rows per set, got {m}")
    k_xx = polynomial_kernel(x, x, degree, gamma, coef0)
    k_yy = polynomial_kernel(y, y, degree, gamma, coef0)
    k_xy = polynomial_kernel(x, y, degree, gamma, coef0)
    off_diagonal = (k_xx.sum(dim=(-1, -2)) - k_xx.diagonal(dim1=-2, dim2=-1).sum(-1)
                    + k_yy.sum(dim=(-1, -2)) - k_yy.diagonal(dim1=-2, dim2=-1).sum(-1))
    return off_diagonal / (m * (m - 1)) - 2 * k_xy.sum(dim=(-1, -2)) / (m * m)


@dataclass(frozen=True)
class KidResult:
    """KID over subsets: the mean and (population) standard deviation of the per-subset MMD²."""

    mean: float
    std: float
    values: torch.Tensor
    subset_size: int


def kid_from_subsets(features1: Any, features2: Any, index1: torch.Tensor, index2: torch.Tensor,
                     degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                     max_elements: int = 2**25) -> KidResult:
    """KID from given subsets: row ``s`` of ``index1``/``index2`` ``(S, m)`` picks subset ``s``.

    Subsets are processed in chunks so that one kernel matrix chunk holds about `max_elements`
    numbers (memory stays bounded however many subsets are asked for).
    """
    x = _as_float64(features1)
    y = _as_float64(features2, x.device)
    index1 = torch.as_tensor(index1, device=x.device, dtype=torch.int64)
    index2 = torch.as_tensor(index2, device=x.device, dtype=torch.int64)
    if index1.ndim != 2 or index1.shape != index2.shape:
        raise ValueError(f"subset indices must both have shape (S, m), got {tuple(index1.shape)} and "
                         f"{tuple(index2.shape)}")
    subsets, m = index1.shape
    chunk = max(1, max_elements // max(m * m, 1))
    values = torch.cat([polynomial_mmd2_unbiased(x[index1[s:s + chunk]], y[index2[s:s + chunk]], degree, gamma, coef0)
                        for s in range(0, subsets, chunk)])
    return KidResult(mean=float(values.mean()), std=float(values.std(unbiased=False)), values=values, subset_size=m)


def _class_mmd2(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor, onehot: torch.Tensor,
                shares: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                onehot_y: torch.Tensor | None = None) -> torch.Tensor:
    """Unbiased squared MMD between a class mixture of the first set and the second set.

    The first set's rows belong to classes (``onehot`` ``(n1, C)``) mixed in ``shares`` ``(C,)``
    (summing to 1): each kernel mean is taken class pair by class pair, ``sum_cd s_c s_d
    mean(k(x_i, x_j))`` (``i != j`` within a class), so it is unbiased for the mixture whatever
    the class sizes. The second set is one sample of the mixture, its pairs ``i != j`` averaged
    together, or, with ``onehot_y`` ``(n2, C)`` (its rows' classes, in the same order), taken
    class pair by class pair in the same shares as well: new rows made with exact class counts
    (``target: balance``, SMOTE) are not an i.i.d. sample of the mixture, and pooling their pairs
    under-weights same-class pairs, which biases the MMD² down by ``sum_c s_c(1 - s_c) ...`` /
    (n2 - 1) (for two classes ``s0 s1 MMD²(P0, P1) / (n2 - 1)``). ``cx`` ``(..., n1)`` and ``cy``
    ``(..., n2)`` are row multiplicities (ones; 0/1 for a subset; bootstrap counts), and pairs of
    a row with itself are always left out. Kernel matrices may carry the same leading dimensions.
    A class without two rows in a round gives NaN there.
    """
    ones = torch.ones((k_yy.shape[-1], 1), dtype=k_yy.dtype, device=k_yy.device)
    wx, wy = cx.unsqueeze(-1) * onehot, cy.unsqueeze(-1) * (ones if onehot_y is None else onehot_y)
    sx, sy = shares, shares if onehot_y is not None else torch.ones_like(shares[:1])
    within_x = _weighted(_pair_means(k_xx, wx, wx, cx, onehot), sx, sx)
    within_y = _weighted(_pair_means(k_yy, wy, wy, cy, ones if onehot_y is None else onehot_y), sy, sy)
    return within_x - 2 * _weighted(_pair_means(k_xy, wx, wy), sx, sy) + within_y


def _pair_means(k: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor, counts: torch.Tensor | None = None,
                onehot: torch.Tensor | None = None) -> torch.Tensor:
    """Mean kernel value between the rows of each class of one side (`wa`: multiplicities times
    one-hot classes) and each class of the other (`wb`), ``(..., Ca, Cb)``; with `counts` and
    `onehot` (both sides the same set), a row's pairs with itself are left out."""
    block = wa.mT @ k @ wb
    pairs = wa.sum(-2).unsqueeze(-1) * wb.sum(-2).unsqueeze(-2)
    if counts is not None:
        squares = counts * counts
        block = block - torch.diag_embed(((squares * k.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2) @ onehot).squeeze(-2))
        pairs = pairs - torch.diag_embed((squares.unsqueeze(-2) @ onehot).squeeze(-2))
    return block / pairs


def _weighted(means: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    return (means * (sa.unsqueeze(-1) * sb)).sum(dim=(-1, -2))


def _strata(labels: torch.Tensor | None, n: int, device: torch.device) -> list[torch.Tensor]:
    """The row indices of each stratum (in label order), or one stratum of every row."""
    if labels is None:
        return [torch.arange(n, device=device)]
    labels = torch.as_tensor(labels, device=device)
    return [(labels == value).nonzero().flatten() for value in torch.unique(labels).tolist()]


def _check_shares(strata: list[torch.Tensor], shares: Any, device: torch.device) -> torch.Tensor:
    if shares is None:
        if len(strata) != 1:
            raise ValueError("class shares are needed when the first set has several strata")
        return torch.ones(1, dtype=torch.float64, device=device)
    shares = _as_float64(shares, device).reshape(-1)
    if shares.numel() != len(strata) or bool((shares <= 0).any()):
        raise ValueError(f"shares must be {len(strata)} positive numbers, one per stratum, got {tuple(shares.shape)}")
    return shares / shares.sum()


def _block_onehot(sizes: list[int], device: torch.device) -> torch.Tensor:
    """One-hot classes of rows laid out class by class, `sizes` rows each."""
    return torch.block_diag(*[torch.ones((size, 1), dtype=torch.float64, device=device) for size in sizes])


def _onehot(strata: list[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
    """``(n, C)`` one-hot classes of `n` rows from their strata (row indices per class)."""
    onehot = torch.zeros((n, len(strata)), dtype=torch.float64, device=device)
    for c, rows in enumerate(strata):
        onehot[rows, c] = 1
    return onehot


def _matching_strata(strata1: Any, strata2: Any, n2: int, device: torch.device) -> list[torch.Tensor] | None:
    """The second set's rows by class when its classes are the first set's and each has 2 rows or
    more (its pairs can then be weighted by class), else None (its pairs are pooled)."""
    if strata1 is None or strata2 is None:
        return None
    labels1, labels2 = torch.as_tensor(strata1).unique(), torch.as_tensor(strata2, device=device)
    found = _strata(labels2, n2, device)
    if not torch.equal(labels1.cpu(), labels2.unique().cpu()) or any(len(rows) < 2 for rows in found):
        return None
    return found


def kid(features1: Any, features2: Any, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None, degree: int = 3, gamma: float | None = None,
        coef0: float = 1.0, strata1: Any = None, shares: Any = None, strata2: Any = None) -> KidResult:
    """KID: unbiased polynomial MMD² over `subsets` random subsets of ``min(n1, n2, subset_size)``
    rows drawn without replacement from each set (torch-fidelity's defaults: 100 x 1000).

    With `strata1` (a class label per row of the first set) and `shares` (the weight of each
    label, in sorted label order), the first set stands for the class mixture in those shares:
    each subset draws ``round(share * m)`` rows of every class (at least 2, at most all of them)
    and `_class_mmd2` weights the classes by their shares, so the estimate stays unbiased for the
    mixture however the class sizes of the first set differ from the shares. With `strata2` too
    (the second set's labels, of the same classes, at least 2 rows each), the second set's
    subsets are drawn and weighted by class in the same way (see `_class_mmd2`).
    """
    x = _as_float64(features1)
    y = _as_float64(features2, x.device)
    m = min(x.shape[0], y.shape[0], subset_size)
    gen_device = generator.device if generator is not None else torch.device("cpu")

    def draw(n: int, take: int) -> torch.Tensor:
        keys = torch.rand((subsets, n), generator=generator, device=gen_device)
        return keys.argsort(dim=1)[:, :take].to(x.device)

    if strata1 is None:
        return kid_from_subsets(x, y, draw(x.shape[0], m), draw(y.shape[0], m), degree, gamma, coef0)
    strata = _strata(strata1, x.shape[0], x.device)
    weights = _check_shares(strata, shares, x.device)
    sizes = [min(len(rows), max(2, round(float(share) * m))) for rows, share in zip(strata, weights)]
    if any(len(rows) < 2 for rows in strata):
        raise ValueError("every class of the first set needs at least 2 rows for the class-weighted MMD")
    index1 = torch.cat([rows[draw(len(rows), size)] for rows, size in zip(strata, sizes)], dim=1)
    onehot = _block_onehot(sizes, x.device)
    by_class = _matching_strata(strata1, strata2, y.shape[0], x.device)
    if by_class is None:
        index2, onehot_y = draw(y.shape[0], m), None
    else:
        sizes_y = [min(len(rows), max(2, round(float(share) * m))) for rows, share in zip(by_class, weights)]
        index2 = torch.cat([rows[draw(len(rows), size)] for rows, size in zip(by_class, sizes_y)], dim=1)
        onehot_y = _block_onehot(sizes_y, x.device)
    chunk = max(1, 2**25 // max(index1.shape[1] * max(index1.shape[1], index2.shape[1]), 1))
    values = []
    for start in range(0, subsets, chunk):
        xs, ys = x[index1[start:start + chunk]], y[index2[start:start + chunk]]
        ones_x = torch.ones(xs.shape[:2], dtype=torch.float64, device=x.device)
        ones_y = torch.ones(ys.shape[:2], dtype=torch.float64, device=x.device)
        values.append(_class_mmd2(polynomial_kernel(xs, xs, degree, gamma, coef0),
                                  polynomial_kernel(xs, ys, degree, gamma, coef0),
                                  polynomial_kernel(ys, ys, degree, gamma, coef0), onehot, weights, ones_x, ones_y,
                                  onehot_y))
    values = torch.cat(values)
    return KidResult(mean=float(values.mean()), std=float(values.std(unbiased=False)), values=values, subset_size=m)


# ------------------------------------------------------------------ small-sample estimates
@dataclass(frozen=True)
class Estimate:
    """A number with its spread, uncertainty interval ``(low, high)`` and estimator, where known."""

    value: float
    std: float | None = None
    estimator: str | None = None
    interval: tuple[float, float] | None = None


def bootstrap_counts(n: int, rounds: int, generator: torch.Generator | None = None, strata: Any = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``(rounds, n)`` float64 multiplicities of a bootstrap: each round draws every stratum's
    rows with replacement, as many as the stratum has (one stratum of all rows by default), so a
    round keeps the strata's sizes."""
    device = torch.device("cpu") if device is None else torch.device(device)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    counts = torch.zeros((rounds, n), dtype=torch.float64, device=device)
    for rows in _strata(strata, n, device):
        draws = torch.randint(len(rows), (rounds, len(rows)), generator=generator, device=gen_device).to(device)
        counts.scatter_add_(1, rows[draws], torch.ones(draws.shape, dtype=torch.float64, device=device))
    return counts


def bootstrap_summary(point: float, values: torch.Tensor, estimator: str, level: float = 0.95,
                      centred: bool = False, floor: float | None = None) -> Estimate:
    """`point` with the standard deviation and the percentile interval (`level`) of its bootstrap
    `values`; rounds that gave no number (NaN: a class drawn as one repeated row) are left out.

    ``centred`` shifts the bootstrap values by their bias (their mean minus `point`) before taking
    the percentiles, for a biased statistic whose resamples sit above the estimate (the Fréchet
    distance): the interval then shows the estimate's spread around itself. `floor` clips the
    interval's low end (0 for a distance).
    """
    finite = values[torch.isfinite(values)]
    if finite.numel() < 2:
        return Estimate(point, None, estimator, None)
    if centred:
        finite = finite - (finite.mean() - point)
    tail = (1 - level) / 2
    low, high = torch.quantile(finite, torch.tensor([tail, 1 - tail], dtype=finite.dtype, device=finite.device))
    low = float(low) if floor is None else max(float(low), floor)
    return Estimate(point, float(finite.std()), estimator, (low, float(high)))


def kid_small_sample(features1: Any, features2: Any, rounds: int = 200, generator: torch.Generator | None = None,
                     degree: int = 3, gamma: float | None = None, coef0: float = 1.0, strata1: Any = None,
                     shares: Any = None, strata2: Any = None, level: float = 0.95) -> Estimate:
    """KID from few rows: the unbiased MMD² on every row of both sets (no subsets, sizes may
    differ), with a bootstrap interval: `rounds` resamples of each set (stratified by `strata1`
    and `strata2`), each scored with the same unbiased formula, pairs of a row with itself left
    out, so the resamples are not inflated by repeated rows. `strata1`/`shares` as in `kid`."""
    x = _as_float64(features1)
    y = _as_float64(features2, x.device)
    strata = _strata(strata1, x.shape[0], x.device)
    if any(len(rows) < 2 for rows in strata) or y.shape[0] < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 rows per set (and per class), got {x.shape[0]} and "
                         f"{y.shape[0]}")
    weights = _check_shares(strata, shares, x.device)
    onehot = _onehot(strata, x.shape[0], x.device)
    k_xx = polynomial_kernel(x, x, degree, gamma, coef0)
    k_xy = polynomial_kernel(x, y, degree, gamma, coef0)
    k_yy = polynomial_kernel(y, y, degree, gamma, coef0)
    ones_x = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    ones_y = torch.ones(y.shape[0], dtype=torch.float64, device=x.device)
    by_class = _matching_strata(strata1, strata2, y.shape[0], x.device)
    onehot_y = None if by_class is None else _onehot(by_class, y.shape[0], x.device)
    point = float(_class_mmd2(k_xx, k_xy, k_yy, onehot, weights, ones_x, ones_y, onehot_y))
    cx = bootstrap_counts(x.shape[0], rounds, generator, strata1, x.device)
    cy = bootstrap_counts(y.shape[0], rounds, generator, strata2, x.device)
    return bootstrap_summary(point, _class_mmd2(k_xx, k_xy, k_yy, onehot, weights, cx, cy, onehot_y),
                             "kid-unbiased-bootstrap", level)


def _weighted_moments(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reliability-weighted mean ``(B, d)`` and covariance ``(B, d, d)`` for weight rows ``(B, n)``
    (as `moments`); a round with all its weight on one row gets covariance 0."""
    w = weights / weights.sum(-1, keepdim=True)
    mean = w @ x
    second = (x.T * w.unsqueeze(-2)) @ x
    denominator = (1 - (w * w).sum(-1)).unsqueeze(-1).unsqueeze(-1)
    biased = second - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    cov = torch.where(denominator > 1e-12, biased / denominator.clamp_min(1e-12), torch.zeros_like(biased))
    return mean, (cov + cov.mT) / 2


def _pooled_basis(x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, dims: int) -> torch.Tensor:
    """``(D, dims)`` orthonormal directions of largest variance of the two sets pooled with equal
    weight: the top eigenvectors of ``(S1 + S2) / 2 + (mu1 - mu2)(mu1 - mu2)^T / 4``."""
    first = moments(x, wx)
    second = moments(y)
    w = wx / wx.sum()
    rows = torch.cat([(x - first.mean) * (w / (2 * (1 - (w * w).sum()))).sqrt().unsqueeze(1),
                      (y - second.mean) / (2 * (y.shape[0] - 1)) ** 0.5,
                      ((first.mean - second.mean) / 2).unsqueeze(0)])
    if rows.shape[0] < rows.shape[1]:  # fewer rows than features: the small Gram matrix has the same spectrum
        values, vectors = torch.linalg.eigh(rows @ rows.T)
        top = (vectors[:, -dims:] / values[-dims:].clamp_min(1e-300).sqrt()).flip(-1)  # largest first
        # A direction of (near) zero variance maps to noise of any length, not orthogonal to the
        # others: QR (largest first, so the others stay as they are) makes it a unit direction
        # orthogonal to them, which, as in the full eigenbasis, adds nothing to the distance.
        return torch.linalg.qr(rows.T @ top)[0]
    return torch.linalg.eigh(rows.T @ rows)[1][:, -dims:]


def frechet_small_sample(features1: Any, features2: Any, rounds: int = 200, generator: torch.Generator | None = None,
                         weights1: Any = None, strata1: Any = None, strata2: Any = None, level: float = 0.95,
                         max_dims: int | None = None) -> Estimate:
    """Fréchet distance from few rows, in a reduced feature dimension, with a bootstrap interval.

    A covariance of n rows has rank n - 1 at most, so in more dimensions than that the distance
    is dominated by noise. Both sets are projected onto ``d = min(D, n1 - 1, n2 - 1, max_dims)``
    principal directions of the two sets pooled with equal weight (`_pooled_basis`), and the
    distance is taken there (the first set's moments weighted by `weights1`, see `moments`). The
    interval comes from `rounds` resamples of each set (stratified by `strata1` and `strata2`)
    scored in the same directions: their percentile interval, shifted by the resamples' bias
    (resamples repeat rows, which pushes a Fréchet distance up) so that it centres on the
    estimate. The estimator is named ``frechet-pca<d>-bootstrap``. The distance itself is biased
    upwards at small n: compare it only with numbers of like n and d.
    """
    x = _as_float64(features1)
    y = _as_float64(features2, x.device)
    wx = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if weights1 is None else \
        _as_float64(weights1, x.device).reshape(-1)
    n1 = int((wx > 0).sum())
    dims = min(x.shape[1], n1 - 1, y.shape[0] - 1, max_dims or x.shape[1])
    if dims < 1:
        raise ValueError(f"a Fréchet distance needs at least 2 rows per set, got {n1} and {y.shape[0]}")
    basis = _pooled_basis(x, wx, y, dims)
    px, py = x @ basis, y @ basis
    first, second = moments(px, wx), moments(py)
    point = float(_frechet_values(first.mean, first.cov, second.mean, second.cov))
    cx = bootstrap_counts(x.shape[0], rounds, generator, strata1, x.device) * wx
    cy = bootstrap_counts(y.shape[0], rounds, generator, strata2, x.device)
    mean1, cov1 = _weighted_moments(px, cx)
    mean2, cov2 = _weighted_moments(py, cy)
    return bootstrap_summary(point, _frechet_values(mean1, cov1, mean2, cov2), f"frechet-pca{dims}-bootstrap", level,
                             centred=True, floor=0.0)


def weighted_median(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted median of `values` ``(n,)`` under weight rows ``(..., n)`` (None: equal
    weights): the midpoint of the smallest value whose cumulative weight reaches half the total
    and the smallest that passes it, so equal weights give ``numpy.median`` (the mean of the two
    middle values of an even count, not ``torch.median``'s lower one)."""
    order = values.argsort(stable=True)
    ordered = values[order]
    w = torch.ones_like(ordered, dtype=torch.float64) if weights is None else weights[..., order].to(torch.float64)
    cumulative = w.cumsum(-1)
    half, last = cumulative[..., -1:] / 2, values.shape[0] - 1
    lower = ordered[(cumulative < half * (1 - 1e-9)).sum(-1).clamp(max=last)]
    upper = ordered[(cumulative <= half * (1 + 1e-9)).sum(-1).clamp(max=last)]
    return (lower + upper) / 2


def wilson_interval(share: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion `share` of `n` trials."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf((1 + level) / 2)
    if n <= 0:
        return (0.0, 1.0)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (share * (1 - share) / n + z * z / (4 * n * n)) ** 0.5
    return (max(0.0, centre - half), min(1.0, centre + half))


# ------------------------------------------------------------------------- ball counting
def exact_squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum((a_i - b_i)^2)`` row by row in float64 (pairs given as two aligned ``(P, D)`` tensors)."""
    return (a.to(torch.float64) - b.to(torch.float64)).pow(2).sum(dim=-1)


def ball_counts(points: torch.Tensor, centres: torch.Tensor, radii_squared: torch.Tensor,
                block_size: int = 2048) -> torch.Tensor:
    """For every point, how many balls ``|point - centre|^2 < radius^2`` (strict) contain it.

    Distances are computed a block at a time with a GEMM in the inputs' dtype, so memory is bounded
    by ``block_size^2`` distances, never ``points x centres``. Pairs whose GEMM distance lies within
    rounding of the radius are recomputed exactly in float64, so the answer is the exact one
    (identical rows sitting on a ball's boundary included). `radii_squared` should be exact float64
    squared distances (see `exact_squared_distances`).
    """
    points = points.reshape(points.shape[0], -1)
    centres = centres.reshape(centres.shape[0], -1).to(points.dtype)
    radii_squared = radii_squared.to(device=points.device, dtype=torch.float64)
    # float32 GEMM distances carry an error of a few eps * (|p|^2 + |c|^2); the band is well above it.
    band = 1e-4 if points.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
    counts = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    if points.shape[0] == 0 or centres.shape[0] == 0:
        return counts
    # Distances do not change under a shift: centring on the centres' mean keeps the norms, and so
    # the GEMM's cancellation error and the band of pairs to recompute, small.
    shift = centres.mean(dim=0)
    point_norms = (points - shift).pow(2).sum(dim=1).to(torch.float64)
    centre_norms = (centres - shift).pow(2).sum(dim=1).to(torch.float64)
    with torch.no_grad():
        for p_start in range(0, points.shape[0], block_size):
            p_block = points[p_start:p_start + block_size]
            p_norms = point_norms[p_start:p_start + block_size]
            for c_start in range(0, centres.shape[0], block_size):
                c_block = centres[c_start:c_start + block_size]
                c_norms = centre_norms[c_start:c_start + block_size]
                radii = radii_squared[c_start:c_start + block_size]
                gemm = (p_norms.unsqueeze(1) + c_norms.unsqueeze(0)
                        - 2 * ((p_block - shift) @ (c_block - shift).T).to(torch.float64))
                inside = gemm < radii.unsqueeze(0)
                unsure = (gemm - radii.unsqueeze(0)).abs() <= band * (p_norms.unsqueeze(1) + c_norms.unsqueeze(0) + 1e-30)
                if bool(unsure.any()):
                    rows, cols = unsure.nonzero(as_tuple=True)
                    # Recomputed from the rows as given, like the radii, so that ties stay ties.
                    exact = exact_squared_distances(p_block[rows], c_block[cols])
                    inside[rows, cols] = exact < radii[cols]
                counts[p_start:p_start + p_block.shape[0]] += inside.sum(dim=1)
    return counts
