"""Built-in run observers: every public module here lists its components in ``__all__``."""

from setforge import hookimpl

from .._shared.discovery import collect


@hookimpl
def setforge_register_observers():
    return collect(__name__, __path__)
