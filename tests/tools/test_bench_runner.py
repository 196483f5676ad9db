"""benchmarks/run_all.py: a missing peer is a row, not a crash; a script's exit status and JSON
become its row and its results file with the conditions."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


def _runner():
    spec = importlib.util.spec_from_file_location("run_all", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missing_peer_gives_a_not_installed_row_without_running(tmp_path):
    run_all = _runner()
    spec = {"script": "benchmarks/nothing.py", "full": [], "quick": [], "vs": "x", "needs": ["no_such_peer_pkg"]}
    row = run_all.run_script("x", spec, argparse.Namespace(quick=True, timeout=5), tmp_path, "cpu")
    assert row["status"] == "not installed: no_such_peer_pkg" and row["rc"] is None
    assert list(tmp_path.iterdir()) == []


def test_a_missed_target_is_its_exit_status_and_the_results_hold_the_conditions(tmp_path):
    run_all = _runner()
    script = tmp_path / "fake.py"
    script.write_text("import json, sys\nprint(json.dumps({'ratio': 0.5, 'targets_missed': ['ratio < 1']}))\n"
                      "sys.exit(1)\n")
    spec = {"script": str(script), "full": [], "quick": [], "vs": "peer"}
    row = run_all.run_script("fake", spec, argparse.Namespace(quick=True, timeout=60), tmp_path, "cpu")
    assert row["rc"] == 1 and row["status"] == "TARGET MISSED: ratio < 1" and row["figures"] == "ratio=0.5"
    record = json.loads((tmp_path / "bench-fake.json").read_text())
    assert record["result"]["ratio"] == 0.5 and record["mode"] == "quick"
    assert record["conditions_before"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "torch" in record["conditions_before"]["versions"] and len(record["load_average_after"]) == 3
