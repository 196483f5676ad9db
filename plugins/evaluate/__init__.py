"""Built-in evaluators: every public module here lists its components in ``__all__``."""

from setforge import hookimpl

from .._shared.discovery import collect


@hookimpl
def setforge_register_evaluators():
    return collect(__name__, __path__)


@hookimpl
def setforge_find_leaked(train, test, evaluate):
    """``split.drop_leaked``: the ``leakage`` evaluator's definition, with its run-file params if listed."""
    from .leakage import Leakage

    params = next((params for name, params in evaluate if name == Leakage.name), {})
    return Leakage(params).leaked_mask(train, test)
