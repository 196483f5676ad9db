"""The base every component kind builds on: its name, accepted modalities, nested ``Params``
(parsed into a `ConfigError` with places), and what it tells the report."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .dataset import MODALITIES, Dataset
from .errors import ConfigError, DataError
from .validation import problems_from_validation_error

__all__ = ["Component", "ExistingPath", "MustExist", "NAME_PATTERN", "read_weights"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class MustExist:
    """Marks a ``Path`` param that names an existing input: the run file's check refuses a missing
    one before any work starts. Relative paths resolve against the run file's folder."""

    def __repr__(self) -> str:
        return "MustExist()"


#: A params field type for input files: ``weights: ExistingPath | None = None``.
ExistingPath = Annotated[Path, MustExist()]
_PARAMS_CONFIG = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


def read_weights(path: str | Path, what: str, map_location: Any = "cpu") -> Any:
    """What the file a user gives by `path` holds, read with ``torch.load(weights_only=True)``:
    tensors and plain values only, no code in the file runs. Anything else is a `DataError`
    naming `what` (e.g. ``"generate 'dcgan': the checkpoint"``), without torch's advice to load
    with ``weights_only=False``, which would run the file's code."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever the file holds, it is bad input, not a bug
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise DataError(f"{what}: cannot read {path}: only tensors and plain values are loaded "
                        f"(torch.load with weights_only=True: no code in a file runs), and this file holds "
                        f"something else ({reason[:200]})") from None


def _kind(value: Any) -> str:
    return "true/false" if isinstance(value, bool) else "a whole number" if isinstance(value, int) else \
        "a number" if isinstance(value, float) else "text" if isinstance(value, str) else ""


def _retyped(given: Any, parsed: Any, where: str = "") -> tuple[str, str]:
    """``(place below the key, message)`` of the first value pydantic's lax mode read as another
    kind of scalar (``true`` as 1, ``"5"`` as 5, ``"off"`` as false, ``5.0`` as 5), as the run
    file's own keys refuse; ``("", "")`` when none. Lists and mappings are walked in step."""
    if isinstance(given, (list, tuple)) and isinstance(parsed, (list, tuple)) and len(given) == len(parsed):
        pairs = [(f"[{i}]", g, p) for i, (g, p) in enumerate(zip(given, parsed))]
    elif isinstance(given, Mapping) and isinstance(parsed, Mapping):
        pairs = [(f".{k}", v, parsed[k]) for k, v in given.items() if k in parsed]
    else:
        was, now = _kind(given), _kind(parsed)
        same = was == now or (was, now) == ("a whole number", "a number") or not was or not now
        return ("", "") if same else (where, f"{now} is wanted here, not {json.dumps(given)} ({was})")
    return next(((w, text) for w, text in (_retyped(g, p, where + k) for k, g, p in pairs) if text), ("", ""))


class Component:
    """Base of every component. Subclass one of the kind bases, not this."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = MODALITIES
    #: Cheap params for the conformance kit (``setforge.testing``): small epochs, few rows.
    testing_params: ClassVar[Mapping[str, Any]] = {}
    #: Whether the component works batch by batch in a streaming run (``source.stream``, data
    #: larger than memory; docs/scaling.md): a source that can `scan`, an augmenter applied to
    #: each batch, a generator sampled batch by batch (fitted from ``params.checkpoint``). False
    #: for anything that needs every row at once (neighbours, class counts, fitted statistics).
    streams: ClassVar[bool] = False

    class Params(BaseModel):
        """No parameters."""

        model_config = _PARAMS_CONFIG

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None):
        self.params = self.parse_params(params)

    @classmethod
    def parse_params(cls, params: BaseModel | Mapping[str, Any] | None, place: str = "params") -> BaseModel:
        """Validate `params` against ``cls.Params``; every problem is a `ConfigError` with its place."""
        if isinstance(params, cls.Params):
            return params
        if isinstance(params, BaseModel):
            params = params.model_dump()
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(problems=[(place, f"{cls.kind} '{cls.name}' takes a mapping of params, "
                                                f"got {type(params).__name__}")])
        try:
            parsed = cls.Params(**dict(params or {}))
        except ValidationError as error:
            raise ConfigError(problems=problems_from_validation_error(error, place)) from None
        problems = [(f"{place}.{key}{where}", text) for key, value in (params or {}).items()
                    for where, text in [_retyped(value, getattr(parsed, key, value))] if text]
        if problems:
            raise ConfigError(problems=problems)
        return parsed

    @classmethod
    def check_params(cls, params: BaseModel, modality: str | None) -> list[tuple[str, str]]:
        """Problems of valid `params` that cannot work with data of `modality` (None: not known
        before the run), as ``(key, message)``; ``setforge validate`` reports each at
        ``<place>.params.<key>`` before any work. Override when a param depends on the data."""
        return []

    def check_classes(self, classes: Sequence[str]) -> list[tuple[str, str]]:
        """Problems of params that name classes the data lacks, as ``(key, message)``: the host
        calls it once the source's `classes` are known, before any step runs, and reports each at
        ``<place>.params.<key>`` (exit 2, as a step's unknown ``classes``). Default: none."""
        return []

    def check_counts(self, counts: Sequence[int], classes: Sequence[str]) -> list[tuple[str, str]]:
        """Problems of params with input of these rows per class (`counts`, in the order of
        `classes`), as ``(key, message)`` saying what would work: a neighbour count larger than a
        class, a ``sampling_strategy`` the counts cannot meet. ``run --dry-run`` calls it for each
        step with the counts it plans the step's input to have (while those are known) and reports
        each at ``<place>.params.<key>`` (exit 3, as the run would stop there); the step itself
        should check its input in its work method too. Default: none."""
        return []

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """Problems of data of an accepted modality that this component still cannot take (a
        sampler that interpolates, given categorical columns), as ``(key, message)``, the message
        saying what would work. The host calls it for each step with the preprocessed training
        split (a `Dataset`) once the source is loaded, before any step runs (``run --dry-run``
        too), and reports each at ``<place>.params.<key>``, or at the step's name
        (``pipeline[1].resample``) for key ``""`` (exit 2, as `check_classes`). Call it in your own
        work method too, for calls outside a run. Default: none."""
        return []

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    def report_details(self) -> Mapping[str, Any]:
        """What the last pipeline call did, for the run's report: JSON-ready values (numbers,
        strings, lists and dicts of them); ``{}`` (the default) when there is nothing to add. The
        host files it under the step in ``report.json`` and prints its ``summary`` string, when
        there is one, under the step in the summary."""
        return {}

    def report_figures(self) -> Mapping[str, bytes]:
        """PNG figures of the last pipeline call by name (e.g. rows a step rejected), for the
        report's ``figures/`` folder and HTML page; ``{}`` by default."""
        return {}

    def _check_modality(self, ds: Dataset) -> None:
        if ds.modality not in self.modalities:
            raise DataError(f"{self.kind} '{self.name}' accepts {list(self.modalities)} data, got {ds.modality}")
