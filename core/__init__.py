"""setforge: a plugin-based engine that turns a raw training set into a better one, and proves it.

The public API. Names load on first use, so ``setforge --help`` and plugin discovery stay light
(torch is imported only when a tensor type is needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (ConfigError, ConformanceError, DataError, InvalidDatasetError, OutputError, PluginError,
                     SetforgeError)
from .hookspecs import KINDS, hookimpl

__version__ = "0.1.0"
#: The plugin contract's version: a plugin may check ``setforge.API_VERSION`` to see which core
#: contract it runs against. Bumped on any incompatible change to hooks or base classes.
API_VERSION = 1

__all__ = [
    "API_VERSION", "KINDS", "__version__",
    # errors
    "SetforgeError", "ConfigError", "DataError", "InvalidDatasetError", "PluginError", "OutputError",
    "ConformanceError",
    # data
    "Dataset", "Origin", "FeatureInfo", "Splits", "sort_class_names",
    # contexts and results
    "Rng", "StepContext", "EvalContext", "StepRecord", "Cache", "Metrics", "Measure", "Event",
    # components
    "Component", "Source", "Preprocessor", "Augmenter", "GeometricAugmenter", "Chain", "Resampler", "Generator",
    "Evaluator", "Observer", "SourceScan",
    # plugins
    "hookimpl", "Registry", "create",
    # runs
    "load",
]

_LAZY = {
    "Dataset": "dataset", "Origin": "dataset", "FeatureInfo": "dataset", "Splits": "dataset",
    "sort_class_names": "dataset",
    "Rng": "rng",
    "StepContext": "context", "EvalContext": "context", "StepRecord": "context", "Cache": "context",
    "Metrics": "context", "Measure": "context", "Event": "context",
    "Component": "components", "Source": "components", "Preprocessor": "components", "Augmenter": "components",
    "Chain": "chain", "GeometricAugmenter": "chain", "Resampler": "components", "Generator": "components", "Evaluator": "components", "Observer": "components",
    "SourceScan": "components",
    "Registry": "registry", "create": "registry",
    "load": "output",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'setforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from .chain import Chain, GeometricAugmenter
    from .components import Augmenter, Component, Evaluator, Generator, Observer, Preprocessor, Resampler, Source
    from .context import Cache, EvalContext, Event, Measure, Metrics, StepContext, StepRecord
    from .dataset import Dataset, FeatureInfo, Origin, Splits
    from .output import load
    from .registry import Registry, create
    from .rng import Rng
