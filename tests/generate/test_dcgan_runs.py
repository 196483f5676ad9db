"""``generate: dcgan`` from a run file on digits: every generation key, cas in the report, and a
killed ``setforge run`` continued with ``--resume``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from setforge import Origin
from setforge.config import RunConfig
from setforge.pipeline import run
from setforge.registry import Registry

REPO = Path(__file__).resolve().parents[2]
# monitor off: these tests are about the generation keys and kill/resume, not the per-checkpoint measurements
# (tests/generate/test_gan_data_efficient.py and test_generators_swap.py cover those)
TINY = {"steps": 8, "width": 8, "latent_dim": 8, "embedding_dim": 4, "batch_size": 32, "grid_every": 0,
        "monitor": False}


@pytest.fixture(scope="module")
def registry():
    return Registry(use_env=False).load()


def _config(tmp_path: Path, pipeline: list[dict], evaluate: list | None = None, name: str = "run") -> dict:
    return {"seed": 0, "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 4}},
            "split": {"val": 0.1}, "pipeline": pipeline, "evaluate": evaluate or [],
            "output": {"dir": str(tmp_path / name)}}


def _run(tmp_path, registry, pipeline, **kwargs):
    return run(RunConfig.model_validate(_config(tmp_path, pipeline, **kwargs)), registry, progress=False)


@pytest.mark.parametrize(("keys", "expected"), [
    ({"target": "balance"}, lambda real: [max(real) - r for r in real]),
    ({"per_class": 100}, lambda real: [max(0, 100 - r) for r in real]),
    ({"multiply": 0.5}, lambda real: [int(np.floor(0.5 * r + 0.5)) for r in real]),
    ({"classes": ["8", "9"], "target": "balance"}, lambda real: [0] * 8 + [max(real) - r for r in real[8:]]),
])
def test_each_generation_key(tmp_path, registry, keys, expected):
    result = _run(tmp_path, registry, [{"generate": "dcgan", "guard": "off", "params": TINY, **keys}])
    train = result.train
    real = train.class_counts(Origin.REAL)
    generated = train[train.origin == int(Origin.GENERATED)]
    assert generated.class_counts() == expected(real)
    assert bool((generated.parent == -1).all()) and bool((generated.step == 0).all())
    assert float(generated.x.min()) >= 0 and float(generated.x.max()) <= 1
    step_dir = tmp_path / "run" / "steps" / "00-generate-dcgan"
    assert (step_dir / "generator.pt").is_file()


def test_fit_on_all_after_a_resampler_and_cas_in_the_report(tmp_path, registry):
    result = _run(tmp_path, registry, [{"resample": "random-over"},
                                       {"generate": "dcgan", "guard": "off", "params": TINY, "per_class": 130, "fit_on": "all"}],
                  evaluate=[{"name": "cas", "params": {"model": "mlp", "epochs": 5, "patience": 2}}])
    counts = result.train.class_counts()
    assert counts == [130] * 10
    measures = result.report["metrics"]["measures"]["cas"]
    assert measures["overall"]["n"] == int((result.train.origin == int(Origin.GENERATED)).sum())
    assert 0.0 <= measures["overall"]["value"] <= 1.0


def test_a_saved_generator_is_reused_with_the_checkpoint_param(tmp_path, registry):
    first = _run(tmp_path, registry, [{"generate": "dcgan", "guard": "off", "params": TINY, "target": "balance"}], name="first")
    saved = tmp_path / "first" / "steps" / "00-generate-dcgan" / "generator.pt"
    second = _run(tmp_path, registry, [{"generate": "dcgan", "guard": "off", "params": {**TINY, "checkpoint": str(saved)},
                                        "target": "balance"}], name="second")
    # loaded, not trained: no training checkpoints, and the generator it saves is the one it was given
    assert not list((tmp_path / "second" / "steps" / "00-generate-dcgan").glob("training-*.pt"))
    given = torch.load(saved, weights_only=True)["state"]["generator"]
    kept = torch.load(tmp_path / "second" / "steps" / "00-generate-dcgan" / "generator.pt", weights_only=True)
    assert all(torch.equal(given[k], v) for k, v in kept["state"]["generator"].items())
    assert second.train.class_counts() == first.train.class_counts()


_PAUSE_PLUGIN = textwrap.dedent("""
    import os, time
    from setforge import hookimpl

    @hookimpl
    def setforge_on_event(event):
        pause_at = os.environ.get("DCGAN_TEST_PAUSE_AT")
        if pause_at and event.kind == "train_progress" and event.data["iteration"] >= int(pause_at):
            print("paused", flush=True)
            time.sleep(300)  # the test kills the run here, mid-training
""")


@pytest.mark.slow
def test_a_killed_run_continues_with_resume_to_the_uninterrupted_result(tmp_path, registry):
    params = {**TINY, "steps": 30, "checkpoint_every": 10, "log_every": 5}
    (tmp_path / "pause.py").write_text(_PAUSE_PLUGIN)
    config = _config(tmp_path, [{"generate": "dcgan", "guard": "off", "params": params, "target": "balance"}], name="killed")
    config["plugins"] = ["pause.py"]
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(config))
    threads = str(torch.get_num_threads())
    env = {**os.environ, "OMP_NUM_THREADS": threads, "DCGAN_TEST_PAUSE_AT": "25"}
    command = [sys.executable, "-c", f"import torch, sys; torch.set_num_threads({threads}); "
                                     "from setforge.tools.cli import main; sys.exit(main(sys.argv[1:]))",
               "run", str(run_file)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 180
        for line in child.stdout:
            if line.strip() == "paused" or time.monotonic() > deadline:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    partial = tmp_path / "killed.partial" / "steps" / "00-generate-dcgan"
    assert [p.name for p in partial.glob("training-*.pt")] == ["training-00000020.pt"]
    assert not (tmp_path / "killed").exists()

    del env["DCGAN_TEST_PAUSE_AT"]
    resumed = subprocess.run(command + ["--resume"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    _run(tmp_path, registry, [{"generate": "dcgan", "guard": "off", "params": params, "target": "balance"}],
         name="straight")
    with np.load(tmp_path / "killed" / "train-00000.npz") as got, np.load(tmp_path / "straight" / "train-00000.npz") as want:
        assert np.array_equal(got["x"], want["x"]) and np.array_equal(got["y"], want["y"])
        assert int((got["origin"] == "generated").sum()) > 0
