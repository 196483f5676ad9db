"""FID from covariances: setforge's symmetric eigen route versus pytorch-fid's ``scipy.linalg.sqrtm``.

Two sets of ``--n`` x ``--dim`` features (default 10,000 x 2048, the size of an InceptionV3 pool
layer) with a realistic decaying spectrum (non-negative, low-rank signal plus noise, like pool
features). Both sets' means and covariances are computed once in float64 (timed and reported,
not part of the ratio); from the covariances onward each route is timed ``--repeats`` times,
interleaved so both see the same machine load:

- eigen: ``setforge.plugins.evaluate._stats.frechet_distance`` (Cholesky factor of S1, then the
  eigenvalues of the symmetric ``L^T S2 L``, float64, torch on ``--device``);
- sqrtm: pytorch-fid's ``calculate_frechet_distance`` (``scipy.linalg.sqrtm(S1 @ S2)``, numpy).

The ratio is sqrtm's best time over eigen's best time (target >= 5); the two values must agree
to 1e-6 relative.

    python benchmarks/evaluate.py [--n 10000] [--dim 2048] [--repeats 2] [--device cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch


def make_features(n: int, dim: int, seed: int, shift: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rank = max(8, dim // 8)
    basis = torch.randn(rank, dim, generator=generator) / rank ** 0.5
    signal = torch.randn(n, rank, generator=generator) * torch.linspace(3.0, 0.1, rank)
    noise = 0.3 * torch.randn(n, dim, generator=generator)
    return torch.relu(signal @ basis + noise + shift)


def sqrtm_route(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance (eps=1e-6)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="rows per feature set")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each route (best one counts)")
    parser.add_argument("--device", default="cpu", help="device of the eigen route (the sqrtm route is numpy)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from setforge.context import resolve_device
    from setforge.plugins.evaluate._stats import frechet_distance, moments

    device = resolve_device(args.device)
    real = make_features(args.n, args.dim, seed=0, shift=0.0).to(device)
    fake = make_features(args.n, args.dim, seed=1, shift=0.05).to(device)
    start = time.perf_counter()
    first, second = moments(real), moments(fake)
    if device.type == "cuda":
        torch.cuda.synchronize()
    covariance_s = time.perf_counter() - start
    mu1, s1 = first.mean.cpu().numpy(), first.cov.cpu().numpy()
    mu2, s2 = second.mean.cpu().numpy(), second.cov.cpu().numpy()

    eigen_times: list[float] = []
    sqrtm_times: list[float] = []
    eigen_value = sqrtm_value = float("nan")
    for _ in range(args.repeats):
        start = time.perf_counter()
        eigen_value = frechet_distance(first.mean, first.cov, second.mean, second.cov)
        if device.type == "cuda":
            torch.cuda.synchronize()
        eigen_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        sqrtm_value = sqrtm_route(mu1, s1, mu2, s2)
        sqrtm_times.append(time.perf_counter() - start)

    relative_difference = abs(eigen_value - sqrtm_value) / abs(sqrtm_value)
    result = {
        "benchmark": "fid-from-covariances",
        "n": args.n, "dim": args.dim, "repeats": args.repeats, "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "covariances_s": round(covariance_s, 3),
        "eigen_s": [round(t, 3) for t in eigen_times],
        "sqrtm_s": [round(t, 3) for t in sqrtm_times],
        "eigen_best_s": round(min(eigen_times), 3),
        "sqrtm_best_s": round(min(sqrtm_times), 3),
        "speedup_best": round(min(sqrtm_times) / min(eigen_times), 2),
        "speedup_median": round(statistics.median(sqrtm_times) / statistics.median(eigen_times), 2),
        "fid_eigen": eigen_value,
        "fid_sqrtm": sqrtm_value,
        "relative_difference": relative_difference,
        "target_speedup": 5.0,
    }
    result["meets_target"] = result["speedup_best"] >= 5.0 and relative_difference <= 1e-6
    if args.json:
        print(json.dumps(result))
    else:
        print(f"FID from covariances, two sets of {args.n} x {args.dim} features ({device}, "
              f"{result['torch_threads']} threads)")
        print(f"  covariances (both sets, float64): {covariance_s:8.3f} s (not in the ratio)")
        print(f"  eigen route  (setforge):           {min(eigen_times):8.3f} s best of {eigen_times}")
        print(f"  sqrtm route  (pytorch-fid/scipy):  {min(sqrtm_times):8.3f} s best of {sqrtm_times}")
        print(f"  speed-up: {result['speedup_best']}x best, {result['speedup_median']}x median (target >= 5x)")
        print(f"  FID {eigen_value:.10g} vs {sqrtm_value:.10g}: relative difference {relative_difference:.2e}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
