"""SMOTE side by side: imbalanced-learn vs setforge's torch backend, seconds and peak memory.

    python benchmarks/resample.py                       # N = 20k, 100k, 200k, 1M; a table
    python benchmarks/resample.py --sizes 20000 200000 --repeat 3 --json
    python benchmarks/resample.py --device cuda         # the torch backend on a GPU as well
    python benchmarks/resample.py --threads 1           # one thread everywhere (a loaded, shared CPU)

Data: 64 float32 features, two Gaussian classes at 10:1 (minority shifted by 0.5), SMOTE with
k_neighbors=5 and sampling_strategy 'auto' (the minority is filled up to the majority).

Methods (each size and method runs in a fresh subprocess, so that imports, caches and memory
high-water marks of one case never leak into another):

- ``imblearn``: ``imblearn.over_sampling.SMOTE(k_neighbors=5).fit_resample(x, y)`` on numpy.
- ``torch``: setforge's ``torch_smote`` on a tensor (neighbours + new rows; the core of the
  ``smote`` component's torch backend), on the CPU.
- ``setforge-torch``: the whole ``smote`` component with ``backend: torch`` (``resample(ds, ctx)``,
  i.e. also validation and the output `Dataset` with provenance: the end-to-end cost).
- ``setforge-imblearn``: the ``smote`` component with its default imbalanced-learn backend (the
  bridge's overhead: numpy conversion, seed-row recovery, output `Dataset`).
- ``torch-cuda``: ``torch`` on the GPU (with ``--device cuda``); memory is
  ``torch.cuda.max_memory_allocated`` there.

Seconds: wall time of the call after a warm-up call on small data, min and median of
``--repeat`` runs. Peak memory: the process's resident-set high-water mark during the call minus
its resident set just before it (``/proc/self/clear_refs`` resets the mark before each run), so
it counts every allocation, numpy's, torch's and BLAS's alike; the output rows are included
(``output_mb`` says how much of the peak they are).

Target (from ``TARGET_ROWS`` = 100k rows up, where SMOTE's own work outweighs start-up costs):
the whole ``smote`` component with ``backend: torch`` takes at most imbalanced-learn's time and
peak memory (ratio <= 1.0 on both); smaller sizes are reported without a target. The results go
to ``benchmarks/results/resample.json`` (``--out``); exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

K = 5
FEATURES = 64
RATIO = 10
CPU_METHODS = ("imblearn", "torch", "setforge-torch", "setforge-imblearn")
TARGET_ROWS = 100_000
TARGET_METHOD = "setforge-torch"
#: ``$SETFORGE_BENCH_RESULTS`` (set by ``run_all.py --quick``) keeps quick figures out of the full results.
RESULTS = Path(os.environ.get("SETFORGE_BENCH_RESULTS") or Path(__file__).resolve().parent / "results") / "resample.json"


# ------------------------------------------------------------------------------ worker side
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def make_data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n_minority = n // (RATIO + 1)
    x = rng.standard_normal((n, FEATURES), dtype=np.float32)
    x[:n_minority] += 0.5
    y = np.zeros(n, dtype=np.int64)
    y[:n_minority] = 1
    return x, y


def _runner(method: str, x, y):
    """A zero-argument callable doing one resample of (x, y) with `method`."""
    n_new = int((y == 0).sum() - (y == 1).sum())
    if method == "imblearn":
        from imblearn.over_sampling import SMOTE

        return lambda: SMOTE(k_neighbors=K, random_state=0).fit_resample(x, y)
    import torch

    if method in ("torch", "torch-cuda"):
        from setforge.plugins.resample._torch_smote import torch_smote

        device = "cuda" if method == "torch-cuda" else "cpu"
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        generator = torch.Generator(device=device).manual_seed(0)

        def run():
            out = torch_smote(xt, yt, {1: n_new}, k=K, generator=generator)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        return run
    from setforge import Dataset, StepContext, create

    ds = Dataset(x=torch.from_numpy(x), y=torch.from_numpy(y), classes=("majority", "minority"), modality="tabular")
    backend = "torch" if method == "setforge-torch" else "imblearn"
    sampler = create("resample", "smote", {"backend": backend, "k_neighbors": K})
    return lambda: sampler.resample(ds, StepContext.from_seed(0))


def worker(method: str, n: int, repeat: int, threads: int | None = None) -> dict:
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)  # BLAS and OpenMP of numpy / scikit-learn
    x, y = make_data(n)
    # Warm-up on small data: imports, kernels, thread pools.
    wx, wy = make_data(2000, seed=1)
    _runner(method, wx, wy)()
    run = _runner(method, x, y)
    cuda = method == "torch-cuda"
    seconds, peaks = [], []
    for _ in range(repeat):
        gc.collect()
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            reset = _reset_peak()
            before = _status_mb("VmRSS")
        start = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - start)
        if cuda:
            peaks.append((torch.cuda.max_memory_allocated() - before) / 2**20)
        else:
            peaks.append(_status_mb("VmHWM" if reset else "VmPeak") - before)
        del out
    n_new = int((y == 0).sum() - (y == 1).sum())
    return {"method": method, "n": n, "seconds": seconds, "seconds_min": min(seconds),
            "seconds_median": statistics.median(seconds), "peak_mb": max(peaks),
            "output_mb": n_new * FEATURES * 4 / 2**20, "input_mb": x.nbytes / 2**20, "new_rows": n_new,
            "threads": _threads()}


def _threads() -> int:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------ driver side
def run_case(method: str, n: int, repeat: int, timeout: float, threads: int | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--n", str(n), "--repeat", str(repeat)]
    if threads:
        command += ["--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {"method": method, "n": n, "error": f"exit {done.returncode}: {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 200_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every method, interleaved (1 for sizes >= 1M)")
    parser.add_argument("--methods", nargs="+", default=list(CPU_METHODS))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: add the torch-cuda method")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--threads", type=int, help="threads for torch, BLAS and OpenMP alike (default: theirs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results JSON goes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.repeat, args.threads)))
        return 0
    methods = list(args.methods) + (["torch-cuda"] if args.device == "cuda" else [])
    results = []
    for n in args.sizes:
        # Rounds interleave the methods (one fresh subprocess and timed call each), so that a load
        # change on a shared machine falls on every method alike.
        rounds = [[run_case(method, n, 1, args.timeout, args.threads) for method in methods]
                  for _ in range(1 if n >= 1_000_000 else args.repeat)]
        for cases in zip(*rounds):
            result = _merge(list(cases))
            results.append(result)
            if not args.json:
                print(_row(result), flush=True)
    ratios = {}
    for n in args.sizes:
        by = {r["method"]: r for r in results if r["n"] == n and "error" not in r}
        if "imblearn" not in by:
            continue
        ratios[n] = {m: {"time": by[m]["seconds_min"] / by["imblearn"]["seconds_min"],
                         "peak_memory": by[m]["peak_mb"] / max(by["imblearn"]["peak_mb"], 1e-9)}
                     for m in by if m != "imblearn"}
    missed = [f"N={n}: {TARGET_METHOD} {what} {row[TARGET_METHOD][what]:.2f}x imblearn (target <= 1.0)"
              for n, row in ratios.items() if n >= TARGET_ROWS and TARGET_METHOD in row
              for what in ("time", "peak_memory") if row[TARGET_METHOD][what] > 1.0]
    missing = [f"N={n}: {TARGET_METHOD} or imblearn did not finish" for n in args.sizes
               if n >= TARGET_ROWS and TARGET_METHOD in methods and TARGET_METHOD not in ratios.get(n, {})]
    report = {"features": FEATURES, "ratio": f"{RATIO}:1", "k_neighbors": K, "threads": args.threads,
              "results": results, "ratios_vs_imblearn": ratios, "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(),
              "target": {"from_rows": TARGET_ROWS, "method": TARGET_METHOD, "max_ratio": 1.0,
                         "measured": any(n >= TARGET_ROWS for n in ratios), "missed": missed + missing}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\nratios to imblearn (min seconds, peak memory); load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        for n, row in ratios.items():
            print(f"  N={n:>9,}: " + ", ".join(f"{m} {v['time']:.2f}x time {v['peak_memory']:.2f}x memory"
                                               for m, v in row.items()))
        if not report["target"]["measured"]:
            print(f"target: none below {TARGET_ROWS:,} rows")
    for line in missed + missing:
        print(f"MISSED {line}", file=sys.stderr)
    return 1 if missed or missing else 0


def _merge(cases: list[dict]) -> dict:
    """One method's rounds as one result (min and median seconds, the median peak over them)."""
    failed = [c for c in cases if "error" in c]
    if failed:
        return failed[0]
    seconds = [s for c in cases for s in c["seconds"]]
    return {**cases[0], "seconds": seconds, "seconds_min": min(seconds), "seconds_median": statistics.median(seconds),
            "peak_mb": statistics.median(c["peak_mb"] for c in cases)}


def _row(result: dict) -> str:
    if "error" in result:
        return f"N={result['n']:>9,}  {result['method']:<18} {result['error']}"
    return (f"N={result['n']:>9,}  {result['method']:<18} {result['seconds_min']:8.3f} s (median "
            f"{result['seconds_median']:.3f})  peak {result['peak_mb']:8.1f} MB  (output {result['output_mb']:.0f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
