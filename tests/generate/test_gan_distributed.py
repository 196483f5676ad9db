"""The shared GAN loop under torch.distributed (gloo, 2 CPU processes, one thread each).

- the loop itself, in two processes started with ``torch.multiprocessing.spawn``: after training
  with DistributedDataParallel every rank holds the same weights (gradients averaged), each rank
  trained on its own slice of the batches, and only rank 0 wrote checkpoints;
- ``torchrun --nproc-per-node 2 -m setforge run FILE``: the counts match a single-process run of
  the same file and exactly one run folder is written (rank 0's), nothing by the other rank.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from setforge import SetforgeError, StepContext, distributed
from setforge.config import RunConfig
from setforge.dataset import Dataset
from setforge.pipeline import run
from setforge.plugins.generate.dcgan import DCGAN
from setforge.plugins.generate.wgan_gp import WGANGP
from setforge.registry import Registry
from tests._torchrun import free_port, launch, torchrun

TINY = {"steps": 6, "width": 8, "latent_dim": 8, "embedding_dim": 4, "batch_size": 16, "grid_every": 0,
        "monitor": False, "checkpoint_every": 4}


def _digits(n: int = 120) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images[:n] / 16.0, dtype=torch.float32)[:, None]
    return Dataset(x=x, y=torch.as_tensor(digits.target[:n]), classes=[str(c) for c in range(10)], modality="image")


def _train_on_rank(rank: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    distributed.setup(torch.device("cpu"))
    ds = _digits()
    for cls, extra in ((DCGAN, {}), (WGANGP, {"critic_steps": 2, "diff_augment": ["translation"]})):
        component = cls(cls.Params(**TINY, **extra))
        workdir = Path(out) / f"rank{rank}-{component.name}"
        ctx = StepContext.from_seed(0, workdir=workdir)
        with distributed.collective():
            component.fit(ds, ctx)
        result = component.result
        torch.save({"generator": {k: v.clone() for k, v in result.sampler.state_dict().items()},
                    "distributed": result.distributed, "checkpoints": sorted(p.name for p in workdir.glob("*.pt"))},
                   Path(out) / f"{component.name}-{rank}.pt")
    distributed.finish()


def test_ranks_hold_the_same_weights_after_ddp_training(tmp_path):
    torch.multiprocessing.spawn(_train_on_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for name in ("dcgan", "wgan-gp"):
        ranks = [torch.load(tmp_path / f"{name}-{r}.pt", weights_only=True) for r in (0, 1)]
        assert ranks[0]["distributed"] == ranks[1]["distributed"] == {"world_size": 2, "rows_per_rank": 16}
        for key, value in ranks[0]["generator"].items():
            assert torch.equal(value, ranks[1]["generator"][key]), f"{name}: {key} differs between ranks"
        # rank 0 alone writes checkpoints (one at step 4 replaced by the final one)
        assert ranks[0]["checkpoints"] == ["training-00000006.pt"] and ranks[1]["checkpoints"] == []
        # the same seed on one process trains on the whole batch, so DDP's weights are its own
        single = (DCGAN if name == "dcgan" else WGANGP)
        extra = {} if name == "dcgan" else {"critic_steps": 2, "diff_augment": ["translation"]}
        component = single(single.Params(**TINY, **extra))
        ctx = StepContext.from_seed(0, workdir=tmp_path / f"single-{name}")
        component.fit(_digits(), ctx)
        alone = component.result.sampler.state_dict()
        assert any(not torch.equal(v, alone[k]) for k, v in ranks[0]["generator"].items() if v.is_floating_point())


RUN_FILE = {
    "seed": 0, "device": "cpu",
    "source": {"name": "sklearn-digits", "params": {"imbalance": 4}},
    "split": {"val": 0.1},
    "pipeline": [{"augment": "flip", "classes": ["0", "1"], "copies": 1},
                 {"generate": "dcgan", "target": "balance", "guard": "off", "params": TINY}],
    "evaluate": ["balance"],
}


@pytest.mark.parametrize("nodes", [1, 2])
def test_torchrun_two_ranks_match_the_single_process_run(tmp_path, nodes):
    report, stdout = torchrun(tmp_path, RUN_FILE, nodes=nodes)
    out = tmp_path / "out"
    assert stdout.count("run folder") <= 1  # rank 0 alone prints the summary
    assert report["steps"][1]["training"]["distributed"] == {"world_size": 2, "rows_per_rank": 16}
    assert sorted(p.name for p in (out / "run" / "steps" / "01-generate-dcgan").glob("training-*.pt")) == [
        "training-00000006.pt"]

    config = RunConfig.model_validate({**RUN_FILE, "output": {"dir": str(tmp_path / "single")}})
    single = run(config, Registry(use_env=False).load(), progress=False)
    for ranked, alone in zip(report["steps"], single.report["steps"]):
        assert ranked["counts"] == alone["counts"] and ranked["rows_out"] == alone["rows_out"]
    written = np.load(out / "run" / "splits.npz")
    alone = np.load(tmp_path / "single" / "splits.npz")
    assert all(np.array_equal(written[k], alone[k]) for k in alone.files)


@pytest.mark.parametrize("world", [1])
def test_outside_torchrun_the_helpers_are_one_process(world):
    assert distributed.group() == (0, world) and distributed.is_main() and not distributed.launched()
    with distributed.collective():
        assert distributed.group() == (0, 1)
        assert distributed.from_main(lambda: 7, torch.device("cpu")) == 7
    t = torch.ones(3)
    assert distributed.all_mean(t) is t
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap(module, torch.device("cpu")) is module


# A plugin that fails on rank 1 only: in an augment step (no collective: rank 0 would go on to
# evaluate and commit) or in a generator's fit while rank 0 waits inside an all-reduce.
_RANK_ONE_FAILS = """
import os
import torch
from setforge import Augmenter, Generator, distributed, hookimpl


