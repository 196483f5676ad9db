"""The entry point setforge loads (group ``setforge``): registers the audio components."""

from __future__ import annotations

from setforge import hookimpl

from .augment import AUGMENTERS
from .source import WavFolderSource


@hookimpl
def setforge_register_sources():
    return [WavFolderSource]


@hookimpl
def setforge_register_augmenters():
    return list(AUGMENTERS)
