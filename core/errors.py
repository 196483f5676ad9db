"""The errors setforge raises on purpose, each with the exit status the command line gives it.

`ConfigError` (exit 2) is a bad run file or bad usage, `DataError` (exit 3) is data that cannot be
processed (plugins raise it too: a class too small for SMOTE, a diverging GAN), `PluginError`
(exit 4) is any other failure inside a plugin, named with its distribution, `OutputError` (exit 5)
is a run folder that could not be written (permission denied, disk full). Anything else that
escapes is a bug in setforge itself (exit 1).
"""

from __future__ import annotations

__all__ = ["SetforgeError", "ConfigError", "DataError", "InvalidDatasetError", "PluginError", "OutputError",
           "ConformanceError"]


class SetforgeError(Exception):
    """Base class of every error setforge raises on purpose."""

    exit_code = 1


class ConfigError(SetforgeError, ValueError):
    """A run file, a parameter or a command line that cannot be accepted (exit 2).

    `problems` lists every problem found as ``(place, message)`` pairs, so that a user sees them
    all at once.
    """

    exit_code = 2

    def __init__(self, message: str = "", problems: list[tuple[str, str]] | None = None):
        self.problems = list(problems or [])
        if not message:
            message = "\n".join(f"{place}: {text}" if place else text for place, text in self.problems)
        super().__init__(message)


class DataError(SetforgeError, ValueError):
    """Data that cannot be processed as asked (exit 3); plugins raise it for bad input."""

    exit_code = 3


class InvalidDatasetError(DataError):
    """A `Dataset` (or `FeatureInfo`) built with fields that do not fit together. Raised by the
    data model itself; when code inside a plugin builds such a dataset, the host reports a plugin
    failure (exit 4) naming the plugin, since the plugin, not the user's data, is at fault."""


class PluginError(SetforgeError, RuntimeError):
    """A plugin failed: it would not load, or raised inside one of its methods (exit 4)."""

    exit_code = 4


class OutputError(SetforgeError):
    """The run folder could not be written: permission denied, disk full, a read-only file system
    (exit 5). The message names the path and the system's reason; ``<dir>`` is left as it was (the
    previous run, or none) and ``<dir>.partial/`` keeps what was done, for ``--resume``."""

    exit_code = 5

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class ConformanceError(SetforgeError, AssertionError):
    """A component broke the contract checked by `setforge.testing.check_component`."""

    exit_code = 1
