"""Checking the components a run file names, before any work: every name installed, params valid
for the component, paths resolved against the run file's folder (and existing where they must),
one modality the whole run can take."""

from __future__ import annotations

import inspect
import math
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from .config import _PLACED_ERROR, COMPONENT_CHECKER, RunConfig, _unwrap
from .errors import ConfigError, SetforgeError
from .hookspecs import SERVICE_HOOKS
from .problems import enrich_unknown, fold_problems, is_under, tidy_problems
from .runfile import _parse_override_path as parse_place, load_run_config
from .streaming import problems as streaming_problems

__all__ = ["check_components", "load_and_check"]


# ============================================================================ components
@dataclass
class _Ref:
    kind: str
    name: str
    params: dict[str, Any]
    place: str  # where the name is
    params_place: str


def _is_path_annotation(annotation: Any) -> bool:
    return any(inspect.isclass(a) and issubclass(a, Path) for a in _unwrap(annotation))


def _nonfinite(value: Any, place: str) -> list[tuple[str, str]]:
    if isinstance(value, float) and not math.isfinite(value):
        return [(place, f"must be a finite number, got {value}")]
    if isinstance(value, BaseModel):
        value = {k: getattr(value, k) for k in type(value).model_fields}
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _nonfinite(v, f"{place}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _nonfinite(v, f"{place}[{i}]")]
    return []


def _marks_existing(annotation: Any) -> bool:
    """True when `annotation` is (or contains, as in ``ExistingPath | None``) an `ExistingPath`."""
    from .components import MustExist

    if any(isinstance(meta, MustExist) for meta in getattr(annotation, "__metadata__", ())):
        return True
    return any(_marks_existing(arg) for arg in typing.get_args(annotation))


def _check_ref(ref: _Ref, registry: Any, base_dir: Path, modality: str | None
               ) -> tuple[BaseModel | None, list[tuple[str, str]]]:
    """One component reference: its params parsed (once) with paths resolved, and its problems."""
    try:
        info = registry.get(ref.kind, ref.name, place=ref.place)
    except ConfigError as error:
        return None, list(error.problems)
    cls = info.cls
    fields = cls.Params.model_fields
    try:
        with registry.guard(cls, "Params validation"):
            parsed = cls.parse_params(ref.params, place=ref.params_place)
    except ConfigError as error:
        owner = f"{ref.kind} '{ref.name}'"
        def direct_key(place: str) -> str | None:  # a key of Params itself, not one nested deeper
            key = place[len(ref.params_place) + 1:] if place.startswith(ref.params_place + ".") else ""
            return key if key and not re.search(r"[.\[]", key) else None

        return None, [(place, enrich_unknown(message, [direct_key(place)], fields, owner)
                       if message == "unknown key" and direct_key(place) else message)
                      for place, message in error.problems]
    problems = _nonfinite(parsed, ref.params_place)
    with registry.guard(cls, "check_params"):
        problems += [(f"{ref.params_place}.{key}", message) for key, message in cls.check_params(parsed, modality)]
    resolved: dict[str, Path] = {}
    for field_name, field in fields.items():
        if not _is_path_annotation(field.annotation):
            continue  # a default path is resolved too: the component's docs say "relative to the run file"
        if (value := getattr(parsed, field_name)) is None:
            continue
        resolved[field_name] = path = base_dir / Path(value).expanduser()  # (an absolute path stays as it is)
        if (ref.kind == "source" or _marks_existing(field.annotation)) and not path.exists():
            problems.append((f"{ref.params_place}.{field_name}",
                             f"{path} does not exist (relative paths resolve against the run file's folder, "
                             f"{base_dir})"))
    # The run file's own params stay as given; the built component gets these.
    return parsed.model_copy(update=resolved) if resolved else parsed, problems


class _ComponentChecker:
    """The component checker of pydantic's validation context (`config.COMPONENT_CHECKER`): the
    run-file models call it for each component they name, while the file is validated, so every
    component's params are parsed once, in that pass, and their problems come with the file's."""

    def __init__(self, registry: Any, base_dir: Path) -> None:
        self.registry, self.base_dir = registry, base_dir
        self.modality: str | None = None  # the source's, when it gives one only (it is validated first)
        self.source = ""

    def __call__(self, kind: str, name: str, params: dict[str, Any], name_loc: tuple[str | int, ...]) -> BaseModel:
        here = "@" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in name_loc)
        parsed, problems = _check_ref(_Ref(kind, name, params, here, "@.params"), self.registry, self.base_dir,
                                      self.modality)
        if kind == "source":
            produced = _modalities(self.registry, "source", name)
            self.modality, self.source = (produced[0] if len(produced) == 1 else None), name
        elif not problems and self.modality and \
                self.modality not in (accepted := _modalities(self.registry, kind, name)):
            # the source gives one modality (digits: images): a mismatch is found now, not as a late exit 3
            problems.append((here, f"{kind} '{name}' accepts {', '.join(accepted)} data, and source '{self.source}' "
                                   f"gives {self.modality} data"))
        if problems:
            raise ValidationError.from_exception_data("run file", [
                {"type": PydanticCustomError(_PLACED_ERROR, message, {"setforge_at": ""}),
                 "loc": _relative_loc(place), "input": params} for place, message in problems])
        assert parsed is not None
        return parsed


