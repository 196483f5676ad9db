"""The run file: pydantic models, loading from YAML/TOML/JSON, ``--set`` overrides, validation with
places, the resolved dump (``setforge validate``), the JSON Schema (``setforge schema``) and the
key reference in ``docs/run-files.md``.

Every problem is reported with its place (``pipeline[2].params.epochs``), what was given and what
is accepted, all at once, before any work starts (`ConfigError`, exit 2). Loading never runs code:
YAML is read with safe loading only, and nothing is written.

Typical use (what ``setforge validate`` and ``setforge run`` do)::

    config = load_run_config("run.yaml", overrides=["seed=3"])
    check_components(config, registry)        # names exist, params validate, paths exist
    print(dump_resolved(config))
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError, SetforgeError
from .validation import place_of, problems_from_validation_error

__all__ = ["ComponentRef", "SourceConfig", "DeduplicateConfig", "SplitConfig", "StepConfig", "OutputConfig",
           "RunConfig", "STEP_KINDS", "HOST_KEYS", "SUFFIXES",
           "load_run_config", "read_run_file", "apply_overrides", "load_and_check", "check_components",
           "dump_resolved"]

STEP_KINDS = ("augment", "resample", "generate")
#: The step keys the host owns, by step kind (besides the kind key itself and ``params``).
HOST_KEYS: dict[str, tuple[str, ...]] = {
    "augment": ("copies", "minority", "classes"),
    "resample": (),
    "generate": ("classes", "target", "per_class", "multiply", "fit_on"),
}
#: Run-file formats by file extension.
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
_MAX_FILE_BYTES = 16 * 2**20  # a run file holds settings, not data
_MAX_VALUES = 1_000_000  # after expanding YAML aliases (guards against "billion laughs")
_STRICT = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_PLACED_ERROR = "setforge_placed"  # ctx["setforge_at"]: the keys (under the model) the error is about


# =============================================================================== models
class ComponentRef(BaseModel):
    """A component by name, with its params: ``NAME`` or ``{name: NAME, params: {...}}``."""

    model_config = _STRICT
    name: str = Field(min_length=1, description="the component's name (see `setforge plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's params "
                                                                     "(see `setforge plugins show KIND/NAME`)")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class DeduplicateConfig(BaseModel):
    """Drop duplicate rows before the split, so that copies cannot straddle train and test."""

    model_config = _STRICT
    method: Literal["none", "exact", "near"] = Field("none", description="none; exact (same content hash); "
                                                                         "near (closer than threshold)")
    threshold: float = Field(0.05, gt=0, strict=True, description="near: distance under which two rows are "
                                                                  "duplicates (root-mean-square difference per value)")

    @model_validator(mode="before")
    @classmethod
    def _from_method(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value


class SourceConfig(ComponentRef):
    """Where the data comes from."""

    name: str = Field(min_length=1, description="the source's name (see `setforge plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the source's params; relative paths "
                                                                     "resolve against the run file's folder")
    on_invalid: Literal["error", "drop"] = Field("error", description="invalid rows (NaN, missing values, unknown "
                                                                      "labels, unreadable files): stop, or drop and count")
    deduplicate: DeduplicateConfig = Field(default_factory=DeduplicateConfig,
                                           description="none, exact or near (with a threshold), or a mapping "
                                                       "{method, threshold}")
    stream: bool = Field(False, strict=True, description="read in batches instead of all at once "
                                                         "(for data larger than memory)")


class SplitConfig(BaseModel):
    """How the real data is split; ignored parts when the source brings its own split."""

    model_config = _STRICT
    test: float = Field(0.2, ge=0.0, lt=1.0, strict=True, description="share of all rows held out as the real "
                                                                      "test split")
    val: float = Field(0.1, ge=0.0, lt=1.0, strict=True, description="share of all rows held out for validation "
                                                                     "(test + val < 1)")
    stratify: bool = Field(True, strict=True, description="keep class shares equal across splits")
    group_by: bool = Field(False, strict=True, description="keep each group (the source's groups) within one split")
    drop_leaked: bool = Field(False, strict=True, description="drop training rows that duplicate a test row, "
                                                              "before any step")

    @model_validator(mode="after")
    def _shares(self) -> "SplitConfig":
        if self.test + self.val >= 1.0:
            raise PydanticCustomError(_PLACED_ERROR, "test + val must be < 1 (shares of the whole), got "
                                                   f"{self.test} + {self.val} = {self.test + self.val:g}",
                                      {"setforge_at": ""})
        return self


class StepConfig(BaseModel):
    """One pipeline step: exactly one of ``augment``, ``resample``, ``generate``."""

    model_config = _STRICT
    augment: str | list[ComponentRef] | None = Field(None, description="an augmenter, or a chain of them "
                                                                       "([NAME, {name: NAME, params: {...}}, ...])")
    resample: str | None = Field(None, description="a resampler")
    generate: str | None = Field(None, description="a generator")
    params: dict[str, Any] = Field(default_factory=dict, description="params of the step's component "
                                                                     "(a chain's ops take their own)")
    # augment
    copies: int = Field(1, ge=0, le=1000, strict=True, description="augmented copies of each selected row "
                                                                   "(the originals stay)")
    minority: bool = Field(False, strict=True, description="select every class below the largest")
    # augment and generate
    classes: list[str | int] | None = Field(None, description="only these classes (names or ids)")
    # generate
    target: Literal["balance"] | None = Field(None, description="fill every class up to the largest "
                                                                "(the default amount)")
    per_class: int | None = Field(None, ge=0, strict=True, description="final total rows per class")
    multiply: float | None = Field(None, gt=0, strict=True, description="K times the real rows of each class")
    fit_on: Literal["real", "all"] = Field("real", description="train on the step input's real rows only, or on all")

    @model_validator(mode="after")
    def _one_kind(self) -> "StepConfig":
        named = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(named) != 1:
            got = " and ".join(named) if named else "none of them"
            raise _step_error(f"a step names exactly one of augment, resample, generate; this one names {got}")
        kind = named[0]
        misplaced = [k for k in ("copies", "minority", "classes", "target", "per_class", "multiply", "fit_on")
                     if k not in HOST_KEYS[kind] and k in self.model_fields_set]
        if misplaced:
            owners = {k: " and ".join(o for o in STEP_KINDS if k in HOST_KEYS[o]) for k in misplaced}
            raise _step_error(f"applies to {owners[misplaced[0]]} steps only, not to a {kind} step", *misplaced)
        if kind == "generate":
            amounts = [k for k in ("target", "per_class", "multiply") if getattr(self, k) is not None]
            if len(amounts) > 1:
                raise _step_error(f"a generate step takes one of target, per_class, multiply; got "
                                  f"{', '.join(amounts)}", *amounts[1:])
            if not amounts:
                self.target = "balance"
        if kind == "augment" and self.minority and self.classes is not None:
            raise _step_error("an augment step takes minority: true or classes, not both", "classes")
        if kind == "augment" and isinstance(self.augment, list):
            if not self.augment:
                raise _step_error("an augment chain needs at least one augmenter", "augment")
            if self.params:
                raise _step_error("a chain's ops take their own params: augment: [{name: NAME, params: {...}}, ...]",
                                  "params")
        return self

    @property
    def kind(self) -> str:
        """``augment``, ``resample`` or ``generate``."""
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    def component_refs(self) -> list[ComponentRef]:
        """The step's component(s) with their params (several for a chain)."""
        value = getattr(self, self.kind)
        if isinstance(value, list):
            return list(value)
        return [ComponentRef(name=value, params=self.params)]

    @property
    def is_chain(self) -> bool:
        return isinstance(self.augment, list)


