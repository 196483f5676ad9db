"""What the `setforge` command says to a person who typed something wrong: each message names the
place and what is accepted, in the words of the command that was typed (found by an audit)."""

from __future__ import annotations

import importlib
import json

import pytest

from setforge.tools.cli import main


def _err(capsys) -> str:
    return capsys.readouterr().err


# ------------------------------------------------------------------------------- demo
def test_a_second_demo_names_demo_force_not_a_run_file_key(tmp_path, monkeypatch, capsys):
    # (the demo has no run file: "output.force" and "another output.dir" were no advice a demo user could take)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / ".setforge-run").write_text("setforge run folder\n")
    assert main(["demo", "--quiet"]) == 2
    err = _err(capsys)
    assert "runs/demo exists (an earlier demo); `setforge demo --force` replaces it" in err
    assert "output." not in err and "invalid run file" not in err


def test_the_demo_never_replaces_a_folder_it_did_not_make(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "mine.txt").write_text("keep me")
    assert main(["demo", "--quiet", "--force"]) == 2
    err = _err(capsys)
    assert "runs/demo exists and is not a setforge run folder; not replacing it, even with --force" in err
    assert "output." not in err
    assert (tmp_path / "runs" / "demo" / "mine.txt").read_text() == "keep me"


def test_a_demo_that_cannot_write_its_run_folder_says_so_as_run_does(monkeypatch, capsys):
    from setforge.errors import OutputError
    from setforge.tools import demo

    def full_disk(**_):
        raise OutputError("cannot write runs/demo.partial/train-00000.npz: No space left on device")

    monkeypatch.setattr(demo, "run_demo", full_disk)
    assert main(["demo", "--quiet"]) == 5
    assert _err(capsys).startswith("setforge: cannot write the run folder: cannot write runs/demo.partial/")


# ---------------------------------------------------------------------------- plugins
INVERT = '''
from setforge import Augmenter, hookimpl

class Invert(Augmenter):
    """Inverts the colours."""
    name = "invert-colours"

    def _transform(self, x, y, params):
        return 1.0 - x

@hookimpl
def setforge_register_augmenters():
    return [Invert]
'''


def test_a_bare_name_in_plugins_says_what_plugins_takes_and_names_the_file_beside_it(tmp_path, capsys):
    # (it was "unknown augment 'invert-colours'; did you mean 'invert'?", the built-in: not what was wrong)
    (tmp_path / "invert.py").write_text(INVERT)
    run_file = tmp_path / "run.yaml"
    run_file.write_text("source: sklearn-digits\nplugins: [invert, sfplug_nowhere]\n"
                        "pipeline: [{augment: invert-colours}]\n")
    assert main(["validate", str(run_file)]) == 2
    err = _err(capsys)
    assert (f"plugins[0]: 'invert' is not an importable module; to load {tmp_path / 'invert.py'}, write "
            "'invert.py'. `plugins` takes .py files (paths from the run file's folder) and names of importable "
            "modules; installed plugins (entry points) load without being named") in err
    assert "plugins[1]: no importable module is named 'sfplug_nowhere'. `plugins` takes .py files" in err
    assert "did you mean 'invert'" not in err
    run_file.write_text(run_file.read_text().replace("[invert, sfplug_nowhere]", "[invert.py]"))
    assert main(["validate", str(run_file)]) == 0, _err(capsys)


def test_a_bare_name_after_p_is_a_usage_error_at_p(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "invert.py").write_text(INVERT)
    assert main(["plugins", "list", "-p", "invert"]) == 2
    err = _err(capsys)
    assert err.startswith("setforge: invalid usage:\n")
    assert "-p: 'invert' is not an importable module; to load" in err and "paths from the current folder" in err
    assert main(["plugins", "list", "-p", "json", "-p", "no:sfplug_nowhere"]) == 0  # a module, and a block


