"""What the core reaches only through hooks (de-duplication, leak detection, output formats), the
checks ``validate`` makes of them, and how plugin failures end a run (exit codes, --debug)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml

from setforge import Dataset, hookimpl
from setforge.formats import Format
from setforge.registry import Registry
from setforge.tools.cli import main

PLUGIN = '''
import sys

import torch

import setforge
from setforge import hookimpl
from setforge.formats import Format


class Quitter(setforge.Resampler):
    """Calls sys.exit in the middle of a step."""

    name = "svc-quitter"
    modalities = ("tabular",)

    def _resample(self, ds, ctx):
        sys.exit(0)


class BrokenSource(setforge.Source):
    """Builds a Dataset whose labels do not fit its rows."""

    name = "svc-broken"
    modalities = ("tabular",)

    def _load(self, ctx):
        return setforge.Dataset(x=torch.zeros(4, 2), y=torch.zeros(3, dtype=torch.int64), classes=("a", "b"),
                                modality="tabular")


def _write(folder, split, ds, **_):
    path = folder / f"{split}.rows"
    path.write_text(str(len(ds)))
    return [path]


def _read(folder, split):
    raise setforge.DataError("svc-rows is write-only")


@hookimpl
def setforge_register_resamplers():
    return [Quitter]


@hookimpl
def setforge_register_sources():
    return [BrokenSource]


@hookimpl
def setforge_register_formats():
    return [Format("svc-rows", _write, _read)]
'''


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svc_plugin.py").write_text(PLUGIN)
    return tmp_path


def run_file(folder: Path, **changes) -> Path:
    config = {"seed": 0, "device": "cpu", "source": "sklearn-wine", "plugins": ["svc_plugin.py"],
              "evaluate": [], "output": {"dir": "out"}, **changes}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, "--quiet"] if argv[0] == "run" else list(argv))
    return code, err.getvalue()


# ------------------------------------------------------------------------- service hooks
def test_near_deduplication_without_its_provider_is_refused_at_validate(here):
    path = run_file(here, source={"name": "sklearn-wine", "deduplicate": "near"})
    code, err = cli("validate", str(path), "-p", "no:builtin-resample")
    assert code == 2 and "source.deduplicate.method" in err and "setforge_find_duplicates" in err, err
    assert cli("validate", str(path))[0] == 0


def test_drop_leaked_without_its_provider_is_refused_at_validate(here):
    path = run_file(here, split={"drop_leaked": True})
    code, err = cli("validate", str(path), "-p", "no:builtin-evaluate")
    assert code == 2 and "split.drop_leaked" in err and "setforge_find_leaked" in err, err


def _dataset() -> Dataset:
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    return Dataset(x=x, y=torch.tensor([0, 0, 1, 1]), classes=("a", "b"), modality="tabular")


def test_the_first_provider_of_a_service_hook_wins_and_none_passes_on(tmp_path):
    calls = []

    class Declines:
        @hookimpl
        def setforge_find_duplicates(self, ds):
            calls.append("declines")
            return None

    class Answers:
        @hookimpl
        def setforge_find_leaked(self, train, test):
            return torch.ones(len(train), dtype=torch.bool)

    registry = Registry(use_env=False).load()
    registry._pm.register(Declines(), name="declines")
    registry._pm.register(Answers(), name="answers")
    for name in ("declines", "answers"):
        registry.plugins[name] = type(next(iter(registry.plugins.values())))(name, "test", "0")
    ds = _dataset()
    dup_of = registry.first_result("setforge_find_duplicates", ds=ds, method="near", threshold=0.05,
                                   priority=torch.zeros(4, dtype=torch.int64))
    assert calls == ["declines"]  # registered last, asked first; its None passed the question on
    assert dup_of.tolist() == [-1, 0, -1, -1]  # the built-in provider: row 1 copies row 0
    assert registry.first_result("setforge_find_leaked", train=ds, test=ds, evaluate=[]).all()


# ------------------------------------------------------------------------------ formats
def test_a_plugin_adds_an_output_format(here):
    code, err = cli("run", str(run_file(here, output={"dir": "out", "format": "svc-rows"})))
    assert code == 0, err
    assert int((here / "out" / "train.rows").read_text()) > 0


def test_an_unknown_format_is_refused_at_validate_with_the_available_ones(here):
    code, err = cli("validate", str(run_file(here, output={"dir": "out", "format": "parquet"})))
    assert code == 2 and "output.format" in err and "npz" in err and "csv" in err, err


def test_builtin_output_formats_come_from_their_plugin(here):
    code, err = cli("validate", str(run_file(here, output={"dir": "out", "format": "csv"})), "-p", "no:builtin-output")
    assert code == 2 and "output.format" in err and "'csv'" in err, err


# ----------------------------------------------------------------------------- failures
def test_sys_exit_in_a_plugin_is_a_plugin_failure_naming_it(here):
    code, err = cli("run", str(run_file(here, pipeline=[{"resample": "svc-quitter"}])))
    assert code == 4, err
    assert "svc-quitter" in err and "svc_plugin" in err and "sys.exit(0)" in err and "--debug" in err, err
    assert not (here / "out").exists()


def test_debug_prints_the_full_traceback_of_a_plugin_failure(here, monkeypatch):
    path = run_file(here, pipeline=[{"resample": "svc-quitter"}])
    code, err = cli("run", str(path), "--debug")
    assert code == 4 and "Traceback" in err and "_resample" in err, err
    monkeypatch.setenv("SETFORGE_DEBUG", "1")
    code, err = cli("run", str(path))
    assert code == 4 and "Traceback" in err, err


def test_a_source_building_an_invalid_dataset_is_a_plugin_failure(here):
    code, err = cli("run", str(run_file(here, source="svc-broken")))
    assert code == 4 and "svc-broken" in err and "invalid Dataset" in err, err


@pytest.mark.parametrize("evaluate, place", [
    ([{"name": "fid", "params": {"feature_space": "inception"}}], "evaluate[0].params.feature_space"),
    ([{"name": "kid", "params": {"feature_space": "trained-cnn"}}], "evaluate[0].params.feature_space"),
    (["balance", {"name": "utility", "params": {"model": "cnn"}}], "evaluate[1].params.model"),
])
def test_evaluator_params_that_cannot_work_with_the_data_are_refused_at_validate(here, evaluate, place):
    code, err = cli("validate", str(run_file(here, evaluate=evaluate)))
    assert code == 2 and place in err, err


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from setforge.pipeline import progress_shown

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress_shown(True)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_shown(True) and not progress_shown(False)


def test_one_cache_per_run_trains_the_feature_network_once(tmp_path, monkeypatch):
    from setforge.plugins._shared import classifiers as _classifiers

    calls = []
    real = _classifiers.train_classifier

    def counting(kind, *args, **kwargs):
        calls.append(kind)
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(_classifiers, "train_classifier", counting)
    monkeypatch.chdir(tmp_path)
    params = {"feature_space": "trained-cnn", "cnn_epochs": 1, "min_rows": 2}
    config = {"seed": 0, "device": "cpu", "source": "sklearn-digits", "split": {"test": 0.5, "val": 0.1},
              "pipeline": [{"augment": "flip", "copies": 1}],
              "evaluate": [{"name": n, "params": params} for n in ("fid", "kid", "prdc")], "output": {"dir": "out"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    code, err = cli("run", str(tmp_path / "run.yaml"))
    assert code == 0, err
    assert calls == ["cnn"]  # fid, kid and prdc share the run's one cache
    measures = yaml.safe_load((tmp_path / "out" / "report.json").read_text())["metrics"]["measures"]
    assert {"fid", "kid", "prdc"} <= set(measures), measures.keys()
