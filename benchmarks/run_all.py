"""Every benchmark under ``benchmarks/`` (and the contrib ones) through one runner, and one table.

Each script runs in its own subprocess (its own exit status: non-zero when a target is missed),
with ``--quick`` at small sizes and few repeats (the whole table in a few minutes on two loaded
cores; the quality runs, which need minutes of training, are skipped there), else at its full
defaults. A script whose peer package is not installed gets a ``not installed`` row instead of a
run. With CUDA present the scripts that can use a GPU run again with ``--device cuda`` (``--gpu``
runs only those: ``benchmarks/gpu.sh``). The CLI start-up row times ``setforge --help`` against
``python -c pass`` and ``python -m pip --help``, interleaved.

Every run writes ``benchmarks/results/bench-NAME.json`` (``results/quick/`` with ``--quick``):
the command, exit status, seconds, the script's own JSON, and the conditions (python, torch,
numpy and peer versions, threads, load average before and after). The table goes to
``run_all.json`` beside them, each row with when it was measured and the load around it; a run
of some benchmarks (``--only``, ``--gpu``) replaces their rows in the table and keeps the others.
Exit status 1 when any script missed a target or failed (of this run's rows).

    python benchmarks/run_all.py [--quick] [--gpu] [--only augment,evaluate] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = ("torch", "torchvision", "numpy", "kornia", "albumentations", "imbalanced-learn", "scikit-learn", "scipy",
         "ctgan", "audiomentations", "nlpaug", "webdataset")


# name: (script, full args, quick args or None (skipped in --quick), peers it needs, peers it compares when present,
#        takes --device cuda, where it writes its own results (None: its --json stdout))
SCRIPTS: dict[str, dict[str, Any]] = {
    "augment": {"script": "benchmarks/augment.py", "full": ["--json"],
                "quick": ["--json", "--repeats", "1", "--no-policies", "--pixel-size", "64", "32"],
                "vs": "torchvision loop, kornia, albumentations", "optional": ["kornia", "albumentations"], "gpu": True},
    "resample": {"script": "benchmarks/resample.py", "full": ["--json"],
                 "quick": ["--json", "--sizes", "5000", "--repeat", "1", "--timeout", "120"],
                 "vs": "imbalanced-learn", "needs": ["imblearn"], "gpu": True},
    "evaluate": {"script": "benchmarks/evaluate.py", "full": ["--json"],
                 "quick": ["--json", "--n", "3000", "--dim", "2048", "--repeats", "1"],
                 "vs": "reference FID formula (scipy sqrtm)", "needs": ["scipy"], "gpu": True},
    "generate": {"script": "benchmarks/generate.py", "full": ["--json", "--device", "cpu"],
                 "quick": ["--json", "--device", "cpu", "--steps", "500", "--warmup", "0", "--batch", "8",
                           "--size", "16"],
                 "vs": "bare PyTorch GAN loop", "gpu": True},
    "shared_cache": {"script": "benchmarks/shared_cache.py", "full": ["--json"],
                     "quick": ["--json", "--epochs", "5", "--repeats", "1"], "vs": "no shared cache"},
    "char_noise": {"script": "contrib/setforge-text/benchmarks/char_noise.py", "full": [],
                   "quick": ["--rows", "300", "--rounds", "1"], "vs": "nlpaug", "needs": ["nlpaug", "setforge_text"]},
    "waveform": {"script": "contrib/setforge-audio/benchmarks/waveform.py", "full": [],
                 "quick": ["--rows", "32", "--rounds", "1"], "vs": "audiomentations",
                 "needs": ["audiomentations", "setforge_audio"]},
    "tabular_quality": {"script": "benchmarks/tabular_quality.py", "full": [], "quick": None, "vs": "ctgan",
                        "needs": ["ctgan"], "writes": "tabular_quality.json"},
    "generate_quality": {"script": "benchmarks/generate_quality.py", "full": [], "quick": None,
                         "vs": "gaussian-mixture baseline", "writes": "generate_quality.json"},
    "stylegan2_quality": {"script": "benchmarks/stylegan2_quality.py", "full": [], "quick": None,
                          "vs": "real-data judge", "writes": "stylegan2_quality.json"},
    "evidence": {"script": "benchmarks/evidence.py", "full": [], "quick": None, "vs": "raw training set",
                 "writes": "evidence.json"},
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def conditions() -> dict[str, Any]:
    """What the numbers depend on: versions, threads, CPUs, load, GPU."""
    import torch

    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "platform": platform.platform(),
            "versions": {name: v for name in PEERS if (v := _version(name)) is not None},
            "not_installed": [name for name in PEERS if _version(name) is None],
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
            "cuda": torch.cuda.get_device_name(0) if cuda else None}


def _json_from(text: str) -> Any:
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def figures(name: str, result: Any) -> str:
    """A short side-by-side summary of a script's JSON: its ratios, speed-ups and overheads."""
    if not isinstance(result, dict):
        return ""
    if name == "augment":
        parts = [f"{row['batch'][2]}px " + ", ".join(f"{peer} {ratio:.2f}x" for peer, ratio in row["ratio"].items())
                 for row in result.get("chain", [])]
        pixel = [row["ratio"] for row in result.get("pixel", [])]
        if pixel:
            parts.append(f"pixel ops {min(pixel):.1f}-{max(pixel):.1f}x loop")
        if "grad_mode" in result:
            parts.append(f"grad mode {result['grad_mode']['time_ratio_grad_over_no_grad']:.2f}x")
        return "; ".join(parts)
    if name == "evidence":  # which pipelines beat the raw rows beyond the test rows' and seeds' noise
        parts = []
        for imbalance, rows in sorted(result.get("longtail", {}).items()):
            beyond = [f"{label} {change['value']:+.3f}" for label, row in rows.items() if not label.startswith("_")
                      and (change := ((row.get("lr") or {}).get("paired_change") or {}).get("balanced_accuracy"))
                      and change.get("interval") and change["interval"][0] > 0]
            parts.append(f"imbalance {imbalance}: lr balanced accuracy above raw beyond noise: "
                         + (", ".join(beyond) or "none"))
        return "; ".join(parts)
    if name == "resample":
        return "; ".join(f"N={n}: " + ", ".join(f"{m} {v['time']:.2f}x imblearn's time" for m, v in row.items())
                         for n, row in result.get("ratios_vs_imblearn", {}).items())
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node[:6]):
                label = node[i].get("method") if isinstance(value, dict) else None
                walk(value, f"{path}[{label or i}]")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            leaf = path.rsplit(".", 1)[-1].lower()
            if any(word in leaf for word in ("ratio", "speedup", "overhead", "cas", "accuracy", "gain")) \
                    and "target" not in path.lower():
                found.append(f"{path}={node:.3g}")

    walk(result, "")
    return "; ".join(found[:6])


