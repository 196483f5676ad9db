"""A streaming run under ``torchrun --nproc-per-node 2`` (gloo, one thread each): the batches are
shared out by rank, every rank writes its own shards into the one ``<dir>.partial/``, rank 0
joins them and writes the report; the result holds every row exactly once, the same rows as the
run in one process."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import setforge
from setforge.config import RunConfig
from setforge.pipeline import run
from setforge.registry import Registry
from tests._torchrun import torchrun

def _source(path: Path) -> Path:
    """60 small RGB images in 3 classes, pixels on the 1/255 grid (PNG shards keep them exactly)."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (60, 3, 6, 6)).astype(np.float32) / 255
    np.savez(path, x=x, y=np.repeat([0, 1, 2], [30, 18, 12]))
    return path


def _rows(ds) -> list[tuple]:
    pixels = (ds.x * 255).round().to(torch.uint8).reshape(len(ds), -1).numpy()
    return sorted(zip(map(bytes, pixels), ds.y.tolist(), ds.origin.tolist(), ds.parent.tolist(), ds.row_id.tolist()))


def _torchrun(tmp_path: Path, body: dict, nodes: int = 1) -> dict:
    report, _ = torchrun(tmp_path, body, nodes=nodes)
    assert not (tmp_path / "out" / "run" / ".setforge-ranks").exists()
    return report


def _single(tmp_path: Path, body: dict):
    config = RunConfig.model_validate({**body, "output": {**body["output"], "dir": str(tmp_path / "single")}})
    return run(config, Registry(use_env=False).load(), progress=False)


@pytest.mark.parametrize("fmt, nodes", [("webdataset", 1), ("npz", 1), ("npz", 2)])
def test_torchrun_two_ranks_share_the_batches_of_a_streaming_run(tmp_path, fmt, nodes):
    body = {"seed": 1, "device": "cpu", "batch_size": 8,
            "source": {"name": "npz", "params": {"path": str(_source(tmp_path / "data.npz"))}, "stream": True},
            "pipeline": [{"augment": "flip", "copies": 1}],  # a random flip (p 0.5): draws keyed by batch
            "output": {"format": fmt, "shard_rows": 10}}
    report = _torchrun(tmp_path, body, nodes)
    out = tmp_path / "out"

    parts = {part: setforge.load(out / "run", split=part) for part in ("train", "val", "test")}
    for part in ("val", "test"):  # real rows numbered within their part, each exactly once
        assert sorted(parts[part].row_id.tolist()) == list(range(len(parts[part])))
    train = parts["train"]
    real = train[train.origin == int(setforge.Origin.REAL)]
    copies = train[train.origin == int(setforge.Origin.AUGMENTED)]
    assert sorted(real.row_id.tolist()) == list(range(len(real))) == sorted(copies.parent.tolist())
    assert len(real) + len(parts["val"]) + len(parts["test"]) == 60

    # each rank took part of the batches and wrote shards of its own (shard k of rank r: k * 2 + r)
    ranks = report["stream"]["ranks"]
    assert len(ranks) == 2 and all(r["batches"] > 0 and r["rows"] > 0 for r in ranks)
    assert sum(r["rows"] for r in ranks) == len(train) + len(parts["val"]) + len(parts["test"])
    shards = sorted(p.name for p in (out / "run").glob("train-*"))
    assert {int(name.split("-")[1].split(".")[0]) % 2 for name in shards} == {0, 1}
    assert set(report["files"]) == {p.name for p in (out / "run").iterdir() if p.name.startswith(("train", "val",
                                                                                                  "test", "splits"))}
    if fmt == "webdataset":  # sample keys stay unique across the ranks' shards
        keys = []
        for shard in (out / "run").glob("*.tar"):
            with tarfile.open(shard) as tar:
                keys += [m.name.split(".")[0] for m in tar if m.name.endswith(".cls")]
        assert len(keys) == len(set(keys)) == sum(r["rows"] for r in ranks)

    # the run in one process: the same counts, and the same rows (draws keyed by batch, not by rank)
    single = _single(tmp_path, body)
    assert "ranks" not in single.report["stream"]
    for key in ("counts", "steps", "split", "source"):
        assert report[key] == single.report[key], key
    for part in ("train", "val", "test"):
        assert _rows(parts[part]) == _rows(setforge.load(single.run_dir, split=part)), part


def test_torchrun_two_ranks_share_the_sampled_batches_of_a_checkpointed_generator(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "data.npz", x=rng.random((90, 3)).astype(np.float32), y=np.repeat([0, 0, 1], 30))
    body = {"seed": 4, "device": "cpu", "batch_size": 8,
            "source": {"name": "npz", "params": {"path": str(tmp_path / "data.npz")}, "stream": False},
            "pipeline": [{"generate": "gaussian-mixture", "target": "balance"}], "output": {"format": "npz"}}
    fitted = run(RunConfig.model_validate({**body, "output": {"dir": str(tmp_path / "fit")}}),
                 Registry(use_env=False).load(), progress=False)
    body["source"]["stream"] = True
    body["pipeline"][0]["params"] = {"checkpoint": str(next(fitted.run_dir.glob("steps/*/generator.pt")))}
    report = _torchrun(tmp_path, body)
    train, single = setforge.load(tmp_path / "out" / "run"), _single(tmp_path, body)
    assert len(report["stream"]["ranks"]) == 2 and report["counts"] == single.report["counts"]
    made = train[train.origin == int(setforge.Origin.GENERATED)]
    assert len(made) == report["steps"][0]["counts"]["by_origin"]["generated"] > 8  # more than one batch
    alone = setforge.load(single.run_dir)
    assert sorted(map(bytes, train.x.numpy())) == sorted(map(bytes, alone.x.numpy()))


def test_a_stream_writer_without_shard_is_told_apart_from_those_that_take_it():
    from setforge.formats import FORMATS
    from setforge.registry import default_registry
    from setforge.streaming import _takes_shard

    class OneProcessWriter:  # a third party's writer from before sharded streaming
        def __init__(self, folder, split, like, shard_rows):
            pass

    class AnyKeywords:
        def __init__(self, folder, split, like, shard_rows, **options):
            pass

    assert _takes_shard(FORMATS["npz"].stream)
    assert _takes_shard(default_registry().formats()["webdataset"].stream)
    assert _takes_shard(AnyKeywords)
    assert not _takes_shard(OneProcessWriter)
