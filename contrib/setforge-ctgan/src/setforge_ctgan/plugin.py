"""The entry point setforge loads (group ``setforge``): registers the ``ctgan`` generator."""

from __future__ import annotations

from setforge import hookimpl

from .generator import CtganGenerator


@hookimpl
def setforge_register_generators():
    return [CtganGenerator]
