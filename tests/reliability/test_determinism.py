"""Determinism on the CPU: the same run file and seed give byte-identical data files and
report.json (which holds the metrics; timings live apart in timings.json), in every output
format; and a GAN run SIGKILLed in the middle of training and continued with ``--resume`` ends
with the same bytes as one that was never interrupted (its checkpoint holds the networks, the
optimisers, the EMA weights and every RNG state). What CUDA cannot promise is in
docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from setforge.tools.cli import main

REPO = Path(__file__).resolve().parents[2]
HOOKS = str(Path(__file__).with_name("_fault_hooks.py"))
APART = ("timings.json", "report.html")  # wall-clock times, and the page that shows them


def _plain(value: Any) -> Any:
    """A checkpoint's contents as nested plain values (tensors as their bytes), for comparison."""
    import torch

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return (str(value.dtype), tuple(value.shape), value.contiguous().cpu().numpy().tobytes())
    return value


def files_of(folder: Path, without_resumed: bool = False) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name in APART:
            continue
        data = path.read_bytes()
        if without_resumed and path.name == "report.json":  # a resume says which steps it reused
            report = json.loads(data)
            for step in report["steps"]:
                step.pop("resumed")
                (step.get("training") or {}).pop("resumed_from", None)  # and where training went on from
            data = json.dumps(report, sort_keys=True).encode()
        if without_resumed and path.name.startswith("training-") and path.suffix == ".pt":
            # a checkpoint written after a resume holds the same values; torch.save may lay out
            # storages loaded from disk differently, so compare what it holds, not its bytes
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
            data = repr(_plain(state)).encode()
        out[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def run_in(folder: Path, config: dict[str, Any], *extra: str) -> Path:
    """``setforge run`` in `folder` (in process), the run file and relative output.dir there."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.yaml").write_text(yaml.safe_dump(config))
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        code = main(["run", "run.yaml", "--quiet", "-p", HOOKS, *extra])
    finally:
        os.chdir(cwd)
    assert code == 0
    return folder / "out"


CONFIGS = {
    "npz": {"source": "sklearn-wine", "pipeline": [{"resample": "smote"}, {"resample": "random-under"}],
            "evaluate": ["balance", {"name": "utility", "params": {"epochs": 5}}],
            "output": {"dir": "out", "format": "npz", "shard_rows": 50}},
    "csv": {"source": "sklearn-breast-cancer", "preprocess": ["standardize"], "pipeline": [{"resample": "smote"}],
            "evaluate": ["balance"], "output": {"dir": "out", "format": "csv"}},
    "image-folder": {"source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
                     "pipeline": [{"augment": "flip", "minority": True}, {"resample": "random-over"}],
                     "evaluate": ["balance"], "output": {"dir": "out", "format": "image-folder"}},
}


@pytest.mark.parametrize("fmt", list(CONFIGS))
def test_same_file_and_seed_give_byte_identical_data_and_metrics(tmp_path, monkeypatch, fmt):
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    config = {"seed": 3, "device": "cpu", "split": {"test": 0.2, "val": 0.1}, **CONFIGS[fmt]}
    first = files_of(run_in(tmp_path / "a", config))
    second = files_of(run_in(tmp_path / "b", config))
    assert first == second
    assert "report.json" in first and len(first) > 4
    report = json.loads((tmp_path / "a" / "out" / "report.json").read_text())
    assert report["metrics"]["measures"]["balance"]  # the metrics are among what is compared
    assert set(report["files"]) <= set(first)  # every data file the report lists was compared
    if fmt == "npz":  # and the seed matters
        other = files_of(run_in(tmp_path / "c", {**config, "seed": 4}))
        assert other["report.json"] != first["report.json"] and other["train-00000.npz"] != first["train-00000.npz"]


# ------------------------------------------------------------------------------ resume
GAN = {"seed": 0, "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
       "split": {"test": 0.2, "val": 0.1},
       "pipeline": [{"generate": "dcgan", "guard": "off", "params": {"steps": 40, "checkpoint_every": 10, "log_every": 5,
                                                     "grid_every": 20, "batch_size": 32, "width": 4,
                                                     "latent_dim": 8, "embedding_dim": 4}, "per_class": 60}],
       "evaluate": ["balance"], "output": {"dir": "out"}}


def test_a_gan_run_killed_in_training_resumes_from_its_checkpoint_to_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "run.yaml").write_text(yaml.safe_dump(GAN))
    env = {k: v for k, v in os.environ.items() if k != "SETFORGE_DISABLE_PLUGINS"}
    env.update(PYTHONPATH=str(REPO), SETFORGE_TEST_KILL_AT_ITERATION="25")
    process = subprocess.run([sys.executable, "-m", "setforge", "run", "run.yaml", "--quiet", "-p", HOOKS],
                             cwd=killed, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr  # killed in the middle of training
    workdir = killed / "out.partial" / "steps" / "00-generate-dcgan"
    assert sorted(p.name for p in workdir.glob("training-*.pt")) == ["training-00000020.pt"]
    assert not (killed / "out").exists()

    events = tmp_path / "events.txt"
    monkeypatch.setenv("SETFORGE_TEST_EVENTS", str(events))
    resumed = run_in(killed, GAN, "--resume")
    progress = [int(line.split()[1]) for line in events.read_text().splitlines() if line.startswith("train_progress")]
    assert progress[0] == 25 and progress[-1] == 40  # it went on from iteration 20, not from the start
    monkeypatch.delenv("SETFORGE_TEST_EVENTS")

    uninterrupted = run_in(tmp_path / "fresh", GAN)
    a, b = files_of(resumed, without_resumed=True), files_of(uninterrupted, without_resumed=True)
    assert a == b
    assert any(re.fullmatch(r"train-\d{5}\.npz", name) for name in a)
    assert "steps/00-generate-dcgan/generator.pt" in a  # the trained generator itself, byte for byte
    report = json.loads((resumed / "report.json").read_text())
    assert report["counts"]["optimised"]["by_origin"]["generated"] > 0
