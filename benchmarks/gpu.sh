#!/usr/bin/env bash
# The GPU set of the benchmarks: augment, resample, evaluate and generate with --device cuda, at the
# quick sizes (under 8 minutes on one GPU; each script is capped at 150 s). Results go to
# benchmarks/results/quick/bench-NAME-cuda.json and the table to run_all.json beside them.
# Not run on the development machine (no GPU there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
exec timeout 470 "$PY" benchmarks/run_all.py --gpu --quick --only augment,resample,evaluate,generate --timeout 150 "$@"