def test_a_module_that_is_found_but_fails_to_import_is_still_a_broken_plugin(tmp_path, monkeypatch, capsys):
    (tmp_path / "sfplug_breaks.py").write_text("raise ImportError('needs a peer')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert main(["plugins", "list", "-p", "sfplug_breaks"]) == 0
    assert "broken: failed to import: ImportError: needs a peer" in capsys.readouterr().out


def _models_distribution(root, entry_points):
    """A distribution contributing downstream models (entry-point group setforge.models)."""
    info = root / "sfplug_models-1.5.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sfplug-models\nVersion: 1.5\n")
    (info / "entry_points.txt").write_text("[setforge.models]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    (root / "sfplug_models.py").write_text("class Forest:\n    modalities = ('tabular',)\n")


def test_plugins_list_shows_the_downstream_models_in_their_own_section(tmp_path, monkeypatch, capsys):
    # (the models evaluators take as `model:` were in no listing: a user could not discover them)
    _models_distribution(tmp_path, {"sfplug-forest": "sfplug_models:Forest", "mlp": "sfplug_models:Forest",
                                    "sfplug-gone": "sfplug_models_gone:Model"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert main(["plugins", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    models = {r["name"]: r for r in rows if r["kind"] == "model" and r["distribution"] == "setforge"}
    for name in ("logistic-regression", "mlp", "cnn", "gradient-boosting"):
        assert models[name] == {"kind": "model", "name": name, "plugin": "builtin-evaluate", "distribution": "setforge",
                                "version": models[name]["version"], "status": "ok"}
    assert "auto" not in models  # a choice of cas and tstr, not a model
    forest = [r for r in rows if r["name"] == "sfplug-forest"]
    assert forest == [{"kind": "model", "name": "sfplug-forest", "plugin": "sfplug_models",
                       "distribution": "sfplug-models", "version": "1.5", "status": "ok"}]
    shadowed = [r for r in rows if r["kind"] == "model" and r["distribution"] == "sfplug-models" and r["name"] == "mlp"]
    assert shadowed[0]["status"] == "conflict: a model of this name comes with plugin 'builtin-evaluate'"
    gone = [r for r in rows if r["name"] == "sfplug-gone"]
    assert gone[0]["status"].startswith("broken: failed to import: ModuleNotFoundError")
    kinds = [r["kind"] for r in rows if r["status"] == "ok"]
    assert kinds.index("model") > max(i for i, k in enumerate(kinds) if k == "evaluate")  # a section of its own
    assert main(["plugins", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    header = table[0]
    line = next(ln for ln in table if ln.split()[:2] == ["model", "logistic-regression"])
    assert line.index("builtin-evaluate") == header.index("PLUGIN")  # the other kinds' columns
    assert line.index("setforge") == header.index("DISTRIBUTION")


def test_plugins_show_says_which_evaluators_take_a_model(capsys):
    assert main(["plugins", "show", "model/gradient-boosting"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model/gradient-boosting  (plugin builtin-evaluate, setforge ")
    assert "`model` in the params of evaluate/ablation, cas, tstr, utility" in out
    assert main(["plugins", "show", "mlp"]) == 0 and "evaluate/ablation" in capsys.readouterr().out
    assert main(["plugins", "show", "model/mlpp"]) == 2
    assert "name: unknown model 'mlpp'. Known: cnn, gradient-boosting, logistic-regression, mlp" in _err(capsys)


def test_plugins_show_of_a_contributed_model_names_the_evaluators_that_take_its_data(tmp_path, monkeypatch, capsys):
    # every evaluator with a `model` param takes a contributed model's name (one lookup, in
    # plugins/evaluate/_downstream.py); those whose data the model cannot take are not offered
    _models_distribution(tmp_path, {"sfplug-forest": "sfplug_readers:Forest", "sfplug-reader": "sfplug_readers:Reader"})
    (tmp_path / "sfplug_readers.py").write_text("class Forest:\n    modalities = ('tabular',)\n\n\n"
                                                "class Reader:\n    modalities = ('text',)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert main(["plugins", "show", "model/sfplug-forest"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model/sfplug-forest  (plugin sfplug_readers, sfplug-models 1.5)\nstatus: ok\n"
                          "modalities: tabular\n")
    assert "`model` in the params of evaluate/ablation, cas, tstr, utility." in out
    assert main(["plugins", "show", "sfplug-reader"]) == 0
    out = capsys.readouterr().out
    assert "modalities: text" in out and "`model` in the params of evaluate/utility." in out  # (only it takes text)
    assert main(["plugins", "show", "model/gradient-boosting"]) == 0  # the built-ins: as before
    assert "`model` in the params of evaluate/ablation, cas, tstr, utility." in capsys.readouterr().out


FORMATS_PLUGIN = '''
"""Output formats for a test.

``sfplug-rows``: one line per row, for reading by eye.
"""
from setforge import hookimpl
from setforge.formats import Format


def write_rows(folder, split, ds, **_):
    """Write `ds` as ``<split>.rows``, one line per row."""
    return []


@hookimpl
def setforge_register_formats():
    return [Format("sfplug-rows", write_rows, lambda folder, split: None, modalities=("tabular",)),
            Format("sfplug-clash", write_rows, lambda folder, split: None)]
'''


def _format_plugins(folder):
    (folder / "sfplug_rows.py").write_text(FORMATS_PLUGIN)
    (folder / "sfplug_clash.py").write_text(FORMATS_PLUGIN.replace('Format("sfplug-rows", write_rows, lambda folder, '
                                                                   'split: None, modalities=("tabular",)),', ""))
    (folder / "sfplug_badfmt.py").write_text("from setforge import hookimpl\n\n\n@hookimpl\n"
                                             "def setforge_register_formats():\n    return ['parquet']\n")
    return [arg for name in ("sfplug_rows", "sfplug_clash", "sfplug_badfmt") for arg in ("-p", f"{folder / name}.py")]


def test_plugins_list_shows_the_output_formats_with_their_plugins_and_the_broken_and_clashing_ones(tmp_path, capsys):
    # (found by an audit: `plugins list` showed components and models, but no output format unless two
    # plugins registered it; a user could not discover `output.format` names nor who brought them)
    options = _format_plugins(tmp_path)
    assert main(["plugins", "list", "--json", *options]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["kind"] == "format"]
    from setforge import __version__

    assert rows[:5] == [
        {"kind": "format", "name": "npz", "plugin": "core", "distribution": "setforge", "version": __version__,
         "status": "ok"},
        *({"kind": "format", "name": name, "plugin": "builtin-output", "distribution": "setforge",
           "version": __version__, "status": "ok"} for name in ("csv", "image-folder")),
        {"kind": "format", "name": "sfplug-rows", "plugin": "sfplug_rows", "distribution": "local", "version": "-",
         "status": "ok"},
        {"kind": "format", "name": "webdataset", "plugin": "builtin-output", "distribution": "setforge",
         "version": __version__, "status": "ok"}]
    assert sorted((r["name"], r["plugin"], r["status"]) for r in rows[5:7]) == [
        ("sfplug-clash", "sfplug_clash", "conflict: name registered by more than one plugin"),
        ("sfplug-clash", "sfplug_rows", "conflict: name registered by more than one plugin")]
    [broken] = rows[7:]
    assert (broken["name"], broken["plugin"], broken["distribution"]) == ("-", "sfplug_badfmt", "local")
    assert broken["status"] == ("broken: setforge_register_formats() failed: setforge.errors.PluginError: must return "
                                "a list of setforge.formats.Format, got ['parquet']")
    assert main(["plugins", "list", *options]) == 0
    table = capsys.readouterr().out.splitlines()
    line = next(ln for ln in table if ln.split()[:2] == ["format", "sfplug-rows"])
    header = table[0]
    assert line.index("sfplug_rows") == header.index("PLUGIN") and line.index("local") == header.index("DISTRIBUTION")
    assert table.index(line) > max(i for i, ln in enumerate(table) if ln.startswith("model "))  # after the models


def test_plugins_show_format_says_what_the_format_writes_and_which_data(tmp_path, capsys):
    options = _format_plugins(tmp_path)
    assert main(["plugins", "show", "format/sfplug-rows", *options]) == 0
    assert capsys.readouterr().out == (
        "format/sfplug-rows  (plugin sfplug_rows, local -)\nstatus: ok\nmodalities: tabular\n"
        "streams: no (a streaming run, source.stream, needs a format that does)\n\n"
        "``sfplug-rows``: one line per row, for reading by eye.\n\n"
        "write: Write `ds` as ``<split>.rows``, one line per row.\n")
    assert main(["plugins", "show", "webdataset"]) == 0  # a bare name that is no component's
    out = capsys.readouterr().out
    assert out.startswith("format/webdataset  (plugin builtin-output, setforge ") and "streams: yes" in out
    assert "modalities: image, tabular, audio, text (any: the format declares none)" in out
    assert "write: Write `ds` as ``<folder>/<split>-NNNNNN.tar`` shards" in out
    assert main(["plugins", "show", "format/npz"]) == 0
    assert "``npz`` (the default): the training split as ``train-00000.npz``" in capsys.readouterr().out
    assert main(["plugins", "show", "format/sfplug-clash", *options]) == 4
    err = _err(capsys)
    assert "output format 'sfplug-clash' is registered by plugin 'sfplug_" in err
    assert "plugin 'sfplug_rows' (local -)" in err and "plugin 'sfplug_clash' (local -)" in err
    assert "-p no:sfplug_rows" in err and "-p no:sfplug_clash" in err and "or plugins_deny in the run file)" in err
    assert main(["plugins", "show", "format/parquet"]) == 2
    assert "name: unknown output format 'parquet'. Known: csv, image-folder, npz, webdataset\n" in _err(capsys)


# ----------------------------------------------------------------------------- report
def test_report_on_a_path_that_does_not_exist_is_a_usage_error_naming_it(tmp_path, monkeypatch, capsys):
    # (it was exit 3, "bad data: ... no report.json", for a path that is not there at all)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "runs/nope"]) == 2
    assert _err(capsys) == ("setforge: invalid usage:\n  RUN_DIR: runs/nope does not exist (a run folder is the "
                            "output.dir of a finished run)\n")
    (tmp_path / "runs" / "cut.partial").mkdir(parents=True)
    assert main(["report", "runs/cut"]) == 2
    assert "runs/cut does not exist (" in (err := _err(capsys)) and "cut.partial exists: the run did not finish" in err
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "runs" / "empty" / "report.json").mkdir()  # (not a file)
    (tmp_path / "a.txt").write_text("")
    assert main(["compare", "runs/empty", "a.txt", "runs/nope"]) == 2
    err = _err(capsys)
    assert "RUN_DIR: runs/empty is not a finished setforge run folder: no report.json" in err
    assert "RUN_DIR: a.txt is a file, not a run folder; give a run folder" in err
    assert "RUN_DIR: runs/nope does not exist" in err


def test_report_in_a_folder_with_no_report_is_no_traceback(tmp_path, monkeypatch, capsys):
    # (`setforge report .` there raised ValueError: Path('.').with_name, exit 1)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "."]) == 2
    assert "RUN_DIR: . is not a finished setforge run folder: no report.json" in _err(capsys)
    assert main(["report", "/"]) == 2


# ------------------------------------------------------------------------- new-plugin
def test_new_plugin_usage_errors_say_what_is_accepted(tmp_path, capsys):
    assert main(["new-plugin", "My_Op", "--kind", "augment", "--dir", str(tmp_path)]) == 2
    assert _err(capsys) == ("setforge: invalid usage:\n  name: must be kebab-case like 'my-op' (lower-case letters "
                            "and digits, words joined by '-', starting with a letter), got 'My_Op'\n")
    assert main(["new-plugin", "my-op", "--kind", "augmenter"]) == 2
    err = _err(capsys)
    assert "usage: setforge new-plugin [-h] --kind KIND [--dir DIR] name" in err  # not the seven kinds in braces
    assert "argument --kind: invalid choice: 'augmenter' (choose from 'source', " in err
    assert main(["new-plugin", "--kind", "augment"]) == 2
    assert "the following arguments are required: name" in _err(capsys)
    assert main(["new-plugin", "my-op", "--kind", "augment", "--dir", str(tmp_path)]) == 0
    assert main(["new-plugin", "my-op", "--kind", "augment", "--dir", str(tmp_path)]) == 2
    assert "already exists; choose another name, or another --dir" in _err(capsys)


# ------------------------------------------------------------------------------- help
@pytest.mark.parametrize(("argv", "expected"), [
    (["validate", "--help"], "file                the run file (.yaml, .yml, .toml or .json)"),
    (["report", "--help"], "RUN_DIR     a finished run folder (the one holding report.json)"),
    (["new-plugin", "--help"], "--kind KIND  the component's kind: source, preprocess, augment, resample,"),
    (["plugins", "show", "--help"], "model/NAME: a downstream model"),
])
def test_every_argument_says_what_it_takes(argv, expected, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(argv) == 0
    assert " ".join(expected.split()) in " ".join(capsys.readouterr().out.split())


def test_a_usage_error_of_a_command_without_a_run_file_does_not_blame_a_run_file(capsys):
    assert main(["compare", "only-one"]) == 2
    assert _err(capsys).startswith("setforge: invalid usage:\n")
    assert main(["run"]) == 2  # run and validate read a run file: either may be wrong
    assert "setforge: invalid run file or usage:\n" in _err(capsys)


def test_plugins_without_a_subcommand_prints_its_help_and_exits_2(capsys):
    # (it exited 0: the help came from parse_args(["plugins", "--help"]), whose SystemExit(0) was returned)
    assert main(["plugins"]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().out
    assert main([]) == 2


def test_load_in_a_folder_with_no_report_names_it_and_any_unfinished_run(tmp_path, monkeypatch):
    # (setforge.load(".") raised ValueError: PosixPath('.') has an empty name)
    import setforge
    from setforge import DataError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^\. is not a finished setforge run folder: no report.json$"):
        setforge.load(".")
    (tmp_path / "runs" / "cut.partial").mkdir(parents=True)
    with pytest.raises(DataError, match=r"cut.partial exists: the run did not finish"):
        setforge.load("runs/cut")


def test_a_problem_the_run_finds_names_the_set_that_gave_the_value(tmp_path, capsys, monkeypatch):
    # (device: cuda without CUDA, from --set, was refused naming `device` only)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "run.yaml"
    path.write_text(f"source: sklearn-wine\nevaluate: []\noutput: {{dir: {tmp_path / 'out'}}}\n")
    for extra in (["--dry-run"], ["--quiet"]):
        assert main(["run", str(path), "--set", "device=cuda", *extra]) == 2
        assert "device: 'cuda' was asked for, but CUDA is not available here; use device: auto or cpu " \
               "(from --set device=cuda)" in capsys.readouterr().err
