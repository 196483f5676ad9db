"""Bad data through whole runs (``setforge.tools.cli.main``): exit 3 with a message that names the file,
row or class and the remedy, and no run folder; or, with ``source.on_invalid: drop``, a finished
run whose report.json counts what was dropped, by reason.

Covered: NaN and infinite features, mismatched array lengths, a class with one row (too small
for SMOTE), one class only, zero-size and wrong-channel images, labels outside the class list,
unreadable and non-image files in an image folder, ragged CSV rows, empty data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from setforge.tools.cli import main

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = np.repeat([0, 1], 20)


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    return tmp_path


def run(folder: Path, source: dict[str, Any], capsys, pipeline: list[Any] | None = None,
        output_format: str = "npz") -> tuple[int, str, Path]:
    """Run a run file over `source` into a new run folder; (exit code, stderr, the run folder)."""
    out = f"out{len(list(folder.glob('run*.yaml')))}"
    config = {"seed": 0, "device": "cpu", "source": source, "split": {"test": 0.25, "val": 0.0},
              "pipeline": pipeline or [], "evaluate": [], "output": {"dir": out, "format": output_format}}
    run_file = folder / f"run-{out}.yaml"
    run_file.write_text(yaml.safe_dump(config))
    code = main(["run", str(run_file), "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err, folder / out


def refused(folder: Path, source: dict[str, Any], capsys, *words: str, **kwargs: Any) -> str:
    """Exit 3, every word in the message, no run folder."""
    code, err, out = run(folder, source, capsys, **kwargs)
    assert code == 3, err
    assert err.startswith("setforge: bad data: "), err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()
    return err


def dropped(folder: Path, source: dict[str, Any], capsys, expected: dict[str, int], rows: int) -> dict[str, Any]:
    """With on_invalid: drop the run finishes and report.json counts the dropped rows by reason."""
    code, err, out = run(folder, {**source, "on_invalid": "drop"}, capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["dropped_invalid"] == expected
    assert report["source"]["rows"] == rows
    assert report["config"]["source"]["on_invalid"] == "drop"
    return report


def npz(folder: Path, name: str, **arrays: Any) -> dict[str, Any]:
    np.savez(folder / name, **arrays)
    return {"name": "npz", "params": {"path": name}}


def csv(folder: Path, name: str, text: str, **params: Any) -> dict[str, Any]:
    (folder / name).write_text(text)
    return {"name": "csv", "params": {"path": name, **params}}


def png(path: Path, mode: str = "L", size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    pixels = (RNG.random((size[1], size[0], channels)) * 255).astype(np.uint8)
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=mode).save(path)


GOOD_ROWS = "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(30))


# ---------------------------------------------------------------------- NaN and infinity
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_in_npz(here, capsys, bad):
    x = X.copy()
    x[3, 1] = bad
    x[7, 0] = bad
    source = npz(here, "bad.npz", x=x, y=Y)
    refused(here, source, capsys, "source 'npz'", "setforge", "bad.npz", "row 3, column 1", "NaN or infinite value",
            "on_invalid: drop")
    dropped(here, source, capsys, {"NaN or infinite value": 2}, rows=38)


def test_non_finite_and_missing_values_in_csv(here, capsys):
    source = csv(here, "bad.csv", "a,b,label\n1,inf,x\n2,,y\n3,-inf,x\n" + GOOD_ROWS)
    refused(here, source, capsys, "bad.csv", "line 2, column 'b' ('inf')", "not a finite number")
    dropped(here, source, capsys, {"not a finite number": 2, "missing value": 1}, rows=30)


def test_a_sources_warning_is_shown_and_kept_in_report_json(here, capsys):
    # (found by an audit: the csv source's warning about an id column went to the terminal only,
    # and report.json, which outlives the terminal, said nothing)
    rows = "".join(f"P{i:03d},{i % 5},{'xy'[i % 2]}\n" for i in range(40))
    with pytest.warns(UserWarning, match="column 'patient_id' holds 40 different values"):
        code, err, out = run(here, csv(here, "ids.csv", "patient_id,a,label\n" + rows), capsys)
    assert code == 0, err
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    assert [w for w in warnings if w.startswith("source csv: csv ids.csv: column 'patient_id' holds 40 different values")]
    with pytest.warns(UserWarning, match="patient_id"):  # a second run in the same process warns again
        assert run(here, csv(here, "ids.csv", "patient_id,a,label\n" + rows), capsys)[0] == 0


def test_a_sources_warning_is_shown_when_its_load_then_fails(here, capsys, monkeypatch):
    from setforge import DataError
    from setforge.plugins.source.csv_source import CsvSource

    loaded = CsvSource._load

    def warn_then_fail(self, ctx):
        loaded(self, ctx)  # (warns about the id column)
        raise DataError("csv ids.csv: found wanting after the warning")

    monkeypatch.setattr(CsvSource, "_load", warn_then_fail)
    rows = "".join(f"P{i:03d},{i % 5},{'xy'[i % 2]}\n" for i in range(40))
    with pytest.warns(UserWarning, match="column 'patient_id' holds 40 different values"):
        code, err, out = run(here, csv(here, "ids.csv", "patient_id,a,label\n" + rows), capsys)
    assert code == 3 and "found wanting after the warning" in err and not out.exists()


# ---------------------------------------------------------------------------- shapes
def test_mismatched_lengths(here, capsys):
    refused(here, npz(here, "len.npz", x=X, y=Y[:-3]), capsys, "len.npz", "'y' has shape (37,)", "(40,)")


def test_labels_that_are_not_integers_or_names(here, capsys):
    y = Y.astype(np.float64)
    y[4] = np.nan
    refused(here, npz(here, "float.npz", x=X, y=y), capsys, "float.npz", "row 4 (label nan)",
            "label is not an integer or a name")


def test_zero_size_and_zero_channel_images(here, capsys):
    refused(here, npz(here, "empty.npz", x=np.zeros((40, 1, 0, 0), np.float32), y=Y), capsys, "source 'npz'",
            "non-zero channels and size", "(40, 1, 0, 0)")
    refused(here, npz(here, "nochannel.npz", x=np.zeros((40, 0, 8, 8), np.float32), y=Y), capsys,
            "non-zero channels and size")


def test_no_rows_at_all(here, capsys):
    refused(here, npz(here, "none.npz", x=np.zeros((0, 3), np.float32), y=np.zeros(0, np.int64)), capsys,
            "source 'npz'", "none.npz: x holds no rows")
    refused(here, csv(here, "none.csv", "a,b,label\n"), capsys, "none.csv", "a header but no rows")


def test_images_with_channels_the_output_cannot_hold_are_refused_before_any_step(here, capsys):
    source = npz(here, "five.npz", x=RNG.random((40, 5, 8, 8)).astype(np.float32), y=Y)
    refused(here, source, capsys, "image-folder", "5", "use output.format npz", output_format="image-folder",
            pipeline=[{"resample": "random-over"}])
    assert not (here / "out0.partial" / "steps").exists()  # the check ran before the step, not after it
    tabular = npz(here, "rows.npz", x=X, y=Y)
    refused(here, tabular, capsys, "output.format: format 'image-folder' writes image data, and source 'npz' gives "
            "tabular data; formats that write tabular data: 'npz', 'csv', 'webdataset'", output_format="image-folder")
    images = npz(here, "images.npz", x=RNG.random((40, 1, 8, 8)).astype(np.float32), y=Y)
    refused(here, images, capsys, "output.format: format 'csv' writes tabular data, and source 'npz' gives image data",
            output_format="csv", pipeline=[{"resample": "random-over"}])
    assert not (here / "out2.partial" / "steps").exists()


def test_images_of_other_modes_are_converted_not_refused(here, capsys):
    """Grayscale, RGBA and two-channel files in one folder all become the asked channels."""
    for i, mode in enumerate(["L", "RGB", "RGBA", "LA"] * 3):
        png(here / "imgs" / "ab"[i % 2] / f"{i}.png", mode)
    code, err, out = run(here, {"name": "image-folder", "params": {"path": "imgs", "channels": 3}}, capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["row_shape"] == [3, 8, 8] and report["source"]["rows"] == 12


# --------------------------------------------------------------------------- classes
def test_labels_outside_the_class_list(here, capsys):
    y = Y.copy()
    y[[5, 9]] = 7
    source = npz(here, "outside.npz", x=X, y=y, classes=np.array(["a", "b"]))
    refused(here, source, capsys, "outside.npz", "row 5 (label 7)", "label outside the 2 classes", "on_invalid: drop")
    dropped(here, source, capsys, {"label outside the 2 classes": 2}, rows=38)
    text = csv(here, "labels.csv", "a,b,label\n1,2,z\n" + GOOD_ROWS, classes=["x", "y"])
    refused(here, text, capsys, "labels.csv", "line 2, column 'label' ('z')", "label outside the class list")
    dropped(here, text, capsys, {"label outside the class list ['x', 'y']": 1}, rows=30)


def test_one_class_only(here, capsys):
    refused(here, npz(here, "one.npz", x=X, y=np.zeros(40, np.int64)), capsys, "every row is of class '0'",
            "at least two classes")
    # every row of the other class dropped as invalid leaves one class too
    x = X.copy()
    x[Y == 1, 0] = np.nan
    refused(here, {**npz(here, "half.npz", x=x, y=Y), "on_invalid": "drop"}, capsys, "every row is of class '0'")


def test_a_class_with_one_row_is_too_small_for_smote(here, capsys):
    y = Y.copy()
    y[-4:] = [2, 0, 0, 0]  # class 2 has a single row
    source = npz(here, "tiny.npz", x=X, y=y)
    refused(here, source, capsys, "resample 'smote'", "setforge", "class '2' has 1 row,", "random-over",
            pipeline=[{"resample": "smote"}])
    assert (here / "out0.partial").is_dir()  # what was done stays for --resume


# ------------------------------------------------------------------------ image folder
def test_unreadable_and_non_image_files_in_an_image_folder(here, capsys):
    for label in "ab":
        for i in range(6):
            png(here / "imgs" / label / f"{i}.png")
    (here / "imgs" / "a" / "notes.txt").write_text("not an image")
    (here / "imgs" / "b" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00broken")
    (here / "imgs" / "b" / "empty.png").write_bytes(b"")
    source = {"name": "image-folder", "params": {"path": "imgs", "channels": 1}}
    refused(here, source, capsys, "source 'image-folder'", "a/notes.txt", "unreadable or not an image",
            "on_invalid: drop")
    dropped(here, source, capsys, {"unreadable or not an image": 3}, rows=12)


# ------------------------------------------------------------------------------- csv
def test_ragged_csv_rows(here, capsys):
    source = csv(here, "ragged.csv", "a,b,label\n1,2,x\n5,y\n6,7,8,y\n" + GOOD_ROWS)
    refused(here, source, capsys, "ragged.csv", "line 3 (2 fields, the header has 3)", "ragged row")
    dropped(here, source, capsys, {"ragged row": 2}, rows=31)


def test_every_row_invalid_is_refused_even_when_dropping(here, capsys):
    source = csv(here, "hopeless.csv", "a,b,label\n1,x\n2,y\n")
    err = refused(here, {**source, "on_invalid": "drop"}, capsys, "hopeless.csv", "no valid rows")
    assert "ragged row" in err
