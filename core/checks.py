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

from pydantic import BaseModel

from .config import STEP_KINDS, RunConfig, _unwrap
from .errors import ConfigError, SetforgeError
from .hookspecs import SERVICE_HOOKS
from .problems import enrich_unknown, tidy_problems, is_under
from .runfile import load_run_config
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


def _refs_from_config(config: RunConfig) -> list[_Ref]:
    refs = [_Ref("source", config.source.name, config.source.params, "source", "source.params")]
    refs += [_Ref("preprocess", r.name, r.params, f"preprocess[{i}]", f"preprocess[{i}].params")
             for i, r in enumerate(config.preprocess)]
    for i, step in enumerate(config.pipeline):
        if step.is_chain:
            assert isinstance(step.augment, list)
            refs += [_Ref("augment", r.name, r.params, f"pipeline[{i}].augment[{j}]",
                          f"pipeline[{i}].augment[{j}].params") for j, r in enumerate(step.augment)]
        else:
            refs.append(_Ref(step.kind, getattr(step, step.kind), step.params, f"pipeline[{i}].{step.kind}",
                             f"pipeline[{i}].params"))
    refs += [_Ref("evaluate", r.name, r.params, f"evaluate[{i}]", f"evaluate[{i}].params")
             for i, r in enumerate(config.evaluate)]
    refs += [_Ref("observe", r.name, r.params, f"observe[{i}]", f"observe[{i}].params")
             for i, r in enumerate(config.observe)]
    return refs


def _refs_from_raw(raw: Mapping[str, Any]) -> list[_Ref]:
    """The well-formed component references of a run file that failed validation."""
    refs: list[_Ref] = []

    def ref(kind: str, value: Any, place: str, params_place: str | None = None,
            params: Any = None) -> None:
        if isinstance(value, str) and value:
            name, given = value, params
        elif isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
            name, given = value["name"], value.get("params")
        else:
            return
        if given is None:
            given = {}
        if isinstance(given, dict):
            refs.append(_Ref(kind, name, dict(given), place, params_place or f"{place}.params"))

    def items(key: str) -> list[Any]:
        value = raw.get(key)
        return value if isinstance(value, list) else []

    ref("source", raw.get("source"), "source")
    for i, item in enumerate(items("preprocess")):
        ref("preprocess", item, f"preprocess[{i}]")
    for i, step in enumerate(items("pipeline")):
        named = [k for k in STEP_KINDS if isinstance(step, dict) and step.get(k) is not None]
        if len(named) != 1:
            continue  # the step's own problem is reported already
        kind, value = named[0], step[named[0]]
        if kind == "augment" and isinstance(value, list):
            for j, item in enumerate(value):
                ref("augment", item, f"pipeline[{i}].augment[{j}]")
        else:
            ref(kind, value, f"pipeline[{i}].{kind}", f"pipeline[{i}].params", step.get("params"))
    for i, item in enumerate(items("evaluate")):
        ref("evaluate", item, f"evaluate[{i}]")
    for i, item in enumerate(items("observe")):
        ref("observe", item, f"observe[{i}]")
    return refs


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


def _check_ref(ref: _Ref, registry: Any, base_dir: Path, parsed_params: dict[str, BaseModel] | None,
               modality: str | None = None) -> list[tuple[str, str]]:
    """The problems of one component reference; when there are none and `parsed_params` is
    given, its params parsed (once) with paths resolved are kept there under its params place."""
    try:
        info = registry.get(ref.kind, ref.name, place=ref.place)
    except ConfigError as error:
        return list(error.problems)
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

        return [(place, enrich_unknown(message, [direct_key(place)], fields, owner)
                 if message == "unknown key" and direct_key(place) else message)
                for place, message in error.problems]
    problems = _nonfinite(parsed, ref.params_place)
    with registry.guard(cls, "check_params"):
        problems += [(f"{ref.params_place}.{key}", message) for key, message in cls.check_params(parsed, modality)]
    resolved: dict[str, Path] = {}
    for field_name, field in fields.items():
        if not _is_path_annotation(field.annotation):
            continue  # a default path is resolved too: the component's docs say "relative to the run file"
        value = getattr(parsed, field_name)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        resolved[field_name] = path
        must_exist = ref.kind == "source" or _marks_existing(field.annotation)
        if must_exist and not path.exists():
            problems.append((f"{ref.params_place}.{field_name}",
                             f"{path} does not exist (relative paths resolve against the run file's folder, "
                             f"{base_dir})"))
    if parsed_params is not None and not problems:
        # The run file's own params stay as given; the built component gets these.
        parsed_params[ref.params_place] = parsed.model_copy(update=resolved) if resolved else parsed
    return problems


