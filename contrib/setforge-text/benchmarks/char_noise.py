"""Rows per second: setforge-text's keyboard-noise and ocr-noise vs nlpaug's KeyboardAug and OcrAug.

The same amounts on both sides (30% of the words of 4+ characters, 30% of their characters, at
most 10 of each; keyboard neighbours without upper case or special characters) and the same kind
of operation (OCR confusions come from each side's own table, which differ in some pairs),
on the plugin's sample sentences repeated to ``--rows`` rows, one CPU thread, the two sides
interleaved round by round so machine load hits both alike; the best round of each is kept.
Writes ``results/char_noise.json``; exits 1 when setforge is slower than nlpaug on an op
(target: ratio >= 1).

    pip install -e "contrib/setforge-text[bench]"; python contrib/setforge-text/benchmarks/char_noise.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from setforge_text.augment import KeyboardNoise, OcrNoise
from setforge_text.data import sample_rows

AMOUNTS = {"word_p": 0.3, "char_p": 0.3, "max_words": 10, "max_chars": 10, "min_length": 4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import nlpaug
    import nlpaug.augmenter.char as nac

    texts = [t for t, _ in sample_rows()] * (args.rows // len(sample_rows()) + 1)
    texts = texts[:args.rows]
    ops = {
        "keyboard-noise": (KeyboardNoise(AMOUNTS),
                           nac.KeyboardAug(aug_char_p=0.3, aug_word_p=0.3, aug_char_max=10, aug_word_max=10,
                                           min_char=4, include_special_char=False, include_upper_case=False,
                                           include_numeric=True)),
        "ocr-noise": (OcrNoise(AMOUNTS), nac.OcrAug(aug_char_p=0.3, aug_word_p=0.3, aug_char_max=10,
                                                    aug_word_max=10, min_char=4)),
    }
    results = {}
    for name, (ours, theirs) in ops.items():
        best = {"setforge": float("inf"), "nlpaug": float("inf")}
        for r in range(args.rounds):
            start = time.perf_counter()
            out = ours(texts, generator=torch.Generator().manual_seed(r))
            best["setforge"] = min(best["setforge"], time.perf_counter() - start)
            start = time.perf_counter()
            other = theirs.augment(texts)
            best["nlpaug"] = min(best["nlpaug"], time.perf_counter() - start)
        changed = {"setforge": sum(a != b for a, b in zip(out, texts)) / len(texts),
                   "nlpaug": sum(a != b for a, b in zip(other, texts)) / len(texts)}
        results[name] = {"rows_per_s": {k: args.rows / v for k, v in best.items()},
                         "ratio": best["nlpaug"] / best["setforge"], "rows_changed": changed}
        print(f"{name:15s} setforge {args.rows / best['setforge']:9.0f} rows/s   nlpaug "
              f"{args.rows / best['nlpaug']:9.0f} rows/s   ratio {results[name]['ratio']:.2f}x   "
              f"rows changed {changed['setforge']:.2f} / {changed['nlpaug']:.2f}")
    report = {"rows": args.rows, "rounds": args.rounds, "threads": 1, "nlpaug": nlpaug.__version__,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"load {os.getloadavg()[0]:.1f}", "target": "ratio >= 1", "results": results}
    # ($SETFORGE_BENCH_RESULTS, set by benchmarks/run_all.py --quick, keeps quick figures apart)
    out = Path(os.environ.get("SETFORGE_BENCH_RESULTS") or Path(__file__).parent / "results") / "char_noise.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["ratio"] >= 1 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
