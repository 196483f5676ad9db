"""The image-folder and csv output formats: safe class folders, exact write/read round trips, and
source -> run -> output -> source round trips through the command line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from setforge import DataError, Dataset, FeatureInfo, Origin, StepContext
from setforge.file_formats import MANIFEST, class_folders, read_csv, read_image_folder, write_csv, write_image_folder
from setforge.formats import FORMATS
from setforge.plugins.source.csv_source import CsvSource
from setforge.plugins.source.image_folder import ImageFolderSource

EVIL = ("../x", "/etc/passwd", "..", ".", "", "a/b", "a_b", "A_B", "con", "back\\slash", "tab\there",
        "manifest.json", "~user", "é" * 150, " spaced . ")


def _images(classes, n=12, channels=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, channels, 5, 4)).astype(np.float32) / np.float32(255)
    origin = torch.tensor([int(Origin.REAL)] * (n // 2) + [int(Origin.AUGMENTED)] * (n - n // 2))
    parent = torch.where(origin == int(Origin.REAL), -1, torch.arange(n) % (n // 2))
    step = torch.where(origin == int(Origin.REAL), -1, 0)
    return Dataset(x=torch.from_numpy(pixels), y=torch.arange(n) % len(classes), classes=classes, modality="image",
                   origin=origin, step=step, parent=parent, groups=torch.arange(n) // 3)


def _same(a: Dataset, b: Dataset) -> None:
    assert a.classes == b.classes and a.modality == b.modality and a.features == b.features
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    for name in ("origin", "step", "parent", "row_id", "groups"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None and right is None) or torch.equal(left, right), name


def test_formats_are_registered():
    assert {"npz", "image-folder", "csv"} <= set(FORMATS)


def test_class_folders_are_safe_and_distinct():
    folders = class_folders(EVIL)
    assert len({f.lower() for f in folders}) == len(folders)
    for folder in folders:
        assert folder not in ("", ".", "..") and "/" not in folder and "\\" not in folder
        assert not folder.startswith((".", " ")) and not folder.endswith((".", " "))
        assert len(folder) <= 100 and folder.isprintable()
    assert folders[0] == "_x" and folders[1] == "_etc_passwd"
    assert folders[5:8] == ["a_b", "a_b-2", "A_B-3"]  # equal after sanitising, or equal ignoring case
    assert folders[8] == "con_"


def test_image_folder_with_evil_class_names_stays_inside_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ds = _images(EVIL, n=len(EVIL) * 2)
    written = write_image_folder(run, "train", ds)
    every = [p for p in tmp_path.rglob("*")]
    assert all(run.resolve() in p.resolve().parents for p in every if p != run)
    assert all(p.resolve().is_relative_to(run.resolve()) for p in written)
    assert sorted(p.name for p in run.iterdir()) == ["train", MANIFEST.format(split="train")]
    assert len(list((run / "train").iterdir())) == len(EVIL)
    _same(read_image_folder(run, "train"), ds)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_image_folder_round_trip_is_exact_for_8_bit_values(tmp_path, channels):
    ds = _images(("cat", "dog", "eel"), channels=channels)
    write_image_folder(tmp_path, "val", ds)
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == ["cat", "dog", "eel"]
    _same(read_image_folder(tmp_path, "val"), ds)


def test_image_folder_files_are_byte_for_byte_reproducible(tmp_path):
    ds = _images(("a", "b"))
    digests = []
    for name in ("one", "two"):
        write_image_folder(tmp_path / name, "train", ds)
        files = sorted(p for p in (tmp_path / name).rglob("*") if p.is_file())
        digests.append([(p.relative_to(tmp_path / name).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                        for p in files])
    assert digests[0] == digests[1]


def test_image_folder_refuses_what_png_cannot_hold(tmp_path):
    tabular = Dataset(x=torch.zeros(2, 3), y=torch.tensor([0, 1]), classes=("a", "b"), modality="tabular")
    with pytest.raises(DataError, match="image-folder writes images, the data is tabular; use output.format npz or csv"):
        write_image_folder(tmp_path, "train", tabular)
    two = Dataset(x=torch.zeros(2, 2, 3, 3), y=torch.tensor([0, 1]), classes=("a", "b"), modality="image")
    with pytest.raises(DataError, match="1, 3 or 4 channel"):
        write_image_folder(tmp_path, "train", two)
    with pytest.raises(DataError, match="no train.manifest.json"):
        read_image_folder(tmp_path, "train")


def _table() -> Dataset:
    info = FeatureInfo(names=("age", "height", "colour"), categorical={"colour": ("blue", "red, dark")},
                       dtypes={"age": "int64", "height": "float64", "colour": "str"}, label="species")
    x = torch.tensor([[31, 1.8, 1], [42, 0.1, 0], [27, 1e-7, 1], [55, 12345.678, 0]], dtype=torch.float32)
    return Dataset(x=x, y=torch.tensor([0, 1, 1, 0]), classes=("cat", "dog"), modality="tabular", features=info,
                   origin=torch.tensor([0, 0, 2, 3]), step=torch.tensor([-1, -1, 1, 2]),
                   parent=torch.tensor([-1, -1, 0, -1]))


def test_csv_writes_original_columns_and_reads_back_exactly(tmp_path):
    ds = _table()
    write_csv(tmp_path, "train", ds)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    assert lines[0] == "age,height,colour,species"
    assert lines[1:3] == ['31,1.8,"red, dark",cat', "42,0.1,blue,dog"]
    _same(read_csv(tmp_path, "train"), ds)


def test_csv_rounds_integer_columns_and_stray_codes(tmp_path):
    ds = _table()
    x = ds.x.clone()
    x[2, 0], x[2, 2] = 30.6, 0.9  # a resampler's interpolated age; a code that should not be fractional
    write_csv(tmp_path, "train", ds.replace(x=x))
    assert (tmp_path / "train.csv").read_text().splitlines()[3] == '31,1e-07,"red, dark",dog'


def test_csv_read_back_by_the_csv_source_gives_the_same_rows(tmp_path):
    ds = _table()
    write_csv(tmp_path, "test", ds)
    again = CsvSource({"path": tmp_path / "test.csv", "label": "species"}).load(StepContext.from_seed(0))
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y) and again.features == ds.features


def test_csv_refuses_images(tmp_path):
    with pytest.raises(DataError, match="csv writes tabular data, the data is image; use output.format npz "
                                        "or image-folder"):
        write_csv(tmp_path, "train", _images(("a",)))


def test_image_folder_read_back_by_the_image_source_gives_the_same_rows(tmp_path):
    ds = _images(("b", "a"), n=8)  # class order that sorting does not keep
    for split in ("train", "test"):
        write_image_folder(tmp_path, split, ds)
    parts = ImageFolderSource({"path": tmp_path}).load(StepContext.from_seed(0))
    assert parts.train.classes == ("a", "b") and parts.val is None
    for part in (parts.train, parts.test):
        names = [part.classes[c] for c in part.y.tolist()]
        rows = sorted(zip(names, (tuple(r.flatten().tolist()) for r in part.x)))
        expected = sorted(zip([ds.classes[c] for c in ds.y.tolist()], (tuple(r.flatten().tolist()) for r in ds.x)))
        assert rows == expected
