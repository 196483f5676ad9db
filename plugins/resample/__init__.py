"""Built-in resamplers: every public module here lists its components in ``__all__``."""

from setforge import hookimpl

from .._shared.discovery import collect


@hookimpl
def setforge_register_resamplers():
    return collect(__name__, __path__)


@hookimpl
def setforge_find_duplicates(ds, method, threshold, priority):
    """``source.deduplicate: near``: the ``deduplicate`` resampler's definition of a duplicate."""
    from .filters import Deduplicate

    return Deduplicate({"method": method, "threshold": threshold}).duplicates(ds, priority=priority)
