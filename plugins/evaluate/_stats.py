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
           "polynomial_kernel", "polynomial_mmd2_unbiased", "kid", "kid_from_subsets", "KidResult"]


def _as_float64(values: Any, device: torch.device | str | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.float64)


@dataclass(frozen=True)
class Moments:
    """Mean ``(d,)`` and covariance ``(d, d)`` of a set of feature rows (float64), and the row count."""

    mean: torch.Tensor
    cov: torch.Tensor
    n: int


def moments(features: Any) -> Moments:
    """Mean and unbiased covariance (``ddof=1``, as ``numpy.cov(rowvar=False)``) in float64."""
    x = _as_float64(features)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(x.shape)}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 rows, got {n}")
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / (n - 1)
    return Moments(mean=mean, cov=cov, n=n)


def _symmetric_factor(cov: torch.Tensor) -> torch.Tensor:
    """A matrix R with ``cov = R R^T``: Cholesky when positive definite, else the eigen square root."""
    factor, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0 and bool(torch.isfinite(factor).all()):
        return factor
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    return eigenvectors * eigenvalues.clamp_min(0).sqrt()


def trace_sqrt_product(cov1: Any, cov2: Any) -> torch.Tensor:
    """``tr((cov1 cov2)^(1/2))`` for symmetric positive semi-definite matrices, through a symmetric
    eigensolver (float64): the eigenvalues of ``R^T cov2 R`` with ``cov1 = R R^T``."""
    cov1 = _as_float64(cov1)
    cov2 = _as_float64(cov2, cov1.device)
    # Symmetrise: rounding in a covariance product can leave it a hair off symmetric.
    cov1 = (cov1 + cov1.T) / 2
    cov2 = (cov2 + cov2.T) / 2
    factor = _symmetric_factor(cov1)
    middle = factor.T @ cov2 @ factor
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2)
    # Eigenvalues of a PSD matrix are >= 0; tiny negatives are rounding.
    return eigenvalues.clamp_min(0).sqrt().sum()


def frechet_distance(mean1: Any, cov1: Any, mean2: Any, cov2: Any) -> float:
    """The Fréchet distance between two Gaussians given by mean and covariance (float64)."""
    mean1 = _as_float64(mean1)
    device = mean1.device
    mean2, cov1, cov2 = (_as_float64(v, device) for v in (mean2, cov1, cov2))
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (mean1.numel(), mean1.numel()):
        raise ValueError(f"mean/covariance shapes disagree: {tuple(mean1.shape)}, {tuple(cov1.shape)}, "
                         f"{tuple(mean2.shape)}, {tuple(cov2.shape)}")
    diff = mean1 - mean2
    value = diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt_product(cov1, cov2)
    # The distance is >= 0; a tiny negative value is rounding between two near-identical sets.
    return max(float(value), 0.0)


def frechet_distance_from_features(features1: Any, features2: Any) -> float:
    """The Fréchet distance between the Gaussians fitted to two sets of feature rows."""
    first, second = moments(features1), moments(features2)
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


def kid(features1: Any, features2: Any, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None, degree: int = 3, gamma: float | None = None,
        coef0: float = 1.0) -> KidResult:
    """KID: unbiased polynomial MMD² over `subsets` random subsets of ``min(n1, n2, subset_size)``
    rows drawn without replacement from each set (torch-fidelity's defaults: 100 x 1000)."""
    x = _as_float64(features1)
    y = _as_float64(features2, x.device)
    m = min(x.shape[0], y.shape[0], subset_size)
    gen_device = generator.device if generator is not None else torch.device("cpu")

    def draw(n: int) -> torch.Tensor:
        keys = torch.rand((subsets, n), generator=generator, device=gen_device)
        return keys.argsort(dim=1)[:, :m].to(x.device)

    return kid_from_subsets(x, y, draw(x.shape[0]), draw(y.shape[0]), degree, gamma, coef0)


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