def _maybe_fail():
    if os.environ.get("RANK") == "1":
        raise ValueError("rank 1 breaks on purpose")


class RankOneFails(Augmenter):
    \"\"\"Fails on rank 1.\"\"\"
    name = "rank-one-fails"
    modalities = ("tabular",)

    def _transform(self, x, y, params):
        _maybe_fail()
        return x


class RankOneFailsInFit(Generator):
    \"\"\"Fails on rank 1 while rank 0 averages a tensor with it.\"\"\"
    name = "rank-one-fails"
    modalities = ("tabular",)

    def _fit(self, ds, ctx):
        _maybe_fail()
        self.mean = distributed.all_mean(ds.x.mean(0))

    def _sample(self, labels, ctx):
        return self.mean.expand(len(labels), -1).clone()

    def _state_dict(self):
        return {"mean": self.mean}

    def _load_state_dict(self, state):
        self.mean = state["mean"]


@hookimpl
def setforge_register_augmenters():
    return [RankOneFails]


@hookimpl
def setforge_register_generators():
    return [RankOneFailsInFit]
"""


@pytest.mark.parametrize("step", [{"augment": "rank-one-fails"}, {"generate": "rank-one-fails", "multiply": 2}])
def test_a_failure_on_one_rank_leaves_no_run_folder_and_the_others_say_why_they_stopped(tmp_path, step):
    plugin = tmp_path / "rank_one_fails.py"
    plugin.write_text(_RANK_ONE_FAILS, encoding="utf-8")
    codes, _, stderr = launch(tmp_path, {"seed": 0, "plugins": [str(plugin)], "source": {"name": "sklearn-wine"},
                                         "pipeline": [step]})
    assert codes != [0]
    assert "rank 1 breaks on purpose" in stderr  # rank 1's own message
    # rank 0 did not commit (before, an augment step's failure on rank 1 left rank 0 to write the
    # whole run folder), and it stopped either on torchrun's signal or saying that a peer failed,
    # never blaming its own step
    assert not (tmp_path / "out" / "run").exists()
    assert "rank 0 stopped because another rank" in stderr or "SIGTERM" in stderr
    assert "failed in fit: RuntimeError" not in stderr
    # torchrun's "Root Cause" is the rank that failed: rank 0 waits for torchrun to see it first
    # (it exited first and was named, in 3 runs of 3), and its scratch folder is still removed
    root_cause = stderr.split("Root Cause (first observed failure):")[1]
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", root_cause) and "exitcode  : 4" in root_cause
    assert not list((tmp_path / "scratch").glob("setforge-*")), "a rank's scratch folder was left behind"


def test_a_process_group_error_becomes_a_peer_failure_only_under_torchrun(monkeypatch):
    gloo = RuntimeError("[/x/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:1. This is typically")
    assert distributed.peer_failed(gloo) is None  # one process: nothing to blame on a peer
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    error = distributed.peer_failed(gloo)
    assert isinstance(error, distributed.PeerFailed) and error.exit_code == 1 and error.linger_s > 0
    assert str(error).startswith("rank 0 stopped because another rank of this torchrun job failed or left "
                                 "(Connection closed by peer [127.0.0.1]:1)")
    assert isinstance(distributed.peer_failed(torch.distributed.DistBackendError("NCCL watchdog")), SetforgeError)
    assert distributed.peer_failed(RuntimeError("a plugin's own failure")) is None
    assert distributed.peer_failed(ValueError("bad")) is None


def test_a_rank_stopped_by_its_peer_lingers_until_torchrun_stops_it(tmp_path):
    # (the CLI waits after a PeerFailed message so that torchrun sees the peer's failure first; its
    # SIGTERM ends the wait as an ordinary exit, so exit handlers still run)
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "exit-handler-ran"
    code = ("import atexit, pathlib, sys\n"
            f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
            "from setforge.tools import cli\n"
            "print('lingering', flush=True)\n"
            "cli._linger(60)\n"
            "sys.exit(1)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "lingering"
    time.sleep(1.0)  # (the wait's SIGTERM handler is in place well before)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 1  # (not 60 s later, nor -15: the wait ended and the process exited)
    assert marker.read_text() == "yes"
