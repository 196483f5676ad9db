"""Streaming runs (``source.stream``): batch by batch from the source through the steps into shards."""

import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setforge
import setforge.pipeline
from setforge.errors import ConfigError, DataError
from setforge.registry import registry_for
from setforge.runfile import load_run_config
from setforge.checks import check_components


def _images(root: Path, counts: dict[str, int], size: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = rng.integers(0, 256, (1, 1, 3))
            pixels = (base + np.arange(size)[:, None, None] * 7 + rng.integers(0, 16, (size, size, 3))) % 256
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:05d}.png", compress_level=1)
    return root


def _run_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _run(path: Path):
    config = load_run_config(path)
    registry = registry_for(config)
    check_components(config, registry)
    return setforge.pipeline.run(config, registry, progress=False)


def _row_keys(ds) -> list[tuple]:
    x = (ds.x * 255).round().to(torch.uint8).reshape(len(ds), -1).numpy()
    return sorted(zip(map(bytes, x), ds.y.tolist(), ds.origin.tolist(), ds.parent.tolist()))


@pytest.mark.parametrize("fmt", ["webdataset", "npz"])
def test_a_streamed_run_writes_the_rows_of_the_same_run_in_memory(tmp_path, fmt):
    """Deterministic steps (flips with p = 1): the streamed run's parts hold exactly the rows, labels
    and provenance of the run in memory; val and test in the same order."""
    images = _images(tmp_path / "images", {"a": 30, "b": 30, "c": 9})
    outputs = {}
    for stream in ("true", "false"):
        path = _run_file(tmp_path, f"run-{stream}", f"""
            seed: 3
            batch_size: 7
            source: {{name: image-folder, params: {{path: {images}}}, stream: {stream}}}
            pipeline:
              - augment: flip
                params: {{p: 1.0}}
                copies: 1
                classes: [c]
              - augment: flip
                params: {{p: 1.0, direction: vertical}}
                target: balance
            output: {{dir: {tmp_path / ('out-' + stream)}, format: {fmt}, shard_rows: 25}}
            """)
        result = _run(path)
        outputs[stream] = {part: setforge.load(result.run_dir, split=part) for part in ("train", "val", "test")}
    streamed, memory = outputs["true"], outputs["false"]
    for part in ("val", "test"):
        assert torch.equal(streamed[part].x, memory[part].x) and torch.equal(streamed[part].y, memory[part].y)
    assert streamed["train"].class_counts() == memory["train"].class_counts()
    assert _row_keys(streamed["train"]) == _row_keys(memory["train"])
    report = json.loads((tmp_path / "out-true" / "report.json").read_text())
    assert report["stream"]["batch_size"] == 7 and [s["streamed"] for s in report["steps"]] == [True, True]
    assert report["counts"]["optimised"]["rows"] == len(streamed["train"])
    memory_report = json.loads((tmp_path / "out-false" / "report.json").read_text())
    assert report["counts"] == memory_report["counts"]  # the same parts, counted the same (no empty "train")


def test_random_augments_stream_reproducibly(tmp_path):
    images = _images(tmp_path / "images", {"a": 12, "b": 12})
    runs = []
    for k in range(2):
        path = _run_file(tmp_path, f"run{k}", f"""
            batch_size: 5
            source: {{name: image-folder, params: {{path: {images}}}, stream: true}}
            pipeline: [{{augment: [{{name: flip}}, {{name: gaussian-noise}}], copies: 2}}]
            output: {{dir: {tmp_path / f'out{k}'}, format: webdataset}}
            """)
        runs.append(setforge.load(_run(path).run_dir))
    assert torch.equal(runs[0].x, runs[1].x) and len(runs[0]) == 3 * int((runs[0].origin == 0).sum())


def test_an_npz_source_streams_every_valid_row_exactly_once(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((103, 5)).astype(np.float32)
    x[17, 2] = np.nan
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, 3, 103))
    path = _run_file(tmp_path, "run", f"""
        batch_size: 10
        source: {{name: npz, params: {{path: {tmp_path / 'data.npz'}}}, stream: true, on_invalid: drop}}
        output: {{dir: {tmp_path / 'out'}, shard_rows: 30}}
        """)
    result = _run(path)
    parts = [setforge.load(result.run_dir, split=part) for part in ("train", "val", "test")]
    got = sorted(bytes(row) for part in parts for row in part.x.numpy())
    assert got == sorted(bytes(row) for i, row in enumerate(x) if i != 17)
    assert result.report["source"]["dropped_invalid"] == {"NaN or infinite value": 1}
    assert len(list(result.run_dir.glob("train-*.npz"))) == 3


