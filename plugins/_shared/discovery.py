"""Collect the component classes of a built-in kind package.

Each public module of ``setforge.plugins.<kind>`` lists its components in ``__all__``; the kind's
hook returns them all, so adding a built-in is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

__all__ = ["collect"]


def collect(package: str, path: Iterable[str]) -> list[type]:
    """Every component class named in ``__all__`` of the public modules under `package`."""
    from setforge.components import Component

    classes: list[type] = []
    for module_info in pkgutil.iter_modules(list(path)):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        for attribute in getattr(module, "__all__", ()):
            obj = getattr(module, attribute)
            if isinstance(obj, type) and issubclass(obj, Component) and obj.name:
                classes.append(obj)
    return classes
