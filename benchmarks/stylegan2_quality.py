"""Quality of ``stylegan2`` on scikit-learn's digits within a CPU budget: CAS with its defaults.

Digits through setforge's own source and split (stratified 60/10/30 train/val/test, as
``generate_quality.py``); ``stylegan2`` with its default params (``steps: auto``, DiffAugment on) fits on the real
training rows on one torch thread, then generates one row per real training row (the same
class counts). ``cas``: the share of generated rows that a CNN trained on the real training rows
(early-stopped on val; the shared ``cnn``) assigns to their requested class, at the default
``psi`` 1 (no truncation) and at each ``--psi`` given. ``cpu_s`` is ``time.process_time`` of fit
plus sampling (the CNN judge is not counted); ``wall_s`` its wall-clock time, which on a shared
machine says mostly how loaded it was.

    python benchmarks/stylegan2_quality.py [--seed 0] [--psi 0.7] [--cpu-minutes 10] [--json PATH]

Target: CAS >= 0.95 at psi 1 within ``--cpu-minutes`` CPU minutes; exit status 1 when missed.
Writes ``benchmarks/results/stylegan2_quality.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "stylegan2_quality.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--psi", type=float, action="append", default=[], help="also measure at this psi")
    parser.add_argument("--cpu-minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from setforge import StepContext
    from setforge.config import RunConfig
    from setforge.pipeline import run
    from setforge.plugins._shared.classifiers import train_classifier
    from setforge.plugins.generate.stylegan2 import StyleGAN2

    with tempfile.TemporaryDirectory(prefix="sg2q-") as folder:
        config = RunConfig.model_validate({"seed": args.seed, "device": "cpu", "source": {"name": "sklearn-digits"},
                                           "split": {"test": 0.3, "val": 0.1}, "pipeline": [], "evaluate": [],
                                           "output": {"dir": f"{folder}/run"}})
        result = run(config, progress=False)
        train, val, test = result.raw_train, result.val, result.test
        judge = train_classifier("cnn", train, val, args.seed, "cpu")
        reference = float((judge.predict(test.x) == test.y).double().mean())

        generator = StyleGAN2({"grid_every": 0})
        cpu, wall = time.process_time(), time.perf_counter()
        generator.fit(train, StepContext.from_seed(args.seed, workdir=f"{folder}/work"))
        generated = generator.sample(train.y, StepContext.from_seed(args.seed + 1))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        cas = {"1.0": float((judge.predict(generated.x) == generated.y).double().mean())}
        for psi in args.psi:
            generator.params = generator.params.model_copy(update={"psi": psi})
            rows = generator.sample(train.y, StepContext.from_seed(args.seed + 1))
            cas[str(psi)] = float((judge.predict(rows.x) == rows.y).double().mean())

    ok = cas["1.0"] >= 0.95 and cpu <= 60 * args.cpu_minutes
    record = {"benchmark": "generate/stylegan2-quality", "dataset": "digits (60/10/30)", "seed": args.seed,
              "torch_threads": torch.get_num_threads(), "params": "defaults", "steps": generator.result.iterations,
              "rows_train": len(train), "rows_generated": len(generated), "cas_by_psi": cas,
              "judge_test_accuracy": reference, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
              "target": f"cas >= 0.95 at psi 1 within {args.cpu_minutes:g} CPU minutes", "ok": ok}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"stylegan2 on digits, seed {args.seed}: {record['steps']} steps, CPU {cpu:.1f} s (wall {wall:.1f} s, "
          f"1 torch thread); CAS " + ", ".join(f"psi {p}: {v:.4f}" for p, v in cas.items())
          + f"; judge accuracy on real test {reference:.4f}; target {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
