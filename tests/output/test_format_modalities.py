"""An ``output.format`` that cannot write the data's modality (``Format.modalities``) is refused as
early as the facts allow: by ``setforge validate`` when the source gives one modality, else once the
source is loaded, before any step (and in ``run --dry-run``), naming ``output.format`` and the formats
that write that data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from setforge import ConfigError, DataError, Dataset
from setforge.checks import load_and_check
from setforge.formats import FORMATS, Format
from setforge.registry import Registry, registry_for
from setforge.tools.cli import main


@pytest.fixture(scope="module")
def registry():
    return Registry(use_env=False).load()


def _file(tmp_path, source: dict, fmt: str, pipeline: list | None = None) -> str:
    config = {"seed": 0, "device": "cpu", "source": source, "split": {"test": 0.3, "val": 0.0},
              "pipeline": pipeline or [], "evaluate": [], "output": {"dir": str(tmp_path / "run"), "format": fmt}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_builtin_formats_say_what_they_write(registry):
    formats = registry.formats()
    assert formats["csv"].modalities == ("tabular",) and formats["image-folder"].modalities == ("image",)
    assert set(formats["webdataset"].modalities) == set(FORMATS["npz"].modalities) == {"image", "tabular", "audio", "text"}


@pytest.mark.parametrize(("source", "fmt", "expected"), [
    ({"name": "sklearn-digits"}, "csv", "format 'csv' writes tabular data, and source 'sklearn-digits' gives image "
                                        "data; formats that write image data: 'npz', 'image-folder', 'webdataset'"),
    ({"name": "sklearn-breast-cancer"}, "image-folder", "format 'image-folder' writes image data, and source "
                                                        "'sklearn-breast-cancer' gives tabular data; formats that "
                                                        "write tabular data: 'npz', 'csv', 'webdataset'"),
])
def test_validate_refuses_a_format_that_cannot_write_the_sources_one_modality(tmp_path, source, fmt, expected):
    with pytest.raises(ConfigError) as raised:
        load_and_check(_file(tmp_path, source, fmt), [], registry_for)
    assert raised.value.problems == [("output.format", expected)]


def test_validate_takes_a_format_that_writes_the_sources_modality(tmp_path):
    load_and_check(_file(tmp_path, {"name": "sklearn-breast-cancer"}, "csv"), [], registry_for)
    load_and_check(_file(tmp_path, {"name": "sklearn-digits"}, "webdataset"), [], registry_for)


def test_a_text_source_with_csv_output_is_refused_by_validate(tmp_path, capsys, monkeypatch):
    # (found by an audit: text-file + output.format csv passed validate and failed only once the data was loaded)
    pytest.importorskip("setforge_text")
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    (tmp_path / "texts.csv").write_text("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(20)))
    path = _file(tmp_path, {"name": "text-file", "params": {"path": "texts.csv"}}, "csv",
                 [{"augment": "word-swap", "copies": 1}])
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert ("output.format: format 'csv' writes tabular data, and source 'text-file' gives text data; formats that "
            "write text data: 'npz', 'webdataset'") in err, err
    assert not (tmp_path / "run.partial").exists()


def test_a_source_of_several_modalities_is_refused_once_loaded_before_any_step(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    np.savez(tmp_path / "texts.npz", x=np.array([f"text number {i}" for i in range(30)]), y=np.arange(30) % 2)
    # (no step: a step that refuses text would be named first, exit 2, as
    # tests/core/test_modality_check.py shows)
    path = _file(tmp_path, {"name": "npz", "params": {"path": "texts.npz"}}, "csv", [])
    assert main(["validate", path]) == 0  # npz gives any modality: only the data tells
    expected = ("setforge: bad data: output.format: format 'csv' writes tabular data, and source 'npz' gives text "
                "data; formats that write text data: 'npz', 'webdataset'")
    for args in (["run", path, "--dry-run"], ["run", path, "--quiet"]):
        capsys.readouterr()
        assert main(args) == 3
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial" / "steps").exists()


def test_a_format_of_a_plugin_without_modalities_takes_every_modality():
    mine = Format("mine", lambda *a, **k: [], lambda folder, split: None)
    tabular = Format("tabular-only", mine.write, mine.read, modalities=("tabular",))
    formats = {"mine": mine, "tabular-only": tabular}
    images = Dataset(x=torch.zeros(2, 1, 2, 2), y=torch.tensor([0, 1]), classes=("a", "b"), modality="image")
    mine.check_data(images, "npz", formats)
    assert tabular.modality_problem(("image", "tabular"), "npz", formats) == ""  # several: the data tells
    with pytest.raises(DataError, match="^output.format: format 'tabular-only' writes tabular data, and source 'npz' "
                                        "gives image data; formats that write image data: 'mine'$"):
        tabular.check_data(images, "npz", formats)
