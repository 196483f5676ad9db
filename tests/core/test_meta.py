"""Meta-tests: every hook documented and exercised, every module importable, core independent of
the built-in plugins, --help light."""

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import setforge
from setforge import hookspecs
from setforge.tools.docgen import hooks_markdown

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [name for name in dir(hookspecs) if name.startswith("setforge_")]


def test_every_hook_is_documented_in_docs_hooks_md():
    text = (ROOT / "docs" / "hooks.md").read_text()
    assert text == hooks_markdown(), "docs/hooks.md is stale: regenerate it with setforge.tools.docgen.hooks_markdown()"
    for name in HOOKS:
        assert f"## `{name}(" in text
        assert len(getattr(hookspecs, name).__doc__.strip().splitlines()) > 3, f"{name} needs a full docstring"


def test_every_hook_is_exercised_by_a_test():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != "test_meta.py")
    for name in HOOKS:
        assert re.search(rf"\bdef {name}\b", sources), f"no test implements {name}"


def test_every_module_imports():
    for package in (setforge, importlib.import_module("setforge.plugins")):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith("__main__"):
                continue
            importlib.import_module(module.name)


def test_core_never_imports_the_builtin_plugins():
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text()
        assert "setforge.plugins" not in text.replace('"setforge.plugins"', ""), path.name
        assert not re.search(r"from \.\.?plugins|import plugins", text), path.name


def test_public_api_is_explicit():
    for name in setforge.__all__:
        assert getattr(setforge, name) is not None
    assert setforge.API_VERSION >= 1


def test_help_does_not_import_torch():
    code = ("import sys; from setforge.tools.cli import main\n"
            "code = main(['--help'])\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
            "assert 'sklearn' not in sys.modules\n"
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: setforge" in done.stdout


def test_python_dash_m_is_the_command():
    done = subprocess.run([sys.executable, "-m", "setforge", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"setforge {setforge.__version__}"
