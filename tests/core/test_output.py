"""The run folder's pieces: npz writing/reading, the atomic folder, load(), the report files."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

import setforge
from setforge import ConfigError, DataError, Dataset, FeatureInfo, Origin
from setforge.formats import (FORMATS, dataset_from_state, dataset_state, get_format, read_npz_file,
                              write_npz_file)
from setforge.output import MARKER, RunFolder
from setforge.record import dumps_json, write_report
from setforge.tools.report import format_summary, render_html, summarize_run_dir

EVIL = "<script>alert(1)</script>"


def _mixed(n: int = 10, classes=("a", "b")) -> Dataset:
    origin = torch.tensor([int(Origin.REAL)] * (n - len(Origin)) + [int(o) for o in list(Origin)[1:]] + [int(Origin.AUGMENTED)])
    return Dataset(x=torch.rand(n, 1, 3, 3, generator=torch.Generator().manual_seed(0)), y=torch.arange(n) % 2,
                   classes=classes, modality="image", origin=origin,
                   step=torch.where(origin == 0, -1, 1), parent=torch.where(origin == 0, -1, 0))


def _same(a: Dataset, b: Dataset) -> None:
    assert a.fingerprint() == b.fingerprint()
    assert a.modality == b.modality and a.classes == b.classes and a.features == b.features


# ------------------------------------------------------------------------------ npz
def test_npz_round_trip_with_shards_keeps_provenance(tmp_path):
    ds = _mixed(10)
    files = get_format("npz").write(tmp_path, "train", ds, shard_rows=4)
    assert [f.name for f in files] == ["train-00000.npz", "train-00001.npz", "train-00002.npz"]
    arrays = read_npz_file(files[0])
    assert arrays["origin"].dtype.kind == "U" and arrays["origin"][0] == "real"
    assert arrays["classes"].tolist() == ["a", "b"]
    _same(get_format("npz").read(tmp_path, "train"), ds)
    # the same data gives the same bytes, whatever the clock says
    again = tmp_path / "again"
    again.mkdir()
    get_format("npz").write(again, "train", ds, shard_rows=4)
    assert (again / "train-00001.npz").read_bytes() == files[1].read_bytes()


def test_npz_is_readable_by_numpy_and_holds_no_pickles(tmp_path):
    ds = Dataset(x=torch.randn(5, 3), y=torch.tensor([0, 1, 0, 1, 1]), classes=("x", "y"), modality="tabular",
                 features=FeatureInfo(names=("p", "q", "r"), dtypes={"p": "int64"}), groups=torch.arange(5))
    path = get_format("npz").write(tmp_path, "val", ds)[0]
    with np.load(path, allow_pickle=False) as data:
        assert data["x"].shape == (5, 3) and data["y"].tolist() == [0, 1, 0, 1, 1]
    with zipfile.ZipFile(path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    _same(get_format("npz").read(tmp_path, "val"), ds)


def test_text_and_empty_datasets_round_trip(tmp_path):
    text = Dataset(x=["one", "två", ""], y=torch.tensor([0, 1, 0]), classes=("p", "q"), modality="text")
    get_format("npz").write(tmp_path, "test", text)
    _same(get_format("npz").read(tmp_path, "test"), text)
    empty = _mixed(len(Origin))[:0]
    get_format("npz").write(tmp_path, "train", empty, shard_rows=3)
    assert len(get_format("npz").read(tmp_path, "train")) == 0


def test_formats_table_and_unknown_format():
    assert "npz" in FORMATS
    with pytest.raises(DataError, match="known"):
        get_format("parquet")


def test_dataset_state_round_trip():
    ds = _mixed(6)
    _same(dataset_from_state(dataset_state(ds)), ds)


def test_write_npz_file_is_atomic_by_name(tmp_path):
    path = write_npz_file(tmp_path / "a.npz", {"x": np.arange(3)})
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------------------ run folder
def test_run_folder_open_commit_and_force(tmp_path):
    folder = RunFolder(tmp_path / "run")
    partial = folder.open()
    (partial / "report.json").write_text("{}")
    (folder.step_dir(0, "augment", "../evil") / "kept.txt").parent.mkdir(parents=True)
    assert folder.step_dir(0, "augment", "../evil").parent == partial / "steps"
    assert folder.commit() == tmp_path / "run"
    assert (tmp_path / "run" / MARKER).is_file() and not partial.exists()
    with pytest.raises(ConfigError, match="--force"):
        RunFolder(tmp_path / "run").open()
    again = RunFolder(tmp_path / "run")
    (again.open(force=True) / "new.txt").write_text("new")
    again.commit(force=True)
    assert (tmp_path / "run" / "new.txt").is_file() and not (tmp_path / "run" / "report.json").exists()


def test_resume_keeps_the_partial_folder_and_a_fresh_run_clears_it(tmp_path):
    partial = RunFolder(tmp_path / "run").open()
    (partial / "steps").mkdir()
    (partial / "steps" / "checkpoint.pt").write_text("state")
    for stale in ("train-00000.npz", "preprocess-state.pt"):  # what a try wrote at its end is written anew
        (partial / stale).write_text("old")
    (partial / "figures").mkdir()
    resumed = RunFolder(tmp_path / "run").open(resume=True)
    assert (resumed / "steps" / "checkpoint.pt").is_file()
    assert sorted(p.name for p in resumed.iterdir()) == [MARKER, "steps"]
    assert not (RunFolder(tmp_path / "run").open() / "steps").exists()


def test_a_partial_folder_setforge_did_not_make_is_left_alone(tmp_path):
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="not made by setforge"):
        RunFolder(tmp_path / "run").open()
    assert (tmp_path / "run.partial" / "mine.txt").is_file()


def test_load_refuses_an_unfinished_folder(tmp_path):
    RunFolder(tmp_path / "run").open()
    with pytest.raises(DataError, match="--resume"):
        setforge.load(tmp_path / "run")
    with pytest.raises(ConfigError, match="split"):
        setforge.load(tmp_path / "run", split="everything")



def test_load_reads_a_format_from_a_run_files_plugin_with_a_registry_that_loads_it(tmp_path):
    # (from an audit: load() knew the installed plugins only, so such a run could not be read back)
    (tmp_path / "my_format.py").write_text(
        "from setforge import hookimpl\nfrom setforge.formats import FORMATS, Format\n\n\n@hookimpl\n"
        "def setforge_register_formats():\n    return [Format('my-npz', FORMATS['npz'].write, FORMATS['npz'].read)]\n")
    ds = _mixed(10)
    (tmp_path / "run").mkdir()
    FORMATS["npz"].write(tmp_path / "run", "train", ds)
    (tmp_path / "run" / "report.json").write_text(json.dumps({"output": {"format": "my-npz"}}))
    with pytest.raises(DataError, match="'my-npz' has no writer here.*registry"):
        setforge.load(tmp_path / "run")
    registry = setforge.Registry(local=[str(tmp_path / "my_format.py")]).load()
    _same(setforge.load(tmp_path / "run", registry=registry), ds)


_FAILING_FORMAT = """
from setforge import hookimpl
from setforge.formats import FORMATS, Format


class _Writer:
    def add(self, ds):
        raise ValueError("the stream writer broke")

    def close(self):
        return []


def _write(folder, split, ds, shard_rows=None):
    raise ValueError("the writer broke")


@hookimpl
def setforge_register_formats():
    npz = FORMATS["npz"]
    return [Format("broken-write", _write, npz.read),
            Format("broken-stream", npz.write, npz.read, stream=lambda folder, split, like, shard_rows: _Writer())]
"""


@pytest.mark.parametrize("fmt, stream, said", [("broken-write", False, "write: ValueError: the writer broke"),
                                               ("broken-stream", True, "stream add: ValueError: the stream writer broke")])
def test_a_plugin_format_that_fails_is_a_plugin_failure_naming_it(tmp_path, capsys, fmt, stream, said):
    # (from an audit: a plugin format's exception ended the run with a traceback, exit 1, naming no plugin)
    from setforge.tools.cli import main

    (tmp_path / "bad_format.py").write_text(_FAILING_FORMAT)
    np.savez(tmp_path / "rows.npz", x=np.random.default_rng(0).random((40, 3)).astype(np.float32),
             y=np.arange(40) % 2)
    source = f"{{name: npz, params: {{path: rows.npz}}{', stream: true' if stream else ''}}}"
    (tmp_path / "run.yaml").write_text(f"plugins: [bad_format.py]\nsource: {source}\n"
                                       f"output: {{dir: {tmp_path / 'out'}, format: {fmt}}}\n")
    assert main(["run", str(tmp_path / "run.yaml"), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert f"plugin 'bad_format' (local -) failed in output format '{fmt}' {said}" in err, err
    assert not (tmp_path / "out").exists() and (tmp_path / "out.partial").is_dir()  # kept for --resume


# ------------------------------------------------------------------------------ report
def _report() -> dict:
    return {
        "seed": 0, "device": "cpu", "classes": [EVIL, "b"],
        "source": {"name": EVIL, "rows": 10, "dropped_invalid": {EVIL: 1}},
        "split": {"method": "stratified", "rows": {"train": 6, "val": 2, "test": 2}, "fingerprints": {"test": "abc"}},
        "counts": {"raw_train": {"by_class": {EVIL: 4, "b": 2}}, "optimised": {"by_class": {EVIL: 4, "b": 4},
                                                                                "by_origin": {"real": 6, "resampled": 2}},
                   "val": {"by_class": {EVIL: 1, "b": 1}}, "test": {"by_class": {EVIL: 1, "b": 1}}},
        "steps": [{"index": 0, "kind": "resample", "name": EVIL, "params": {"k": EVIL}, "rows_in": 6, "rows_out": 8,
                   "counts": {"by_class": {EVIL: 4, "b": 4}, "by_origin": {"resampled": 2}}, "note": EVIL}],
        "metrics": {"measures": {"utility": {"raw/accuracy": {"value": 0.5, "n": 2},
                                             "optimised/accuracy": {"value": 0.75, "n": 2},
                                             f"raw/recall/{EVIL}": {"value": 1.0, "n": 1}}},
                    "skipped": {"utility": {"x": EVIL}}, "figures": {}},
        "evaluators": {"utility": {"summary": "model logistic-regression"}},
        "config": {"note": EVIL}, "versions": {"torch": "2"}, "warnings": [EVIL],
    }


def test_html_report_escapes_every_string(tmp_path):
    page = render_html(_report(), tmp_path)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_json_is_sorted_and_stable(tmp_path):
    write_report(tmp_path, _report(), {"total": 1.5})
    first = (tmp_path / "report.json").read_bytes()
    write_report(tmp_path, dict(reversed(list(_report().items()))), {"total": 9.0})
    assert (tmp_path / "report.json").read_bytes() == first
    assert json.loads(first)["seed"] == 0 and json.loads((tmp_path / "timings.json").read_text())["total"] == 9.0
    assert dumps_json({"b": 1, "a": 2}).index('"a"') < dumps_json({"b": 1, "a": 2}).index('"b"')


def test_summary_shows_counts_and_raw_vs_optimised(tmp_path):
    text = format_summary(_report(), tmp_path / "run")
    assert "accuracy" in text and "0.5000" in text and "0.7500" in text and "+0.2500" in text
    assert "model logistic-regression" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["b", "2", "4"] in lines and ["total", "6", "8"] in lines


def test_summarize_run_dir_rewrites_the_html(tmp_path):
    (tmp_path / MARKER).write_text("")
    write_report(tmp_path, _report(), {"total": 1.0})
    (tmp_path / "report.html").unlink()
    text = summarize_run_dir(tmp_path)
    assert "1.0 s" in text and (tmp_path / "report.html").is_file()
    with pytest.raises(DataError, match="not a finished"):
        summarize_run_dir(tmp_path / "nothing")


def test_a_second_process_writing_the_same_folder_is_refused(tmp_path):
    # (the second run deleted the first one's working folder, which then died with a traceback)
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from setforge.output import RunFolder; held = RunFolder(sys.argv[1]); held.open(); "
        "print('open', flush=True); time.sleep(60)"), str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ConfigError, match="another setforge run is writing"):
            RunFolder(tmp_path / "run").open(resume=True)
        assert (tmp_path / "run.partial").is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert RunFolder(tmp_path / "run").open().is_dir()  # (its lock went with it)


def test_a_replaced_folder_setforge_did_not_make_is_refused_before_any_work(tmp_path):
    (tmp_path / "run.replaced").mkdir()
    (tmp_path / "run.replaced" / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="run.replaced exists and was not made by setforge"):
        RunFolder(tmp_path / "run").open()
    assert (tmp_path / "run.replaced" / "mine.txt").is_file()


def test_an_output_dir_that_is_a_link_to_a_run_folder_is_replaced_as_a_link(tmp_path):
    # (the link was renamed to <dir>.replaced and removed with rmtree, which refuses links: it stayed,
    # and the next --force failed after all its work)
    def commit_a_run(force: bool) -> None:
        folder = RunFolder(tmp_path / "linked")
        (folder.open(force=force) / "report.json").write_text("{}")
        folder.commit(force=force)

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "report.json").write_text("{}")
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    for _ in range(2):
        commit_a_run(force=True)
        assert (tmp_path / "linked").is_dir() and not (tmp_path / "linked").is_symlink()
        assert not os.path.lexists(tmp_path / "linked.replaced")
    assert (tmp_path / "elsewhere" / "report.json").is_file()  # what the link pointed at is left alone


def test_a_full_disk_while_writing_an_npz_names_the_file_and_leaves_no_half_file(tmp_path, monkeypatch):
    # (zipfile's own OSError on a real full disk carries no file name: the message named no path)
    import errno

    from setforge.formats import write_npz_file

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", full)
    with pytest.raises(OSError) as caught:
        write_npz_file(tmp_path / "train-00000.npz", {"x": np.zeros(3)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "train-00000.npz.tmp")
    assert list(tmp_path.iterdir()) == []


def test_npz_shards_numbered_past_99999_are_read_and_in_number_order(tmp_path):
    # (from an audit: the reader matched exactly five digits and sorted names as text, so shard
    # 100000 and later, which the writers name with six digits, were silently left out on load)
    ds = Dataset(x=torch.arange(3, dtype=torch.float32)[:, None], y=torch.tensor([0, 1, 0]), classes=("a", "b"),
                 modality="tabular")
    writer = get_format("npz").stream(tmp_path, "train", ds[:0], 1, shard=(0, 100_000))  # shard k: k * 100000
    writer.add(ds)
    assert [p.name for p in writer.close()] == ["train-00000.npz", "train-100000.npz", "train-200000.npz"]
    (tmp_path / "train-00001.npz.tmp").write_bytes(b"")  # a half-written file is not a shard
    assert get_format("npz").read(tmp_path, "train").x[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_an_empty_or_truncated_npz_file_is_a_data_error_naming_it(tmp_path):
    path = get_format("npz").write(tmp_path, "val", _mixed(10))[0]
    path.write_bytes(b"")  # (numpy raised EOFError: no place, no exit code)
    with pytest.raises(DataError, match="cannot read .*val.npz"):
        get_format("npz").read(tmp_path, "val")