def check_components(config: RunConfig, registry: Any) -> None:
    """Check every component the run file names, before any work starts.

    Each name must be installed (an unknown one lists the known names with the closest match),
    its params must validate against its ``Params`` (parsed once: the run builds its components
    from these, `RunConfig.params_at`), ``Path`` params (given or default) are resolved against
    the run file's folder (the run file's own params are left as given), and a source's
    paths, and params typed `setforge.components.ExistingPath` (a generator's ``checkpoint``, an
    evaluator's ``inception_weights``), must exist. When the source gives one modality only, every
    component must accept it. Every problem is collected into one `ConfigError`.
    """
    problems: list[tuple[str, str]] = []
    config._parsed_params = {}
    refs = _refs_from_config(config)
    produced = _source_modalities(config, registry)
    modality = produced[0] if len(produced) == 1 else None
    for ref in refs:
        problems += _check_ref(ref, registry, config.base_dir, config._parsed_params, modality)
    problems += _service_problems(config, registry)
    problems += _format_problems(config.output.format, registry)
    if not problems:
        problems += _modality_problems(refs, registry)
    problems += _guard_problems(config, registry)
    if not problems and config.source.stream is True:  # what keeps the run from working batch by batch
        problems += streaming_problems(config, registry)
    if problems:
        raise ConfigError(problems=tidy_problems(problems, config._overrides))


def _format_problems(name: str, registry: Any) -> list[tuple[str, str]]:
    formats = registry.formats()
    if name in formats:
        return []
    return [("output.format", f"unknown format {name!r}; available: {', '.join(repr(f) for f in formats)}")]


def _service_problems(config: RunConfig, registry: Any) -> list[tuple[str, str]]:
    """Run-file keys served by a ``firstresult`` hook (`hookspecs.SERVICE_HOOKS`) need a loaded
    plugin implementing it: asking with none is a run-file problem at the key, not a late failure."""
    asked = {"source.deduplicate": ("source.deduplicate.method", config.source.deduplicate.method == "near"),
             "split.drop_leaked": ("split.drop_leaked", config.split.drop_leaked
                                   and _source_modalities(config, registry) != ("text",))}
    problems = []
    for key, (place, wanted) in asked.items():
        hook = SERVICE_HOOKS[key]
        if wanted and not registry.providers(hook):
            problems.append((place, f"needs a plugin implementing {hook}, and none is loaded (was its plugin "
                                    f"disabled with -p no:NAME or plugins_deny?)"))
    return problems


def _source_modalities(config: RunConfig, registry: Any) -> tuple[str, ...]:
    try:
        return tuple(registry.get("source", config.source.name).cls.modalities)
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


def _modality_problems(refs: list[_Ref], registry: Any) -> list[tuple[str, str]]:
    """When the source gives one modality only (digits: images, a CSV: tables), every component
    must accept it: a mismatch is a run-file problem found before any work, not a late exit 3."""
    source, *others = refs
    produced = registry.get("source", source.name).cls.modalities
    if len(produced) != 1:
        return []  # the data decides (npz); the components check it when the run starts
    (modality,) = produced
    problems = []
    for ref in others:
        accepted = registry.get(ref.kind, ref.name).cls.modalities
        if modality not in accepted:
            problems.append((ref.place, f"{ref.kind} '{ref.name}' accepts {', '.join(accepted)} data, and source "
                                        f"'{source.name}' gives {modality} data"))
    return problems


def load_and_check(path: str | Path, overrides: Sequence[str], make_registry: Callable[[Any], Any]
                   ) -> tuple[RunConfig, Any]:
    """`load_run_config` then `check_components`, reporting the problems of both at once.

    `make_registry(config)` builds the plugin registry from an object with ``plugins``,
    ``plugins_deny``, ``plugins_allow`` and ``base_dir`` (a `RunConfig`, or what an invalid run
    file still tells).
    """
    try:
        config = load_run_config(path, overrides)
    except ConfigError as error:
        partial = getattr(error, "partial", None)
        if partial is None:
            raise
        more: list[tuple[str, str]] = []
        try:
            registry = make_registry(partial)
            output = partial.raw.get("output")
            fmt = output.get("format") if isinstance(output, dict) else None
            if isinstance(fmt, str) and fmt and not any(is_under("output.format", p) for p, _ in error.problems):
                more += _format_problems(fmt, registry)
            for ref in _refs_from_raw(partial.raw):
                if not any(is_under(ref.place, place) or is_under(ref.params_place, place) for place, _ in error.problems):
                    more += _check_ref(ref, registry, partial.base_dir, None)
        except ConfigError as registry_error:
            more += registry_error.problems
        except SetforgeError:  # plugin failures are reported once the file itself is valid
            pass
        raise ConfigError(problems=tidy_problems(error.problems + tidy_problems(more, partial.overrides))) from None
    registry = make_registry(config)
    check_components(config, registry)
    return config, registry
