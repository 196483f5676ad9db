"""Built-in evaluators: every public module here lists its components in ``__all__``."""

from setforge import hookimpl

from .._shared.discovery import collect


@hookimpl
def setforge_register_evaluators():
    return collect(__name__, __path__)


@hookimpl
def setforge_score_generated(real, generated, val, rng, device):
    from ._guard import score_generated

    return score_generated(real, generated, val, rng, device)