def _relative_loc(place: str) -> tuple[str | int, ...]:
    """``@.params.epochs`` as the location ``("params", "epochs")`` under the checked model."""
    if not (rest := place[1:].lstrip(".")):
        return ()
    try:
        return tuple(parse_place(rest))
    except ValueError:  # a key no path can spell (a space, a dot): one segment reads the same
        return (rest,)


def check_components(config: RunConfig, registry: Any) -> RunConfig:
    """`config` validated again with the components checked against `registry` (see
    `load_and_check`, which does both in one pass): returns the checked config, or raises one
    `ConfigError` with every problem."""
    context = {COMPONENT_CHECKER: _ComponentChecker(registry, config.base_dir)}
    try:
        checked = RunConfig.model_validate(config.model_dump(exclude_unset=True), context=context)
    except ValidationError as error:
        raise ConfigError(problems=tidy_problems(fold_problems(error), config._overrides)) from None
    checked._base_dir, checked._file, checked._overrides = config.base_dir, config._file, config._overrides
    _raise_run_problems(checked, registry)
    return checked


def _raise_run_problems(config: RunConfig, registry: Any) -> None:
    """What no single component can tell: services, the output format, guards, streaming."""
    problems = _service_problems(config, registry) + format_problems(config.output.format, registry, config.source.name)
    problems += _guard_problems(config, registry)
    if not problems and config.source.stream is True:  # what keeps the run from working batch by batch
        problems += streaming_problems(config, registry)
    if problems:
        raise ConfigError(problems=tidy_problems(problems, config._overrides))


def format_problems(name: str, registry: Any, source: str = "") -> list[tuple[str, str]]:
    """`output.format` registered, and writing the data of `source` when it gives one modality."""
    formats, clash = registry.formats(), registry.conflicts().get(("format", name))  # (two plugins' formats)
    if clash and name not in formats:
        return [("output.format", f"{name!r} is registered by {' and '.join(i.label for i in clash)}; disable one")]
    if name not in formats:
        return [("output.format", f"unknown format {name!r}; available: {', '.join(map(repr, formats))}")]
    problem = formats[name].modality_problem(_modalities(registry, "source", source), source, formats)
    return [("output.format", problem)] if problem else []


def _service_problems(config: RunConfig, registry: Any) -> list[tuple[str, str]]:
    """Run-file keys served by a ``firstresult`` hook (`hookspecs.SERVICE_HOOKS`) need a loaded
    plugin implementing it: asking with none is a run-file problem at the key, not a late failure."""
    asked = {"source.deduplicate": ("source.deduplicate.method", config.source.deduplicate.method == "near"),
             "split.drop_leaked": ("split.drop_leaked", config.split.drop_leaked
                                   and _modalities(registry, "source", config.source.name) != ("text",))}
    problems = []
    for key, (place, wanted) in asked.items():
        hook = SERVICE_HOOKS[key]
        if wanted and not registry.providers(hook):
            problems.append((place, f"needs a plugin implementing {hook}, and none is loaded (was its plugin "
                                    f"disabled with -p no:NAME or plugins_deny?)"))
    return problems


def _modalities(registry: Any, kind: str, name: str) -> tuple[str, ...]:
    try:
        return tuple(registry.get(kind, name).cls.modalities)
    except SetforgeError:
        return ()


def _guard_problems(config: RunConfig, registry: Any) -> list[tuple[str, str]]:
    """A guarded generate step needs a ``setforge_score_generated`` provider (``builtin-evaluate``)."""
    from .steps import KIND

    guarded = [i for i, step in enumerate(config.pipeline)
               if KIND[step.kind].guarded and step.guard_config.on_fail != "off"]
    if not guarded or registry.providers("setforge_score_generated"):
        return []
    return [(f"pipeline[{i}].guard", "no installed plugin scores generated rows (hook setforge_score_generated, "
                                     "provided by builtin-evaluate); enable it, or set guard: off") for i in guarded]


def load_and_check(path: str | Path, overrides: Sequence[str], make_registry: Callable[[Any], Any]
                   ) -> tuple[RunConfig, Any]:
    """Read a run file and validate it in one pass, its components checked in that pass
    (`load_run_config` with a `_ComponentChecker` in pydantic's validation context); returns the
    config and the registry.

    `make_registry(partial)` builds the plugin registry from what the file says before
    validation (``plugins``, ``plugins_deny``, ``plugins_allow`` and ``base_dir``).
    """
    made: dict[str, Any] = {}

    def context_for(partial: Any) -> dict[str, Any]:
        made["registry"] = make_registry(partial)
        return {COMPONENT_CHECKER: _ComponentChecker(made["registry"], partial.base_dir)}

    try:
        config = load_run_config(path, overrides, context_for)
    except ConfigError as error:
        partial, registry = getattr(error, "partial", None), made.get("registry")
        output = partial.raw.get("output") if partial is not None else None
        fmt = output.get("format") if isinstance(output, dict) else None
        if registry is None or not isinstance(fmt, str) or not fmt or \
                any(is_under("output.format", p) for p, _ in error.problems):
            raise
        more = tidy_problems(format_problems(fmt, registry), partial.overrides)
        raise ConfigError(problems=tidy_problems(error.problems + more)) from None
    registry = made["registry"]
    _raise_run_problems(config, registry)
    return config, registry
