"""Both an editable install and a built wheel give the import packages setforge and setforge.plugins."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import setforge

ROOT = Path(__file__).resolve().parents[2]


def test_editable_install_maps_core_and_plugins():
    import setforge.plugins

    assert Path(setforge.__file__).resolve().parent == ROOT / "core"
    assert Path(setforge.plugins.__file__).resolve().parent == ROOT / "plugins"


@pytest.mark.slow
def test_built_wheel_imports_setforge_and_its_plugins(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next((tmp_path / "dist").glob("setforge-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "setforge/__init__.py" in names and "setforge/plugins/augment/__init__.py" in names
    assert "setforge/tools/cli.py" in names and "setforge/tools/demo.yaml" in names
    assert not any(name.startswith(("core/", "plugins/", "tests/")) for name in names)
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import importlib.metadata as md, setforge, setforge.plugins, setforge.plugins.augment\n"
            "assert setforge.__file__.startswith(sys.argv[1]), setforge.__file__\n"
            "assert setforge.plugins.__file__.startswith(sys.argv[1])\n"
            "eps = [e for e in md.entry_points(group='setforge') if e.dist._path.parent.as_posix() == sys.argv[1]]\n"
            "assert {e.name for e in eps} >= {'builtin-augment', 'builtin-source'}, eps\n"
            "print('ok')")
    check = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr
