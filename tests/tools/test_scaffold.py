"""`setforge new-plugin` makes a working plugin package of every kind."""

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from setforge import KINDS
from setforge.registry import Registry
from setforge.tools.cli import main
from setforge.testing import check_component
from tests.core.plugin_dists import install, make_distribution


@pytest.mark.parametrize("kind", KINDS)
def test_new_plugin_is_a_working_component(kind, tmp_path, monkeypatch, capsys):
    name = f"my-{kind}-thing"
    assert main(["new-plugin", name, "--kind", kind, "--dir", str(tmp_path)]) == 0
    root = tmp_path / f"setforge-{name}"
    assert f"created {root}" in capsys.readouterr().out
    project = tomllib.loads((root / "pyproject.toml").read_text())
    module_name = "setforge_" + name.replace("-", "_")
    assert project["project"]["entry-points"]["setforge"] == {name: module_name}
    assert (root / "tests" / f"test_{module_name}.py").exists()
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module(module_name)
    try:
        (cls,) = [getattr(module, n) for n in module.__all__]
        assert cls.kind == kind and cls.name == name
        check_component(cls)
    finally:
        sys.modules.pop(module_name, None)


def test_new_plugin_rejects_bad_names(tmp_path, capsys):
    assert main(["new-plugin", "Bad_Name", "--kind", "augment", "--dir", str(tmp_path)]) == 2
    assert "kebab-case" in capsys.readouterr().err
    assert main(["new-plugin", "ok", "--kind", "augmenter"]) == 2


def test_new_plugin_refuses_a_name_its_kind_already_has(tmp_path, capsys):
    # (found by an audit: a plugin named flip broke every run that used the built-in flip)
    assert main(["new-plugin", "flip", "--kind", "augment", "--dir", str(tmp_path)]) == 2
    assert "augment 'flip' (plugin 'builtin-augment'" in capsys.readouterr().err and not list(tmp_path.iterdir())
    assert main(["new-plugin", "flip", "--kind", "evaluate", "--dir", str(tmp_path)]) == 0  # another kind: free


@pytest.mark.parametrize(("name", "kind"), [("none", "augment"), ("true", "evaluate"), ("dataset", "source"),
                                            ("metrics", "evaluate"), ("origin", "evaluate"), ("registry", "resample")])
def test_new_plugin_names_that_read_as_python_names_still_work(name, kind, tmp_path, monkeypatch):
    # (found by an audit: `class None` did not parse, and a source class named Dataset built itself)
    assert main(["new-plugin", name, "--kind", kind, "--dir", str(tmp_path)]) == 0
    root, module_name = tmp_path / f"setforge-{name}", f"setforge_{name}"
    monkeypatch.syspath_prepend(str(root))
    try:
        module = importlib.import_module(module_name)
        (cls,) = [getattr(module, n) for n in module.__all__]
        assert cls.name == name
        check_component(cls)
        generated_test: dict = {}  # its own imports are not shadowed by the component class
        exec((root / "tests" / f"test_{module_name}.py").read_text(), generated_test)
        assert generated_test["Registry"] is Registry and generated_test[cls.__name__] is cls
    finally:
        sys.modules.pop(module_name, None)


def test_new_plugin_refuses_the_name_of_an_installed_distribution(tmp_path, monkeypatch, capsys):
    # (found by an audit: `new-plugin text` made a second setforge-text, whose install replaces contrib's)
    install(monkeypatch, make_distribution(tmp_path / "site", "setforge-taken", "2.0", {}, {}))
    assert main(["new-plugin", "taken", "--kind", "augment", "--dir", str(tmp_path)]) == 2
    assert "setforge-taken 2.0 is already installed, and installing this package would replace it" in \
        capsys.readouterr().err
    assert not (tmp_path / "setforge-taken").exists()


def test_new_plugin_into_a_file_or_an_unwritable_folder_says_so(tmp_path, monkeypatch, capsys):
    # (found by an audit: both ended in a traceback, exit 1)
    (tmp_path / "a-file").write_text("")
    assert main(["new-plugin", "my-op", "--kind", "augment", "--dir", str(tmp_path / "a-file")]) == 2
    assert "--dir: " in capsys.readouterr().err

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.mkdir", refuse)
    assert main(["new-plugin", "my-op", "--kind", "augment", "--dir", str(tmp_path)]) == 5
    err = capsys.readouterr().err
    assert f"cannot create the plugin package {tmp_path / 'setforge-my-op'}: Permission denied" in err
    monkeypatch.undo()
    write_text = Path.write_text

    def full_disk_at_pyproject(self, *args, **kwargs):  # the module and its test are written by then
        if self.name == "pyproject.toml":
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr("pathlib.Path.write_text", full_disk_at_pyproject)
    assert main(["new-plugin", "my-op", "--kind", "augment", "--dir", str(tmp_path)]) == 5
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "setforge-my-op").exists()  # no half-written package left behind
