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
