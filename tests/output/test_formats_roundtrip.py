"""The image-folder and csv output formats: safe class folders, exact write/read round trips, and
source -> run -> output -> source round trips through the command line."""

from __future__ import annotations

import json
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from setforge import DataError, Dataset, FeatureInfo, Origin, StepContext
from setforge.plugins.output.files import MANIFEST, class_folders, read_csv, read_image_folder, write_csv, write_image_folder
from setforge.registry import Registry
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
    assert {"npz", "image-folder", "csv"} <= set(Registry().load().formats())


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
    # (from an audit: Windows reserves a device name with any extension, and COM¹-³, LPT¹-³)
    assert class_folders(["con.x", "nul.tar.gz", "lpt¹", "COM²", "console", "com10"]) == [
        "con_.x", "nul_.tar.gz", "lpt¹_", "COM²_", "console", "com10"]


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
    with pytest.raises(DataError, match="writes images, the data is tabular; use output.format npz or csv"):
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


def test_a_split_lacking_a_category_or_class_reads_back_the_same_with_the_manifests_lists(tmp_path):
    # (the source codes the categories and classes it finds: without 'blue' or 'dog' they were renumbered)
    ds = _table()
    part = ds[torch.tensor([0, 3])].replace(features=ds.features)  # colour 'red, dark' and 'blue'; classes cat only
    part = part[part.x[:, 2] == 1]  # only 'red, dark', only cat
    write_csv(tmp_path, "test", part)
    found = CsvSource({"path": tmp_path / "test.csv", "label": "species"}).load(StepContext.from_seed(0))
    assert found.classes == ("cat",) and found.features.categorical["colour"] == ("red, dark",)
    manifest = json.loads((tmp_path / MANIFEST.format(split="test")).read_text())
    listed = {"classes": list(manifest["classes"]),
              "categories": {k: list(v) for k, v in manifest["features"]["categorical"].items()}}
    again = CsvSource({"path": tmp_path / "test.csv", "label": "species", **listed}).load(StepContext.from_seed(0))
    assert torch.equal(again.x, part.x) and torch.equal(again.y, part.y) and again.classes == ds.classes
    assert again.features == ds.features
    (tmp_path / "test.csv").write_text((tmp_path / "test.csv").read_text() + '40,1.0,green,cat\n')
    with pytest.raises(DataError, match=r"column 'colour' \('green'\): category outside \['blue', 'red, dark'\]"):
        CsvSource({"path": tmp_path / "test.csv", "label": "species", **listed}).load(StepContext.from_seed(0))


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


# ------------------------------------------------------------ through a whole run
SCALE_PLUGIN = '''
from setforge import Preprocessor, hookimpl


class TimesFour(Preprocessor):
    """Multiplies numeric columns by four (exactly invertible), to prove writers invert units."""

    name = "times-four"
    modalities = ("tabular",)
    changes_units = True

    def _transform(self, ds):
        return ds.replace(x=self._scaled(ds, 4.0))

    def _inverse(self, ds):
        return ds.replace(x=self._scaled(ds, 0.25))

    @staticmethod
    def _scaled(ds, factor):
        x = ds.x.clone()
        numeric = ds.features.numeric_indices if ds.features is not None else list(range(x.shape[1]))
        x[:, numeric] *= factor
        return x


@hookimpl
def setforge_register_preprocessors():
    return [TimesFour]
'''


def _rows(ds: Dataset, names=None) -> list[tuple]:
    """The rows as sorted (class name, values) pairs; `names` renames classes (sanitised folders)."""
    names = names or {}
    return sorted((names.get(ds.classes[c], ds.classes[c]), tuple(row.flatten().tolist()))
                  for c, row in zip(ds.y.tolist(), ds.x))


def _run(tmp_path: Path, source: dict, fmt: str, **extra) -> Path:
    import json

    from setforge.tools.cli import main

    run_dir = tmp_path / f"run-{fmt}"
    config = {"seed": 3, "device": "cpu", "source": source, "split": {"test": 0.3, "val": 0.2},
              "output": {"dir": str(run_dir), "format": fmt}, **extra}
    path = tmp_path / f"{fmt}.json"
    path.write_text(json.dumps(config))
    assert main(["run", str(path), "--quiet"]) == 0
    return run_dir