def test_a_streaming_run_says_that_it_leaves_unlabelled_rows_out(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 60)
    y[::6] = -1  # 10 unlabelled rows: the loaded run hands them to pseudo-label, which cannot stream
    np.savez(tmp_path / "data.npz", x=rng.random((60, 4)).astype(np.float32), y=y)
    path = _run_file(tmp_path, "run", f"""
        source: {{name: npz, params: {{path: {tmp_path / 'data.npz'}}}, stream: true}}
        output: {{dir: {tmp_path / 'out'}}}
        """)
    report = _run(path).report
    assert report["source"]["unlabelled"] == 10 and report["source"]["rows"] == 50
    assert "source: 10 unlabelled rows left out: a streaming run has no step that labels them" in report["warnings"]


def test_validate_refuses_a_step_that_needs_every_row_at_its_place(tmp_path):
    images = _images(tmp_path / "images", {"a": 4, "b": 4})
    path = _run_file(tmp_path, "run", f"""
        source: {{name: image-folder, params: {{path: {images}}}, stream: true}}
        pipeline: [{{augment: flip}}, {{resample: random-over}}]
        output: {{dir: {tmp_path / 'out'}, format: image-folder}}
        """)  # (image-folder writes images, but not a batch at a time; csv would be refused first for not writing images)
    from setforge.tools.cli import main

    assert main(["validate", str(path)]) == 2
    with pytest.raises(ConfigError) as caught:
        _run(path)
    places = dict(caught.value.problems)
    assert "needs every row at once" in places["pipeline[1]"] and "source.stream: false" in places["pipeline[1]"]
    assert "webdataset" in places["output.format"] and "pipeline[0]" not in places


def test_an_automatically_streamed_run_names_the_data_size(tmp_path):
    images = _images(tmp_path / "images", {"a": 6, "b": 6})
    path = _run_file(tmp_path, "run", f"""
        source: {{name: image-folder, params: {{path: {images}}}, stream_above: 1000}}
        pipeline: [{{resample: random-over}}]
        output: {{dir: {tmp_path / 'out'}}}
        """)
    with pytest.raises(DataError, match=r"12 rows take .* more than source.stream_above .* pipeline\[0\]") as caught:
        _run(path)
    assert "(1000 bytes)" in str(caught.value)  # a size under a MiB in its own unit, not "0.0 MiB"
    path.write_text(path.read_text().replace("stream_above: 1000", "stream_above: 100000"))
    assert _run(path).report["counts"]["optimised"]["rows"] > 0  # below the size: read at once, as before


_MEMORY_SCRIPT = """
import json, re, sys
import torch
torch.set_num_threads(1)
import setforge
import setforge.pipeline
import setforge.pipeline
from setforge.checks import check_components
from setforge.registry import registry_for
from setforge.runfile import load_run_config

def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

def run(path):
    config = load_run_config(path)
    registry = registry_for(config)
    check_components(config, registry)
    return setforge.pipeline.run(config, registry, progress=False)

run(sys.argv[1])  # warm: every module a run imports, the first allocations
before = peak_kib()
result = run(sys.argv[2])
print(json.dumps({"before": before, "after": peak_kib(), "dir": str(result.run_dir)}))
"""


@pytest.mark.slow
def test_a_folder_larger_than_the_memory_budget_streams_within_it(tmp_path):
    """3,000 64x64 RGB images (141 MiB as float32, 281 MiB with their augmented copies) through a
    subprocess whose peak resident memory may grow by 64 MiB over a warm run (256 images, so that
    full batches and shards have been through once); every row is written once."""
    budget_kib, n = 64 * 1024, 3000
    big = _images(tmp_path / "big", {"a": n // 2, "b": n // 4, "c": n // 4}, size=64)
    small = _images(tmp_path / "small", {"a": 128, "b": 64, "c": 64}, size=64, seed=1)
    files = []
    for name, folder in (("small", small), ("big", big)):
        files.append(_run_file(tmp_path, name, f"""
            batch_size: 64
            source: {{name: image-folder, params: {{path: {folder}}}, stream: true}}
            pipeline: [{{augment: flip, copies: 1}}]
            output: {{dir: {tmp_path / ('out-' + name)}, format: webdataset, shard_rows: 256}}
            """))
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, *map(str, files)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["after"] - measured["before"] < budget_kib, measured
    samples: dict[str, list[dict]] = {}
    for shard in sorted(Path(measured["dir"]).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    samples.setdefault(shard.name.split("-")[0], []).append(json.load(tar.extractfile(member)))
    sizes = {part: len(rows) for part, rows in samples.items()}
    assert sizes["val"] + sizes["test"] + sizes["train"] // 2 == n
    for part in ("val", "test"):
        assert sorted(row["row_id"] for row in samples[part]) == list(range(sizes[part]))
    real = [row for row in samples["train"] if row["origin"] == "real"]
    copies = [row for row in samples["train"] if row["origin"] == "augmented"]
    assert sorted(row["row_id"] for row in real) == list(range(len(real))) == sorted(row["parent"] for row in copies)


def test_a_generator_fitted_by_an_earlier_run_samples_its_planned_rows_batch_by_batch(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "data.npz", x=rng.random((90, 3)).astype(np.float32), y=np.repeat([0, 0, 1], 30))

    def run_file(name: str, stream: bool, params: str) -> Path:
        return _run_file(tmp_path, name, f"""
            seed: 4
            batch_size: 8
            source: {{name: npz, params: {{path: {tmp_path / 'data.npz'}}}, stream: {str(stream).lower()}}}
            pipeline: [{{generate: gaussian-mixture, target: balance, params: {{{params}}}}}]
            output: {{dir: {tmp_path / name}, format: webdataset, shard_rows: 20}}
            """)

    fitted = _run(run_file("fit", False, ""))
    checkpoint = next(fitted.run_dir.glob("steps/*/generator.pt"))
    result = _run(run_file("stream", True, f"checkpoint: {checkpoint}"))
    train, memory = setforge.load(result.run_dir), setforge.load(fitted.run_dir)
    assert train.class_counts() == memory.class_counts() and train.class_counts()[0] == train.class_counts()[1]
    generated = train[train.origin == int(setforge.Origin.GENERATED)]
    assert len(generated) == len(memory[memory.origin == int(setforge.Origin.GENERATED)]) > 0
    assert result.report["steps"][0]["rows_out"] == len(train)
    # the guard (default: fail) cannot run on streamed rows: it says so instead of passing in silence
    assert "guard" not in result.report["steps"][0]
    assert any(w.startswith("pipeline[0].guard: not checked: a streaming run") for w in result.report["warnings"])
    with pytest.raises(ConfigError, match="params.checkpoint"):
        _run(run_file("missing", True, ""))


@pytest.mark.parametrize("stream", ["auto", "true", "false"])
def test_unreadable_files_are_dropped_and_counted_once_however_the_run_reads(tmp_path, stream):
    images = _images(tmp_path / "images", {"a": 6, "b": 6})
    (images / "a" / "broken.png").write_bytes(b"not a png")
    whole = next((images / "b").iterdir()).read_bytes()
    (images / "b" / "truncated.png").write_bytes(whole[:len(whole) // 2])  # (its header reads; its pixels do not)
    path = _run_file(tmp_path, "run", f"""
        source: {{name: image-folder, params: {{path: {images}}}, stream: {stream}, on_invalid: drop}}
        output: {{dir: {tmp_path / 'out'}, format: webdataset}}
        """)
    result = _run(path)
    assert result.report["source"]["dropped_invalid"] == {"unreadable or not an image": 2}
    assert sum(len(setforge.load(result.run_dir, split=part)) for part in ("train", "val", "test")) == 12
    assert result.report["source"]["rows"] == 12  # (a streaming run counted the truncated file's row too)


def test_a_resumed_streaming_run_starts_over_without_an_earlier_tries_shards(tmp_path):
    """--resume rewrites a streaming run's shards; one an earlier try wrote (more ranks, other
    shard_rows) and this one does not would be read back as rows of its own: it goes."""
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "data.npz", x=rng.random((40, 4)).astype(np.float32), y=rng.integers(0, 2, 40))
    path = _run_file(tmp_path, "run", f"""
        batch_size: 10
        source: {{name: npz, params: {{path: {tmp_path / 'data.npz'}}}, stream: true}}
        output: {{dir: {tmp_path / 'out'}, shard_rows: 100}}
        """)
    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / ".setforge-run").write_text("setforge run folder\n")
    np.savez(partial / "train-00003.npz", x=np.zeros((5, 4), np.float32), y=np.zeros(5, np.int64), classes=["0", "1"])
    config = load_run_config(path)
    registry = registry_for(config)
    check_components(config, registry)
    result = setforge.pipeline.run(config, registry, resume=True, progress=False)
    assert sorted(p.name for p in result.run_dir.glob("train-*")) == ["train-00000.npz"]
    assert sum(len(setforge.load(result.run_dir, split=part)) for part in ("train", "val", "test")) == 40