def run_script(name: str, spec: dict[str, Any], args: argparse.Namespace, out: Path, device: str) -> dict[str, Any]:
    row: dict[str, Any] = {"benchmark": name if device == "cpu" else f"{name} (cuda)", "vs": spec["vs"]}
    missing = [m for m in spec.get("needs", []) if importlib.util.find_spec(m) is None]
    if missing:
        return {**row, "status": f"not installed: {', '.join(missing)}", "rc": None, "seconds": 0.0}
    extra = spec["quick"] if args.quick else spec["full"]
    if extra is None:
        return {**row, "status": "skipped in --quick (minutes of training; run make bench)", "rc": None, "seconds": 0.0}
    command = [sys.executable, str(ROOT / spec["script"]), *extra]
    if device != "cpu":
        if "--device" in command:
            at = command.index("--device")
            del command[at:at + 2]
        command += ["--device", device]
    before = conditions()
    started = time.perf_counter()
    try:
        env = {**os.environ, "SETFORGE_BENCH_RESULTS": str(out)} if args.quick else None
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout, env=env)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as error:
        rc, stdout, stderr = None, error.stdout or "", f"timed out after {args.timeout} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    seconds = time.perf_counter() - started
    result = _json_from(stdout)
    if result is None and spec.get("writes") and (HERE / "results" / spec["writes"]).is_file():
        result = json.loads((HERE / "results" / spec["writes"]).read_text())
    status = "ok" if rc == 0 else ("timed out" if rc is None else "TARGET MISSED" if rc == 1 else f"failed (exit {rc})")
    missed = result.get("targets_missed") if isinstance(result, dict) else None
    if missed:
        status += ": " + "; ".join(missed)[:120]
    record = {"command": command[1:], "mode": "quick" if args.quick else "full", "device": device, "rc": rc,
              "seconds": round(seconds, 1), "status": status, "conditions_before": before,
              "load_average_after": list(os.getloadavg()), "result": result,
              "output_tail": None if result is not None else stdout[-4000:], "stderr_tail": stderr[-4000:]}
    suffix = "" if device == "cpu" else "-cuda"
    (out / f"bench-{name}{suffix}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    text_figures = figures(name, result) or (stdout.strip().splitlines() or [""])[-1][:160]
    return {**row, "status": status, "rc": rc, "seconds": round(seconds, 1), "figures": text_figures}


def cli_startup(repeats: int) -> dict[str, Any]:
    """Median wall seconds of ``setforge --help`` against ``python -c pass`` and ``pip --help``, interleaved."""
    setforge = shutil.which("setforge", path=str(Path(sys.executable).parent)) or "setforge"
    commands = {"setforge --help": [setforge, "--help"], "python -c pass": [sys.executable, "-c", "pass"],
                "pip --help": [sys.executable, "-m", "pip", "--help"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=False)
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"benchmark": "cli start-up", "vs": "python -c pass, pip --help", "status": "ok", "rc": 0,
            "seconds": round(sum(sum(t) for t in times.values()), 1), "median_s": median,
            "figures": f"setforge --help {median['setforge --help']:.2f}s = "
                       f"{median['setforge --help'] / median['python -c pass']:.1f}x python -c pass, "
                       f"{median['setforge --help'] / median['pip --help']:.2f}x pip --help"}


def merged_rows(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the table at `path` with `rows` in place of their namesakes (new ones at the
    end); the peer rows are this run's. Rows from earlier runs keep their own ``measured``."""
    try:
        table = json.loads(path.read_text())
        load = [table["conditions"]["load_average"][0], table["load_average_end"][0]]
        earlier = [{"measured": {"load_average": load}, **row} for row in table["rows"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        earlier = []
    fresh = {row["benchmark"]: row for row in rows}
    merged = [fresh.pop(row["benchmark"], row) for row in earlier if not row["benchmark"].startswith("peer ")
              or row["benchmark"] in fresh]
    return merged + list(fresh.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats; quality runs skipped")
    parser.add_argument("--gpu", action="store_true", help="only the GPU rows (needs CUDA)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script (default: 600 quick, 7200 full)")
    args = parser.parse_args(argv)
    args.timeout = args.timeout or (600.0 if args.quick else 7200.0)
    import torch

    out = HERE / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; known: {', '.join(SCRIPTS)}")
    start = conditions()
    rows: list[dict[str, Any]] = []
    if args.gpu and not torch.cuda.is_available():
        print("--gpu: CUDA is not available here", file=sys.stderr)
        return 2
    if not args.gpu:
        rows.append(cli_startup(3 if args.quick else 10))
        for name in names:
            rows.append(run_script(name, SCRIPTS[name], args, out, "cpu"))
            print(f"  {rows[-1]['benchmark']}: {rows[-1]['status']} ({rows[-1]['seconds']} s)", file=sys.stderr)
    if torch.cuda.is_available():
        for name in (n for n in names if SCRIPTS[n].get("gpu")):
            rows.append(run_script(name, SCRIPTS[name], args, out, "cuda"))
            print(f"  {rows[-1]['benchmark']}: {rows[-1]['status']} ({rows[-1]['seconds']} s)", file=sys.stderr)
    for peer in ("kornia", "albumentations", "ctgan", "audiomentations", "nlpaug"):
        if _version(peer) is None:
            extra = {"nlpaug": "contrib/setforge-text[bench]", "audiomentations": "contrib/setforge-audio[bench]"}
            rows.append({"benchmark": f"peer {peer}", "vs": "-",
                         "status": f"not installed (pip install -e \"{extra.get(peer, '.[bench]')}\")",
                         "rc": None, "seconds": 0.0, "figures": "rows against it skipped"})
    end = list(os.getloadavg())
    measured = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average": [start["load_average"][0], end[0]]}
    rows = [{**row, "measured": measured} for row in rows]
    table = {"mode": "quick" if args.quick else "full", "conditions": start, "load_average_end": end,
             "rows": merged_rows(out / "run_all.json", rows) if args.only or args.gpu else rows}
    (out / "run_all.json").write_text(json.dumps(table, indent=2, default=str) + "\n")
    print(f"setforge benchmarks ({table['mode']}), python {start['python']}, torch {start['versions'].get('torch')}, "
          f"{start['torch_threads']} torch threads on {start['cpus']} CPUs, load average "
          f"{start['load_average'][0]:.2f} -> {end[0]:.2f}, GPU {start['cuda'] or 'none'}")
    widths = (20, min(60, max(len(r["status"]) for r in rows)), 7)
    print(f"{'benchmark':{widths[0]}} {'status':{widths[1]}} {'sec':>{widths[2]}}  side by side (setforge vs peer)")
    for row in rows:
        print(f"{row['benchmark'][:widths[0]]:{widths[0]}} {row['status'][:widths[1]]:{widths[1]}} "
              f"{row['seconds']:>{widths[2]}.1f}  {row.get('figures', '')}  [vs {row['vs']}]")
    print(f"results: {out}")
    failed = [r for r in rows if r["rc"] not in (0, None) or r["status"] == "timed out"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