def _load_all(run_dir: Path) -> list[Dataset]:
    import setforge

    parts = [setforge.load(run_dir, split=s) for s in ("train", "val", "test")]
    for part in parts:
        assert bool((part.origin == int(Origin.REAL)).all()) and bool((part.parent == -1).all())
    return parts


def test_npz_source_run_npz_output_source_gives_the_same_rows(tmp_path):
    from setforge.plugins.source.npz import NpzSource

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 3)), y=np.arange(40) % 2, groups=np.arange(40) // 4)
    source = NpzSource({"path": tmp_path / "d.npz"}).load(StepContext.from_seed(0))
    run_dir = _run(tmp_path, {"name": "npz", "params": {"path": "d.npz"}}, "npz")
    parts = _load_all(run_dir)
    assert sorted(sum((_rows(p) for p in parts), [])) == _rows(source)
    files = [run_dir / "train-00000.npz", run_dir / "val.npz", run_dir / "test.npz"]
    again = [NpzSource({"path": f}).load(StepContext.from_seed(0)) for f in files]
    assert sorted(sum((_rows(a) for a in again), [])) == _rows(source)
    assert all(torch.equal(a.x, p.x) and torch.equal(a.groups, p.groups) for a, p in zip(again, parts))


def test_csv_source_run_csv_output_source_gives_the_same_rows_in_original_units(tmp_path):
    lines = ["age,height,colour,kind"] + [f"{20 + i},{1.5 + 0.013 * i:.3f},{('red', 'blue', 'green')[i % 3]},"
                                          f"{('x', 'y')[i % 2]}" for i in range(40)]
    lines[5] = "44,,blue,x"  # a missing value: dropped and counted
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "times_four.py").write_text(SCALE_PLUGIN)
    params = {"path": "t.csv", "label": "kind"}
    source = CsvSource({**params, "path": tmp_path / "t.csv"}).load(StepContext.from_seed(0), on_invalid="drop")
    run_dir = _run(tmp_path, {"name": "csv", "params": params, "on_invalid": "drop"}, "csv",
                   preprocess=["times-four"], plugins=["times_four.py"])
    report = __import__("json").loads((run_dir / "report.json").read_text())
    assert report["source"]["dropped_invalid"] == {"missing value": 1}
    assert (run_dir / "test.csv").read_text().splitlines()[0] == "age,height,colour,kind"
    parts = _load_all(run_dir)
    assert sorted(sum((_rows(p) for p in parts), [])) == _rows(source)  # units back: the x4 is undone
    again = [CsvSource({**params, "path": run_dir / f"{s}.csv"}).load(StepContext.from_seed(0))
             for s in ("train", "val", "test")]
    assert sorted(sum((_rows(a) for a in again), [])) == _rows(source)
    assert all(a.features == source.features for a in again)


def test_image_folder_source_run_image_folder_output_source_gives_the_same_rows(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for i in range(30):
        path = tmp_path / "images" / ("cat", "dog", "eel")[i % 3] / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (6, 5, 3) if i % 4 else (6, 5)  # some grayscale files among the RGB ones
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    source = ImageFolderSource({"path": tmp_path / "images"}).load(StepContext.from_seed(0))
    run_dir = _run(tmp_path, {"name": "image-folder", "params": {"path": "images"}}, "image-folder")
    parts = _load_all(run_dir)
    assert sorted(sum((_rows(p) for p in parts), [])) == _rows(source)
    again = ImageFolderSource({"path": run_dir}).load(StepContext.from_seed(0))
    for part, loaded in zip((again.train, again.val, again.test), parts):
        assert _rows(part) == _rows(loaded)


def test_evil_class_names_through_a_run_stay_inside_and_load_back_by_name(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (30, 1, 4, 4), dtype=np.uint8), y=np.arange(30) % 3,
             classes=np.array(["../escape", "/abs/path", "ok"]))
    source = __import__("setforge.plugins.source.npz", fromlist=["NpzSource"]).NpzSource(
        {"path": tmp_path / "d.npz"}).load(StepContext.from_seed(0))
    run_dir = _run(tmp_path, {"name": "npz", "params": {"path": "d.npz"}}, "image-folder")
    outside = [p for p in tmp_path.rglob("*.png") if run_dir.resolve() not in p.resolve().parents]
    assert outside == [] and not (tmp_path / "escape").exists() and not Path("/abs/path").exists()
    assert sorted(p.name for p in (run_dir / "train").iterdir()) == ["_abs_path", "_escape", "ok"]
    parts = _load_all(run_dir)
    assert parts[0].classes == ("../escape", "/abs/path", "ok")
    assert sorted(sum((_rows(p) for p in parts), [])) == _rows(source)


