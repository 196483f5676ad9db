"""Installed-looking plugin distributions for tests: a ``*.dist-info`` with ``entry_points.txt`` in
a temporary folder put on ``sys.path`` (nothing is pip-installed, nothing downloaded)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


def make_distribution(root: Path, name: str, version: str, entry_points: dict[str, str],
                      modules: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{ep} = {target}" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[setforge]\n{lines}\n")
    return root


def install(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    for module in [m for m in sys.modules if m.startswith("sfplug_")]:
        del sys.modules[module]
