"""The webdataset output format: shards read back by the `webdataset` package itself, exact
round trips through `read_webdataset` and `setforge.load`, byte-identical shards, and bad shards."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from setforge import DataError, Dataset, FeatureInfo, Origin
from setforge.plugins.output.files import MANIFEST
from setforge.plugins.output.webdataset_shards import read_webdataset, write_webdataset
from setforge.registry import Registry

webdataset = pytest.importorskip("webdataset")
LABELS = [o.label for o in Origin]


def _images(n=12, channels=3, classes=("cat", "dog", "eel"), seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, channels, 5, 4)).astype(np.float32) / np.float32(255)
    origin = torch.tensor([int(Origin.REAL)] * (n // 2) + [int(Origin.AUGMENTED)] * (n - n // 2 - 1)
                          + [int(Origin.GENERATED)])
    parent = torch.where(origin == int(Origin.AUGMENTED), torch.arange(n) % (n // 2), -1)
    step = torch.where(origin == int(Origin.REAL), -1, torch.where(origin == int(Origin.GENERATED), 2, 1))
    return Dataset(x=torch.from_numpy(pixels), y=torch.arange(n) % len(classes), classes=classes, modality="image",
                   origin=origin, step=step, parent=parent, groups=torch.arange(n) // 3)


def _table() -> Dataset:
    info = FeatureInfo(names=("age", "height", "colour"), categorical={"colour": ("blue", "red")},
                       dtypes={"age": "int64", "height": "float64", "colour": "str"}, label="species")
    x = torch.tensor([[31, 1.8, 1], [42, 0.1, 0], [27, 1e-7, 1], [55, 12345.678, 0], [19, -2.5, 1]])
    return Dataset(x=x, y=torch.tensor([0, 1, 1, 0, 1]), classes=("cat", "dog", "unused"), modality="tabular",
                   features=info, origin=torch.tensor([0, 0, 2, 3, 1]), step=torch.tensor([-1, -1, 1, 2, 0]),
                   parent=torch.tensor([-1, -1, 0, -1, 1]))


def _same(a: Dataset, b: Dataset) -> None:
    assert a.classes == b.classes and a.modality == b.modality and a.features == b.features
    assert (a.x == b.x) if a.modality == "text" else torch.equal(a.x, b.x)
    assert torch.equal(a.y, b.y)
    for name in ("origin", "step", "parent", "row_id", "groups"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None and right is None) or torch.equal(left, right), name


def _shards(folder: Path, split: str) -> list[str]:
    return [str(p) for p in sorted(folder.glob(f"{split}-*.tar"))]


def _read_with_webdataset(urls: list[str]) -> list[dict]:
    return list(webdataset.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"))


def test_webdataset_is_registered():
    assert "webdataset" in Registry().load().formats()


def test_the_webdataset_package_reads_every_image_row_class_and_origin(tmp_path):
    ds = _images(n=12)
    written = write_webdataset(tmp_path, "train", ds, shard_rows=5)
    assert [p.name for p in written] == ["train-000000.tar", "train-000001.tar", "train-000002.tar",
                                         MANIFEST.format(split="train")]
    samples = _read_with_webdataset(_shards(tmp_path, "train"))
    assert [s["__key__"] for s in samples] == [f"train-{i:06d}" for i in range(12)]
    expected = (ds.x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    for i, sample in enumerate(samples):
        assert sample["cls"] == int(ds.y[i])
        assert np.array_equal(np.asarray(sample["png"]), expected[i])
        assert sample["json"] == {"class": ds.classes[int(ds.y[i])], "origin": LABELS[int(ds.origin[i])],
                                  "step": int(ds.step[i]), "parent": int(ds.parent[i]), "row_id": int(ds.row_id[i]),
                                  "group": int(ds.groups[i])}
    assert {s["json"]["origin"] for s in samples} == {"real", "augmented", "generated"}
    _same(read_webdataset(tmp_path, "train"), ds)


@pytest.mark.parametrize("channels", [1, 4, 2])
def test_image_round_trip_is_exact_for_8_bit_values_and_other_channel_counts_go_as_npy(tmp_path, channels):
    ds = _images(channels=channels)
    write_webdataset(tmp_path, "val", ds)
    sample = _read_with_webdataset(_shards(tmp_path, "val"))[0]
    assert ("npy" in sample) == (channels == 2) and ("png" in sample) == (channels != 2)
    if channels == 2:
        assert np.array_equal(sample["npy"], ds.x[0].numpy())
    _same(read_webdataset(tmp_path, "val"), ds)


def test_tabular_rows_are_npy_float32_and_features_come_back(tmp_path):
    ds = _table()
    write_webdataset(tmp_path, "test", ds, shard_rows=2)
    samples = _read_with_webdataset(_shards(tmp_path, "test"))
    assert len(samples) == 5 and all(s["npy"].dtype == np.float32 for s in samples)
    assert np.array_equal(np.stack([s["npy"] for s in samples]), ds.x.numpy())
    assert [s["cls"] for s in samples] == ds.y.tolist()
    assert [s["json"]["origin"] for s in samples] == ["real", "real", "resampled", "generated", "augmented"]
    again = read_webdataset(tmp_path, "test")
    _same(again, ds)
    assert again.classes == ("cat", "dog", "unused")  # a class with no rows is kept by the manifest


def test_text_rows_and_an_empty_split(tmp_path):
    texts = Dataset(x=["a cat", "ünïcode dog", ""], y=torch.tensor([0, 1, 0]), classes=("c", "d"), modality="text")
    write_webdataset(tmp_path, "train", texts)
    assert [s["txt"] for s in _read_with_webdataset(_shards(tmp_path, "train"))] == texts.x
    _same(read_webdataset(tmp_path, "train"), texts)
    empty = _images()[:0]
    assert [p.name for p in write_webdataset(tmp_path, "val", empty)][0] == "val-000000.tar"
    assert _read_with_webdataset(_shards(tmp_path, "val")) == []
    _same(read_webdataset(tmp_path, "val"), empty)


def test_shards_are_byte_for_byte_reproducible_with_fixed_member_headers(tmp_path):
    ds = _images(n=9)
    digests = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        files = write_webdataset(tmp_path / name, "train", ds, shard_rows=4)
        digests.append([(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])
    assert digests[0] == digests[1]
    with tarfile.open(tmp_path / "one" / "train-000000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["train-000000.cls", "train-000000.json", "train-000000.png"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def _rewrite(path: Path, change) -> None:
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in change(members):
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_bad_shards_are_data_errors_naming_the_sample(tmp_path):
    ds = _images(n=4)
    write_webdataset(tmp_path, "train", ds)
    shard = tmp_path / "train-000000.tar"
    _rewrite(shard, lambda ms: [(m, b"7" if m.name == "train-000001.cls" else d) for m, d in ms])
    with pytest.raises(DataError, match=r"sample 'train-000001': cls 7 and class 'dog' do not match"):
        read_webdataset(tmp_path, "train")
    write_webdataset(tmp_path, "train", ds)
    _rewrite(shard, lambda ms: [(m, d) for m, d in ms if m.name != "train-000002.png"])
    with pytest.raises(DataError, match=r"sample 'train-000002': members \['cls', 'json'\]"):
        read_webdataset(tmp_path, "train")
    write_webdataset(tmp_path, "train", ds)
    manifest = tmp_path / MANIFEST.format(split="train")
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "shards": ["../elsewhere.tar"]}))
    with pytest.raises(DataError, match="not a train-NNNNNN.tar shard"):
        read_webdataset(tmp_path, "train")
    manifest.write_text(json.dumps({**data, "rows": 5}))
    with pytest.raises(DataError, match="hold 4 rows, the manifest says 5"):
        read_webdataset(tmp_path, "train")
    with pytest.raises(DataError, match="no test.manifest.json"):
        read_webdataset(tmp_path, "test")


def test_a_run_written_as_webdataset_loads_back_like_the_same_run_as_npz(tmp_path):
    import setforge
    from setforge.tools.cli import main

    rng = np.random.default_rng(4)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (36, 3, 6, 6), dtype=np.uint8), y=np.arange(36) % 3,
             classes=np.array(["a", "b", "c"]))
    runs = {}
    for fmt in ("npz", "webdataset"):
        runs[fmt] = tmp_path / f"run-{fmt}"
        config = {"seed": 5, "device": "cpu", "source": {"name": "npz", "params": {"path": "d.npz"}},
                  "split": {"test": 0.25, "val": 0.25}, "pipeline": [{"augment": "flip"}],
                  "output": {"dir": str(runs[fmt]), "format": fmt, "shard_rows": 7}}
        (tmp_path / f"{fmt}.json").write_text(json.dumps(config))
        assert main(["run", str(tmp_path / f"{fmt}.json"), "--quiet"]) == 0
    assert len(_shards(runs["webdataset"], "train")) > 1
    for split in ("train", "val", "test"):
        _same(setforge.load(runs["webdataset"], split=split), setforge.load(runs["npz"], split=split))
    train = setforge.load(runs["webdataset"])
    assert int((train.origin == int(Origin.AUGMENTED)).sum()) > 0
    samples = _read_with_webdataset(_shards(runs["webdataset"], "train"))
    assert [s["json"]["origin"] for s in samples] == [LABELS[o] for o in train.origin.tolist()]
    assert [s["json"]["parent"] for s in samples] == train.parent.tolist()


def test_a_manifest_without_a_key_is_a_data_error_naming_it(tmp_path):
    # (from an audit: a KeyError, with no file named and no exit code)
    write_webdataset(tmp_path, "train", _images(n=2))
    manifest = tmp_path / MANIFEST.format(split="train")
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({k: v for k, v in data.items() if k != "payload"}))
    with pytest.raises(DataError, match=r"train.manifest.json: no payload \(a webdataset manifest holds classes,"):
        read_webdataset(tmp_path, "train")


@pytest.mark.parametrize(("channels", "decoder", "mode"), [(1, "pill", "L"), (3, "pil", "RGB"), (4, "pilrgba", "RGBA")])
def test_the_webdataset_decoder_named_in_the_docs_gives_back_every_channel(tmp_path, channels, decoder, mode):
    # (from an audit: the docs' example decoded with "pil", which webdataset turns into RGB,
    # so grayscale came back as three channels and RGBA lost its alpha)
    ds = _images(n=3, channels=channels)
    write_webdataset(tmp_path, "train", ds)
    samples = list(webdataset.WebDataset(_shards(tmp_path, "train"), shardshuffle=False).decode(decoder))
    expected = (ds.x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    for sample, pixels in zip(samples, expected):
        assert sample["png"].mode == mode
        assert np.array_equal(np.asarray(sample["png"]).reshape(pixels.shape), pixels)
    assert f'decode("{decoder}")' in (Path(__file__).parents[2] / "docs" / "data.md").read_text()


def test_a_text_member_that_is_not_utf8_is_a_data_error_naming_the_sample(tmp_path):
    # (from an audit: a UnicodeDecodeError, with no shard or sample named)
    texts = Dataset(x=["a", "b"], y=torch.tensor([0, 1]), classes=("c", "d"), modality="text")
    write_webdataset(tmp_path, "train", texts)
    _rewrite(tmp_path / "train-000000.tar", lambda ms: [(m, b"\xff" if m.name == "train-000001.txt" else d) for m, d in ms])
    with pytest.raises(DataError, match=r"sample 'train-000001': cannot decode: 'utf-8' codec"):
        read_webdataset(tmp_path, "train")


def test_a_streamed_batch_without_groups_in_a_grouped_split_reads_back_as_no_group(tmp_path):
    # (generated rows of a streaming run come without groups: their samples lacked "group" and the
    # split could not be read back, "N of the M samples have a group")
    from setforge.plugins.output.webdataset_shards import WebDatasetWriter

    grouped = _images(6)
    writer = WebDatasetWriter(tmp_path, "train", grouped[:0], shard_rows=4)
    writer.add(grouped)
    writer.add(_images(3, seed=1).replace(groups=None))
    writer.close()
    back = read_webdataset(tmp_path, "train")
    assert back.groups.tolist() == grouped.groups.tolist() + [-1, -1, -1]
