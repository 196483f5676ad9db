"""`setforge new-plugin` makes a working plugin package of every kind."""

import importlib
import sys
import tomllib

import pytest

from setforge import KINDS
from setforge.tools.cli import main
from setforge.testing import check_component


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
