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
    assert text == hooks_markdown(), "docs/hooks.md is stale: run `python -m setforge.tools.docgen docs/hooks.md`"
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


# The layers of docs/architecture.md and the budgets. Lines of code: what is left of a
# module without blank lines, comments and docstrings (the contract's docstrings are what a
# plugin author reads, so they do not count against it); no file may be longer than 600 lines.
CONTRACT = ["__init__", "errors", "rng", "dataset", "context", "hookspecs", "base", "components", "augmenter",
            "chain", "validation", "distributed", "formats"]
ENGINE = ["registry", "config", "runfile", "problems", "checks", "build", "pipeline", "steps", "split", "record",
          "output", "streaming"]


def lines_of_code(path: Path) -> int:
    import ast

    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and number not in docstrings)


def test_every_core_module_belongs_to_a_layer_within_its_budget():
    core = ROOT / "core"
    modules = {p.stem for p in core.glob("*.py")} - {"__main__", "testing"}
    assert modules == set(CONTRACT) | set(ENGINE), "add the module to its layer here and in docs/architecture.md"
    assert sum(lines_of_code(core / f"{m}.py") for m in CONTRACT) <= 1800
    assert sum(lines_of_code(core / f"{m}.py") for m in ENGINE) <= 2600
    for path in core.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, f"{path.relative_to(ROOT)} is over 600 lines"
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for module in CONTRACT + ENGINE:
        assert f"`{module}`" in architecture, f"docs/architecture.md does not place {module}"