def test_a_class_called_unlabelled_reads_back_through_the_image_source_as_a_class(tmp_path):
    # (from an audit: its folder was `unlabelled`, which the image-folder source takes for
    # unlabelled images by default, so the class's rows silently left the labelled data)
    assert class_folders(["unlabelled", "unlabelled_", "Unlabelled"]) == ["unlabelled_", "unlabelled_-2", "Unlabelled"]
    ds = _images(("cat", "unlabelled"), n=6)
    write_image_folder(tmp_path, "train", ds)
    again = ImageFolderSource({"path": tmp_path}).load(StepContext.from_seed(0))
    assert again.train.classes == ("cat", "unlabelled_") and len(again.train) == 6 and again.unlabelled is None
    _same(read_image_folder(tmp_path, "train"), ds)


def test_csv_of_a_table_without_features_loads_back_without_features(tmp_path):
    # (from an audit: the columns named for the file, x0, x1, ..., came back as a FeatureInfo the
    # data never had, unlike npz and webdataset)
    ds = Dataset(x=torch.tensor([[1.5, 2.0], [0.25, -3.0]]), y=torch.tensor([1, 0]), classes=("a", "b"),
                 modality="tabular")
    write_csv(tmp_path, "train", ds)
    assert (tmp_path / "train.csv").read_text().splitlines()[0] == "x0,x1,label"
    _same(read_csv(tmp_path, "train"), ds)
    write_csv(tmp_path, "val", ds[:0])
    _same(read_csv(tmp_path, "val"), ds[:0])


def test_an_empty_csv_or_a_damaged_manifest_is_a_data_error_naming_the_file(tmp_path):
    # (from an audit: an empty train.csv was an IndexError, a manifest without a key a KeyError,
    # a manifest holding a list an AttributeError: no file named, no exit code)
    write_csv(tmp_path, "train", _table())
    (tmp_path / "train.csv").write_text("")
    with pytest.raises(DataError, match=r"train.csv: header \[\], the manifest says"):
        read_csv(tmp_path, "train")
    (tmp_path / "train.csv").write_bytes(b"age,height,colour,species\n\xff\xfe,1,blue,cat\n")
    with pytest.raises(DataError, match=r"cannot read .*train.csv: 'utf-8' codec"):
        read_csv(tmp_path, "train")
    manifest = tmp_path / MANIFEST.format(split="train")
    manifest.write_text('{"format": "csv", "classes": ["a"]}')
    with pytest.raises(DataError, match=r"train.manifest.json: no origin, step, parent, row_id, features, label"):
        read_csv(tmp_path, "train")
    manifest.write_text("[1]")
    with pytest.raises(DataError, match=r"train.manifest.json holds a JSON list, not a csv manifest"):
        read_csv(tmp_path, "train")
    write_image_folder(tmp_path, "val", _images(("a", "b"), n=2))
    (tmp_path / MANIFEST.format(split="val")).write_text('{"format": "image-folder"}')
    with pytest.raises(DataError, match=r"val.manifest.json: no classes, .*, files, y"):
        read_image_folder(tmp_path, "val")


def test_class_folders_keep_the_combining_marks_of_a_script():
    # (from an audit: the vowel signs of Devanagari and the points of Hebrew, Unicode marks rather than
    # letters, became `_`: हिन्दी was written to the folder ह_न_द_)
    assert class_folders(["हिन्दी", "עִברִית", "e\u0301", "a/\u0301/b", "ไทย"]) == ["हिन्दी", "עִברִית", "é", "a_\u0301_b", "ไทย"]
