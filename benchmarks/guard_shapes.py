"""Issue 25's table re-measured with the new defaults: a procedural 32x32 RGB set of five shapes
(benchmarks/_shapes.py; train long-tailed 50:1, 400 rows down to 8; val 20 and test 100 per
class, balanced), through ``setforge run`` files: ``smote``, ``augment: [flip, affine, color]``
(copies 3, minority) and ``generate: dcgan`` (``target: balance``, default params: ``steps:
auto``), each scored by ``utility`` (``model: cnn, repeats: 3``: macro-F1 mean and std on the real
test split, raw and optimised, and the per-class recall, the smallest class ``ring``). The dcgan
run also gives its guard verdict (the host's CAS check), its budget and why. Two more lines:
``digits`` (long-tailed digits, dcgan with defaults) and ``wine`` (tabular-gan with defaults).
CPU time: ``time.process_time`` of the child ``setforge run`` (children's user+sys), torch on one
thread (``OMP_NUM_THREADS=1``; the GAN loop itself runs one thread for small models).

    python benchmarks/guard_shapes.py [--only dcgan,smote,...] [--json PATH]

Writes ``benchmarks/results/guard_shapes.json`` after every run (a stopped run keeps what it
measured). Exit 1 when the dcgan default neither helps nor is stopped by its guard.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results" / "guard_shapes.json"
UTILITY = {"name": "utility", "params": {"model": "cnn", "repeats": 3}}

RUNS = {
    "smote": {"data": "shapes", "pipeline": [{"resample": "smote"}]},
    "augment": {"data": "shapes", "pipeline": [{"augment": ["flip", "affine", "color"], "copies": 3, "minority": True}]},
    "dcgan": {"data": "shapes", "pipeline": [{"generate": "dcgan", "target": "balance"}]},
    "digits-dcgan": {"data": "digits", "pipeline": [{"generate": "dcgan", "target": "balance"}],
                     "evaluate": [{"name": "cas"}, {"name": "utility", "params": {"model": "logistic-regression",
                                                                                  "repeats": 3}}]},
    "wine-tabular-gan": {"data": "wine", "pipeline": [{"generate": "tabular-gan", "target": "balance"}],
                         "evaluate": [{"name": "tstr"}, {"name": "utility", "params": {"model": "mlp", "repeats": 3}}]},
}


def _source(data: str, work: Path) -> dict:
    if data == "shapes":
        from _shapes import write_shapes

        return {"name": "npz", "params": {"path": str(write_shapes(work / "shapes.npz"))}}
    if data == "digits":
        return {"name": "sklearn-digits", "params": {"imbalance": 10}}
    return {"name": "sklearn-wine"}


def _flat(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flat(v, f"{prefix}/{k}" if prefix else str(k))
    else:
        yield prefix, value


def measure(name: str, work: Path) -> dict:
    spec = RUNS[name]
    out = work / name
    config = {"seed": 0, "device": "cpu", "source": _source(spec["data"], work), "pipeline": spec["pipeline"],
              "evaluate": spec.get("evaluate", [UTILITY]), "output": {"dir": str(out)}}
    if spec["data"] != "shapes":
        config["split"] = {"val": 0.1}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([str(Path(sys.executable).with_name("setforge")), "run", str(path)], env=env,
                          capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = {"run": name, "exit": proc.returncode, "wall_s": round(time.time() - started, 1),
           "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
           "stderr_tail": proc.stderr.strip().splitlines()[-3:]}
    report_path = out / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        step = report["steps"][0]
        row["budget"] = (step.get("training") or {}).get("budget")
        row["guard"] = step.get("guard")
        row["metrics"] = {k: v for k, v in _flat(report.get("metrics", {}))
                          if any(w in k for w in ("macro_f1", "recall/ring", "minority_recall", "cas", "tstr"))}
        row["headline"] = report.get("headline")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(RUNS))
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/guard_shapes"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = json.loads(args.json.read_text()).get("runs", {}) if args.json.is_file() else {}
    for name in args.only.split(","):
        rows[name] = measure(name, args.work)
        print(json.dumps(rows[name]), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "guard_shapes", "load_average": os.getloadavg(),
                                         "cpus": os.cpu_count(), "runs": rows}, indent=1) + "\n")
    dcgan = rows.get("dcgan")
    return 1 if dcgan and dcgan["exit"] == 0 and not (dcgan.get("guard") or {}).get("passed", True) else 0


if __name__ == "__main__":
    sys.exit(main())