def _step_error(message: str, *keys: str) -> PydanticCustomError:
    # The message is not a template: pydantic only substitutes the context's keys.
    return PydanticCustomError(_PLACED_ERROR, message, {"setforge_at": ",".join(keys)})


class OutputConfig(BaseModel):
    """Where and how the run folder is written."""

    model_config = _STRICT
    dir: str = Field("runs/run", min_length=1, description="the run folder (relative to the current folder, "
                                                           "not to the run file)")
    format: Literal["npz", "image-folder", "csv"] = Field("npz", description="how the data files are written")
    force: bool = Field(False, strict=True, description="replace an existing run folder (like --force)")
    shard_rows: int = Field(50_000, ge=1, strict=True, description="rows per train-NNNNN.npz shard")

    @field_validator("dir", mode="before")
    @classmethod
    def _path_is_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value


class RunConfig(BaseModel):
    """A whole run file."""

    model_config = _STRICT
    seed: int = Field(0, ge=0, lt=2**63, description="the run seed; every step's randomness derives from it")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    batch_size: int = Field(4096, ge=1, strict=True, description="rows per batch for streaming work "
                                                                 "(augment, sampling)")
    source: SourceConfig = Field(description="the dataset source: NAME or {name, params, ...} (required)")
    split: SplitConfig = Field(default_factory=SplitConfig, description="how the real data is split")
    preprocess: list[ComponentRef] = Field(default_factory=list, description="preprocessors, fitted on train only, "
                                                                             "applied to every split")
    pipeline: list[StepConfig] = Field(default_factory=list, description="steps applied to the training split, "
                                                                         "in order")
    evaluate: list[ComponentRef] = Field(default_factory=list, description="evaluators run at the end")
    output: OutputConfig = Field(default_factory=OutputConfig, description="where and how the run folder is written")
    plugins: list[str] = Field(default_factory=list, description="local plugins: module names or .py files "
                                                                 "(relative to the run file)")
    plugins_allow: list[str] | None = Field(None, description="when given, only these third-party entry points load")
    plugins_deny: list[str] = Field(default_factory=list, description="these entry points do not load")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path | None = PrivateAttr(None)
    _resolved_params: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _overrides: dict[str, str] = PrivateAttr(default_factory=dict)  # place -> the --set that set it

    @property
    def base_dir(self) -> Path:
        """The run file's folder: relative paths inside the run file resolve against it."""
        return self._base_dir

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_is_int(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer in [0, 2^63)")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N (N a GPU index) or mps")
        return value

    @field_validator("preprocess", "evaluate", "pipeline", "plugins", "plugins_deny", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


# ============================================================================== reading
def read_run_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a run file (YAML, TOML or JSON by extension), before validation.

    Every way a file can be unreadable (missing, binary, empty, bad syntax, a top level that is
    not a mapping, a YAML tag that would build a Python object) is a `ConfigError` naming the file.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise ConfigError(problems=[(where, "no such file")])
    if not path.is_file():
        raise ConfigError(problems=[(where, "is not a file")])
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(problems=[(where, f"unknown run file format '{path.suffix or '(no extension)'}'; "
                                            f"use .yaml, .yml, .toml or .json")])
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise ConfigError(problems=[(where, f"is {size / 2**20:.0f} MiB; a run file holds settings, not data "
                                                f"(at most {_MAX_FILE_BYTES // 2**20} MiB)")])
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(problems=[(where, f"cannot be read: {error.strerror or error}")]) from None
    if b"\x00" in data:
        raise ConfigError(problems=[(where, f"is a binary file (a NUL byte at offset {data.index(0)}), "
                                            f"not a {fmt.upper()} run file")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(problems=[(where, f"is not UTF-8 text (byte {data[error.start]:#04x} at offset "
                                            f"{error.start}); is it a binary file?")]) from None
    if not text.strip():
        raise ConfigError(problems=[(where, "empty file; a run file needs at least a source")])
    try:
        raw = _PARSERS[fmt](text)
    except ConfigError as error:
        raise ConfigError(problems=[(f"{where}{place}", message) for place, message in error.problems]) from None
    except RecursionError:
        raise ConfigError(problems=[(where, "nested too deeply to read")]) from None
    except Exception as error:  # noqa: BLE001 - whatever a parser raises is a bad file, never a traceback
        raise ConfigError(problems=[(where, f"cannot be parsed as {fmt.upper()}: {error}")]) from None
    if raw is None or raw == {}:
        raise ConfigError(problems=[(where, "holds no settings; a run file needs at least a source")])
    if not isinstance(raw, dict):
        raise ConfigError(problems=[(where, f"the top level must be a mapping of keys (seed, source, pipeline, ...), "
                                            f"got {_type_name(raw)}")])
    return raw


class _SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also refuses duplicate keys (which YAML would silently overwrite)."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r} (the first is on line "
                                                            f"{seen[key].start_mark.line + 1})", key_node.start_mark)
        seen[key] = key_node
    yield from loader.construct_yaml_map(node)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - _SafeLoader is a yaml.SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.context and error.problem and "constructor for the tag" not in message:
            message = f"{error.problem} ({error.context})"
        if "constructor for the tag" in message:
            message += " (run files are read with YAML safe loading: tags that build Python objects are refused)"
        place = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(problems=[(place, f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as error:
        raise ConfigError(problems=[("", f"invalid YAML: {error}")]) from None


def _parse_toml(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        place = ""
        if found:
            place, message = f":{found.group(1)}:{found.group(2)}", message[:found.start()] + message[found.end():]
        raise ConfigError(problems=[(place, f"invalid TOML: {message}")]) from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError(problems=[("", f"invalid JSON: duplicate key {key!r}")])
        result[key] = value
    return result


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as error:
        raise ConfigError(problems=[(f":{error.lineno}:{error.colno}", f"invalid JSON: {error.msg}")]) from None


_PARSERS: dict[str, Callable[[str], Any]] = {"yaml": _parse_yaml, "toml": _parse_toml, "json": _parse_json}


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ============================================================================= overrides
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def _parse_override_path(text: str) -> list[str | int]:
    segments: list[str | int] = []
    position = 0
    while position < len(text):
        if segments and text[position] == "." and position + 1 < len(text) and text[position + 1] != "[":
            position += 1
        elif segments and text[position] != "[":
            raise ValueError(position)
        found = _SEGMENT.match(text, position)
        if not found or (not segments and found.group(2) is not None):
            raise ValueError(position)
        segments.append(found.group(1) if found.group(1) is not None else int(found.group(2)))
        position = found.end()
    if not segments:
        raise ValueError(0)
    return segments


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of a (possibly Optional/Union/Annotated) annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(annotation) for alt in _unwrap(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for alternative in _unwrap(annotation):
        if inspect.isclass(alternative) and issubclass(alternative, BaseModel):
            return alternative
    return None


def _child_annotation(annotation: Any, segment: str | int, value: Any = None) -> tuple[bool, Any]:
    """``(valid, annotation of annotation[segment])``; `Any` below free-form mappings (params)."""
    if annotation is Any:
        return True, Any
    for alternative in _unwrap(annotation):
        origin = typing.get_origin(alternative)
        if isinstance(segment, int):
            if origin in (list, tuple) and not isinstance(value, str):
                return True, typing.get_args(alternative)[0]
            continue
        if inspect.isclass(alternative) and issubclass(alternative, BaseModel):
            if segment in alternative.model_fields:
                return True, alternative.model_fields[segment].annotation
        elif origin is dict or alternative is dict:
            return True, Any
    return False, None


def _annotation_at(loc: Sequence[str | int]) -> Any:
    """The annotation at `loc` inside a run file (None where the path leaves the models)."""
    annotation: Any = RunConfig
    for segment in loc:
        valid, annotation = _child_annotation(annotation, segment)
        if not valid:
            return None
    return annotation


# Shorthands a mapping can be written as, by model: source: NAME, deduplicate: METHOD.
_SHORTHAND_KEY = {ComponentRef: "name", SourceConfig: "name", DeduplicateConfig: "method"}


def _expand_shorthand(value: Any, annotation: Any) -> Any:
    model = _model_in(annotation)
    if isinstance(value, str) and model in _SHORTHAND_KEY:
        return {_SHORTHAND_KEY[model]: value}
    return value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> tuple[dict[str, Any], list[tuple[str, str]],
                                                                             dict[str, str]]:
    """Apply ``PATH=VALUE`` overrides to a raw run-file mapping (a modified copy is returned).

    Values are parsed as YAML (``5`` an integer, ``true`` a boolean, ``null``, ``[a, b]`` a list,
    anything else a string). A path that leaves the run file's keys names the nearest valid one.
    Returns ``(raw, problems, applied)`` where `applied` maps each place set to its override text.
    """
    raw = dict(raw)
    problems: list[tuple[str, str]] = []
    applied: dict[str, str] = {}
    for override in overrides:
        text, sep, value_text = override.partition("=")
        text = text.strip()
        where = f"--set {text or override}"
        if not sep or not text:
            problems.append((where, f"expected PATH=VALUE (e.g. pipeline[2].params.epochs=5), got {override!r}"))
            continue
        try:
            path = _parse_override_path(text)
        except ValueError as error:
            problems.append((where, f"cannot read the path at character {error.args[0] + 1}: write keys with dots and "
                                    f"list items as [N], e.g. pipeline[2].params.epochs"))
            continue
        try:
            value = yaml.load(value_text, Loader=_SafeLoader) if value_text.strip() else None  # noqa: S506
        except Exception as error:  # noqa: BLE001 - any parse failure is a usage error
            problems.append((where, f"cannot parse the value {value_text!r} as YAML: "
                                    f"{getattr(error, 'problem', None) or error}"))
            continue
        trial = dict(raw)  # _set_path copies what it changes: a failed override leaves no trace
        problem = _set_path(trial, path, value)
        if problem:
            problems.append((where, problem))
        else:
            raw = trial
            applied[place_of(path)] = override
    return raw, problems, applied


def _set_path(raw: dict[str, Any], path: list[str | int], value: Any) -> str | None:
    """Set `value` at `path` in `raw`, copying every container on the way (YAML aliases may share
    them); returns a problem message, or None."""
    container: Any = raw
    annotation: Any = RunConfig
    for depth, segment in enumerate(path):
        here = place_of(path[:depth]) or "the top level"
        last = depth == len(path) - 1
        if isinstance(segment, int):
            if not isinstance(container, list):
                return f"{here} is {_type_name(container)}, not a list; nearest valid path: {here}"
            if segment >= len(container):
                if not container:
                    return f"{here} is an empty list; nearest valid path: {here}"
                return (f"{here}[{segment}] does not exist: {here} has {len(container)} item"
                        f"{'s' if len(container) != 1 else ''} ({here}[0] to {here}[{len(container) - 1}]); "
                        f"nearest valid path: {here}[{len(container) - 1}]")
        else:
            if not isinstance(container, dict):
                return f"{here} is {_type_name(container)}, not a mapping; nearest valid path: {here}"
        valid, child = _child_annotation(annotation, segment, container)
        if not valid:
            model = _model_in(annotation)
            known = list(model.model_fields) if model is not None else []
            close = difflib.get_close_matches(str(segment), known, n=1, cutoff=0.5)
            message = f"no key '{segment}' at {here}"
            if close:
                message += f" (did you mean '{place_of([*path[:depth], close[0]])}'?)"
            if depth:
                message += f"; nearest valid path: {place_of(path[:depth])}"
            return message + (f"; keys there: {', '.join(known)}" if known else "")
        if last:
            container[segment] = value
            return None
        below = place_of(path[:depth + 1])
        if not _child_annotation(child, path[depth + 1], [])[0] and (
                _model_in(child) is None or isinstance(path[depth + 1], int)):
            shape = "a list" if isinstance(path[depth + 1], int) else "a mapping"
            return f"{below} takes {_type_markdown(child)}, not {shape}; nearest valid path: {below}"
        if isinstance(container, dict) and segment not in container:
            container[segment] = {} if isinstance(path[depth + 1], str) else []
        current = container[segment]
        current = _expand_shorthand(current, child) if isinstance(path[depth + 1], str) else current
        if isinstance(current, (dict, list)):
            current = copy.copy(current)
        container[segment] = current
        container, annotation = current, child
    return None


# ============================================================================ validation
@dataclass
class _Scan:
    problems: list[tuple[str, str]]
    clean: Any


def _scan(raw: Any) -> _Scan:
    """Problems pydantic would not name well: non-finite numbers, non-string keys, recursive or
    exploding YAML aliases; returns a copy with the offending values left out."""
    problems: list[tuple[str, str]] = []
    memo: dict[int, Any] = {}
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()

    def walk(value: Any, loc: tuple[str | int, ...]) -> tuple[Any, int]:
        place = place_of(loc) or "(top level)"
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((place, f"must be a finite number, got {value}"))
            return _DROP, 1
        if not isinstance(value, (dict, list)):
            return value, 1
        key = id(value)
        if key in ancestors:
            problems.append((place, "refers to itself (a recursive YAML alias)"))
            return _DROP, 1
        if key in memo:
            return memo[key], sizes[key]
        ancestors.add(key)
        size = 1
        if isinstance(value, dict):
            clean: Any = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    problems.append((place, f"keys must be strings, got {_type_name(k)} {k!r}"))
                    continue
                item, n = walk(v, (*loc, k))
                size += n
                if item is not _DROP:
                    clean[k] = item
        else:
            clean = []
            for i, v in enumerate(value):
                item, n = walk(v, (*loc, i))
                size += n
                clean.append(None if item is _DROP else item)
        ancestors.discard(key)
        memo[key], sizes[key] = clean, size
        return clean, size

    try:
        clean, size = walk(raw, ())
    except RecursionError:
        raise ConfigError(problems=[("(top level)", "nested too deeply")]) from None
    if size > _MAX_VALUES:  # stop here: even printing such a value would take forever
        raise ConfigError(problems=[("(top level)", f"holds {size:,} values once YAML aliases are expanded "
                                                    f"(at most {_MAX_VALUES:,})")])
    return _Scan(problems, clean)


_DROP = object()


class _Errors:
    """A stand-in for a `ValidationError` holding adjusted error items."""

    def __init__(self, items: list[dict[str, Any]]):
        self._items = items

    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        return self._items


_SIMPLE_TAGS = {"str", "int", "float", "bool", "none", "bytes", "dict", "list"}
_MODEL_NAMES = {m.__name__ for m in (ComponentRef, SourceConfig, DeduplicateConfig, SplitConfig, StepConfig,
                                     OutputConfig, RunConfig)}
_TAG_TEXT = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "none": "null",
             "list": "a list", "dict": "a mapping"}


def _is_union_tag(segment: Any) -> bool:
    return isinstance(segment, str) and (segment in _SIMPLE_TAGS or segment in _MODEL_NAMES or "[" in segment)


def _tag_text(tag: str) -> str:
    if tag in _TAG_TEXT:
        return _TAG_TEXT[tag]
    if tag.startswith("list["):
        return "a list"
    if tag.startswith("literal["):
        return "one of " + tag[len("literal["):-1]
    return "a mapping"


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as ``(place, message)``, union branches folded into one problem each."""
    items = error.errors(include_url=False)
    unions: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    adjusted: list[dict[str, Any] | tuple] = []
    for item in items:
        item = dict(item)
        loc = tuple(item.get("loc", ()))
        scan = loc[:-1] if item.get("type") == "extra_forbidden" else loc
        tag_at = next((i for i, s in enumerate(scan) if _is_union_tag(s)), None)
        if item.get("type") == _PLACED_ERROR:
            item.pop("input", None)
            keys = [k for k in (item.get("ctx") or {}).get("setforge_at", "").split(",") if k]
            for key in keys or [None]:
                adjusted.append({**item, "loc": loc + ((key,) if key else ())})
            continue
        if isinstance(item.get("msg"), str) and item["msg"].startswith("Value error, "):
            item["msg"] = item["msg"][len("Value error, "):]
        if item.get("type") in ("model_type", "dict_type", "model_attributes_type"):
            annotation = _annotation_at(loc)
            shorthand = _model_in(annotation) in _SHORTHAND_KEY if annotation is not None else False
            item["msg"] = "must be a name or a mapping" if shorthand else "must be a mapping"
        elif item.get("type") == "missing":
            item["msg"] = "required key missing"
        if tag_at is None:
            adjusted.append(item)
            continue
        prefix = loc[:tag_at]
        if prefix not in unions:
            unions[prefix] = {}
            adjusted.append(prefix)  # placeholder: keeps the problems in order
        unions[prefix].setdefault(loc[tag_at], []).append({**item, "loc": prefix + loc[tag_at + 1:]})
    out: list[dict[str, Any]] = []
    for entry in adjusted:
        if isinstance(entry, dict):
            out.append(entry)
            continue
        branches = unions[entry]
        deep = [i for errors in branches.values() for i in errors if len(i["loc"]) > len(entry)]
        if deep:  # the value had one branch's shape: its own errors say what is wrong inside
            out.extend(deep)
            continue
        given = next(iter(branches.values()))[0].get("input")
        if entry and entry[-1] == "augment":
            message = "must be an augmenter name, or a list of them (a chain)"
        else:
            message = "must be " + " or ".join(dict.fromkeys(_tag_text(t) for t in branches))
        out.append({"type": "union", "loc": entry, "msg": message, "input": given})
    problems = problems_from_validation_error(_Errors(out))
    return [(place, _enrich_unknown(message, item["loc"])) if item.get("type") == "extra_forbidden" else (place, message)
            for (place, message), item in zip(problems, out)]


def _enrich_unknown(message: str, loc: Sequence[Any], fields: Iterable[str] | None = None, owner: str = "") -> str:
    """``unknown key`` plus the closest accepted key and the accepted keys."""
    key = str(loc[-1]) if loc else ""
    if fields is None:
        model = _model_in(_annotation_at(loc[:-1])) if loc else None
        if model is None:
            return message
        fields = list(model.model_fields)
    fields = list(fields)
    if not fields:
        return f"unknown key: {owner or 'this'} takes no params"
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint or '.'} Accepted{' by ' + owner if owner else ''}: {', '.join(fields)}"


def _under(place: str, parent: str) -> bool:
    return place == parent or place.startswith(parent + ".") or place.startswith(parent + "[")


@dataclass
class _Partial:
    """What a run file that failed validation still tells: enough to load its plugins and check
    its components, so that all problems are reported at once."""

    raw: dict[str, Any]
    base_dir: Path
    plugins: list[str]
    plugins_deny: list[str]
    plugins_allow: list[str] | None
    overrides: dict[str, str]


def _str_list(value: Any, default: Any) -> Any:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return default


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read, override (``--set PATH=VALUE``) and validate a run file.

    Raises `ConfigError` with every problem found, each with its place. The config's
    ``base_dir`` is the run file's folder. Components are checked by `check_components`.
    """
    path = Path(path)
    raw = read_run_file(path)
    raw, problems, applied = apply_overrides(raw, overrides)
    scan = _scan(raw)
    problems += scan.problems
    base_dir = path.resolve().parent
    config = None
    try:
        config = RunConfig.model_validate(scan.clean)
    except ValidationError as error:
        flagged = [place for place, _ in scan.problems]
        problems += [(place, message) for place, message in _problems(error)
                     if not any(_under(place, other) for other in flagged)]
    if problems:
        error = ConfigError(problems=_tidy(problems, applied))
        clean = scan.clean if isinstance(scan.clean, dict) else {}
        error.partial = _Partial(clean, base_dir, _str_list(clean.get("plugins"), []),  # type: ignore[attr-defined]
                                 _str_list(clean.get("plugins_deny"), []), _str_list(clean.get("plugins_allow"), None),
                                 applied)
        raise error
    assert config is not None
    config._base_dir = base_dir
    config._file = path
    config._overrides = applied
    return config


_TOP_KEYS = list(RunConfig.model_fields)


def _tidy(problems: Iterable[tuple[str, str]], overrides: Mapping[str, str] = {}) -> list[tuple[str, str]]:
    """Problems without repeats, in the order of the run file's keys, each naming the ``--set``
    that gave the value."""
    def order(problem: tuple[str, str]) -> tuple[int, int, int]:
        place = problem[0]
        top = re.match(r"[A-Za-z_][\w-]*", place)
        index = re.search(r"\[(\d+)\]", place)
        rank = _TOP_KEYS.index(top.group(0)) if top and top.group(0) in _TOP_KEYS else -1 if not top else len(_TOP_KEYS)
        return (1 if place.startswith("--set") else 0, rank, int(index.group(1)) if index else -1)

    marked = [(place, message + "".join(f" (from --set {text})" for set_place, text in overrides.items()
                                        if _under(place, set_place)))
              for place, message in problems]
    return sorted(dict.fromkeys(marked), key=order)


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


def _check_ref(ref: _Ref, registry: Any, base_dir: Path, resolved: dict[str, dict[str, Any]] | None
               ) -> list[tuple[str, str]]:
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

        return [(place, _enrich_unknown(message, [direct_key(place)], fields, owner)
                 if message == "unknown key" and direct_key(place) else message)
                for place, message in error.problems]
    problems = _nonfinite(parsed, ref.params_place)
    for field_name, field in fields.items():
        if not _is_path_annotation(field.annotation):
            continue  # a default path is resolved too: the component's docs say "relative to the run file"
        value = getattr(parsed, field_name)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        ref.params[field_name] = str(path)  # the config now holds the resolved path
        must_exist = ref.kind == "source" or _marks_existing(field.annotation)
        if must_exist and not path.exists():
            problems.append((f"{ref.params_place}.{field_name}",
                             f"{path} does not exist (relative paths resolve against the run file's folder, "
                             f"{base_dir})"))
    if resolved is not None and not problems:
        try:
            dumped = cls.parse_params(ref.params).model_dump(mode="json")
            resolved[ref.params_place] = dumped
        except Exception:  # noqa: BLE001 - params that do not dump as JSON are shown as given
            pass
    return problems


def check_components(config: RunConfig, registry: Any) -> None:
    """Check every component the run file names, before any work starts.

    Each name must be installed (an unknown one lists the known names with the closest match),
    its params must validate against its ``Params``, ``Path`` params (given or default) are
    resolved against the run file's folder and written into the config's params, and a source's
    paths, and params typed `setforge.components.ExistingPath` (a generator's ``checkpoint``, an
    evaluator's ``inception_weights``), must exist. When the source gives one modality only, every
    component must accept it. Every problem is collected into one `ConfigError`.
    """
    problems: list[tuple[str, str]] = []
    config._resolved_params = {}
    refs = _refs_from_config(config)
    for ref in refs:
        problems += _check_ref(ref, registry, config.base_dir, config._resolved_params)
    if not problems:
        problems += _modality_problems(refs, registry)
    if problems:
        raise ConfigError(problems=_tidy(problems, config._overrides))


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
            for ref in _refs_from_raw(partial.raw):
                if not any(_under(ref.place, place) or _under(ref.params_place, place) for place, _ in error.problems):
                    more += _check_ref(ref, registry, partial.base_dir, None)
        except ConfigError as registry_error:
            more += registry_error.problems
        except SetforgeError:  # plugin failures are reported once the file itself is valid
            pass
        raise ConfigError(problems=_tidy(error.problems + _tidy(more, partial.overrides))) from None
    registry = make_registry(config)
    check_components(config, registry)
    return config, registry


# ================================================================================= dump
def _step_dump(step: StepConfig, index: int, resolved: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    kind = step.kind
    out: dict[str, Any] = {}
    if step.is_chain:
        assert isinstance(step.augment, list)
        out[kind] = [{"name": r.name, "params": resolved.get(f"pipeline[{index}].augment[{j}].params", r.params)}
                     for j, r in enumerate(step.augment)]
    else:
        out[kind] = getattr(step, kind)
        out["params"] = resolved.get(f"pipeline[{index}].params", step.params)
    dumped = step.model_dump(mode="json")
    for key in HOST_KEYS[kind]:
        if key in ("target", "per_class", "multiply") and dumped[key] is None:
            continue
        out[key] = dumped[key]
    return out


def dump_resolved(config: RunConfig) -> str:
    """The config as YAML with every default filled in (``setforge validate``); itself a valid run file.

    After `check_components`, component params show their defaults too and paths are absolute.
    """
    resolved = config._resolved_params
    data = config.model_dump(mode="json")
    data["source"]["params"] = resolved.get("source.params", config.source.params)
    for key in ("preprocess", "evaluate"):
        data[key] = [{"name": r.name, "params": resolved.get(f"{key}[{i}].params", r.params)}
                     for i, r in enumerate(getattr(config, key))]
    data["pipeline"] = [_step_dump(step, i, resolved) for i, step in enumerate(config.pipeline)]
    data["plugins"] = [str(config.base_dir / p) if p.endswith(".py") and not Path(p).is_absolute() else p
                       for p in config.plugins]
    header = [f"# setforge run file, resolved{' from ' + str(config._file) if config._file else ''}",
              "# (defaults filled in; paths in params are absolute; output.dir is relative to the current folder)"]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body.rstrip("\n")


def _type_markdown(annotation: Any) -> str:
    parts = []
    for alternative in _unwrap(annotation):
        origin = typing.get_origin(alternative)
        if alternative is type(None):
            parts.append("null")
        elif origin is Literal:
            parts.extend(f"`{value}`" for value in typing.get_args(alternative))
        elif origin in (list, tuple):
            inner = _type_markdown(typing.get_args(alternative)[0])
            parts.append(f"list of ({inner})" if " or " in inner else f"list of {inner}s")
        elif origin is dict or alternative is dict:
            parts.append("mapping")
        elif alternative in (ComponentRef, SourceConfig):
            parts.append("component")
        elif alternative is StepConfig:
            parts.append("step")
        elif alternative is DeduplicateConfig:
            parts.extend(["`none`", "`exact`", "`near`", "mapping"])
        elif inspect.isclass(alternative) and issubclass(alternative, BaseModel):
            parts.append("mapping")
        else:
            parts.append({bool: "boolean", int: "integer", float: "number", str: "string",
                          Any: "any"}.get(alternative, getattr(alternative, "__name__", str(alternative))))
    return " or ".join(dict.fromkeys(parts))
