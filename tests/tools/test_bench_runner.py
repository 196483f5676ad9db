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


def test_a_run_of_some_benchmarks_replaces_their_rows_and_keeps_the_others(tmp_path):
    run_all = _runner()
    table = tmp_path / "run_all.json"
    table.write_text(json.dumps({"conditions": {"load_average": [0.5, 0.4, 0.3]}, "load_average_end": [1.5, 1.0, 0.9],
                                 "rows": [{"benchmark": "augment", "status": "old"},
                                          {"benchmark": "resample", "status": "kept"},
                                          {"benchmark": "peer kornia", "status": "not installed"}]}))
    now = {"at": "2026-12-07T00:00:00Z", "load_average": [0.1, 0.2]}
    rows = [{"benchmark": "augment", "status": "new", "measured": now},
            {"benchmark": "generate", "status": "added", "measured": now}]
    merged = run_all.merged_rows(table, rows)
    assert [(r["benchmark"], r["status"]) for r in merged] == [("augment", "new"), ("resample", "kept"),
                                                                ("generate", "added")]
    assert merged[0]["measured"] == now and merged[1]["measured"] == {"load_average": [0.5, 1.5]}
    assert run_all.merged_rows(tmp_path / "none.json", rows) == rows
