"""Rows per second: setforge-audio's batched augmenters vs audiomentations applied row by row.

Same ops and ranges: gain (-6..6 dB) vs ``Gain``, time-shift (up to 20%, rolled) vs ``Shift``,
noise-snr (5..40 dB) vs ``AddGaussianSNR``, and time-mask vs ``TimeMask`` (the nearest op:
audiomentations zeroes a stretch of samples, setforge a band of STFT frames and inverts the
STFT, so setforge does more work). One-second mono clips at 16 kHz (synthesised chirps), one
CPU thread, the two sides interleaved round by round; the best round of each is kept. Writes
``results/waveform.json``; exits 1 when setforge is slower than the per-row loop on gain, shift
or noise (target: ratio >= 1).

    pip install -e "contrib/setforge-audio[bench]"; python contrib/setforge-audio/benchmarks/waveform.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from setforge_audio.augment import Gain, NoiseSnr, TimeMask, TimeShift

RATE = 16000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import audiomentations as am

    t = torch.arange(RATE, dtype=torch.float64) / RATE
    f0 = torch.linspace(200, 800, args.rows, dtype=torch.float64).view(-1, 1)
    x = (0.5 * torch.sin(2 * math.pi * (f0 * t + 1000 * t**2))).float().unsqueeze(1)
    rows = [r[0].numpy() for r in x]
    ops = {
        "gain": (Gain({}), am.Gain(min_gain_db=-6, max_gain_db=6, p=1.0)),
        "time-shift": (TimeShift({"max_shift": 0.2}), am.Shift(min_shift=-0.2, max_shift=0.2, rollover=True, p=1.0)),
        "noise-snr": (NoiseSnr({}), am.AddGaussianSNR(min_snr_db=5, max_snr_db=40, p=1.0)),
        "time-mask": (TimeMask({}), am.TimeMask(min_band_part=0.0, max_band_part=0.15, p=1.0)),
    }
    results = {}
    for name, (ours, theirs) in ops.items():
        best = {"setforge": float("inf"), "audiomentations": float("inf")}
        for r in range(args.rounds):
            start = time.perf_counter()
            ours(x, generator=torch.Generator().manual_seed(r))
            best["setforge"] = min(best["setforge"], time.perf_counter() - start)
            start = time.perf_counter()
            for clip in rows:
                theirs(samples=clip, sample_rate=RATE)
            best["audiomentations"] = min(best["audiomentations"], time.perf_counter() - start)
        results[name] = {"rows_per_s": {k: args.rows / v for k, v in best.items()},
                         "ratio": best["audiomentations"] / best["setforge"]}
        print(f"{name:11s} setforge {args.rows / best['setforge']:9.0f} rows/s   audiomentations "
              f"{args.rows / best['audiomentations']:9.0f} rows/s   ratio {results[name]['ratio']:.2f}x")
    report = {"rows": args.rows, "clip": "1 s at 16 kHz, mono", "rounds": args.rounds, "threads": 1,
              "audiomentations": am.__version__, "numpy": np.__version__, "torch": torch.__version__,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"load {os.getloadavg()[0]:.1f}", "target": "ratio >= 1 for gain, time-shift, noise-snr",
              "results": results}
    # ($SETFORGE_BENCH_RESULTS, set by benchmarks/run_all.py --quick, keeps quick figures apart)
    out = Path(os.environ.get("SETFORGE_BENCH_RESULTS") or Path(__file__).parent / "results") / "waveform.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(results[k]["ratio"] >= 1 for k in ("gain", "time-shift", "noise-snr")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
