"""The entry point setforge loads (group ``setforge``): registers the text components."""

from __future__ import annotations

from setforge import hookimpl

from .augment import AUGMENTERS
from .source import TextFileSource


@hookimpl
def setforge_register_sources():
    return [TextFileSource]


@hookimpl
def setforge_register_augmenters():
    return list(AUGMENTERS)
