"""Reading a run file (YAML, TOML or JSON; safe loading only, nothing written), ``--set PATH=VALUE``
overrides, and `load_run_config`: read, override and validate, with every problem at its place.

Typical use (what ``setforge validate`` and ``setforge run`` do)::

    config, registry = load_and_check("run.yaml", ["seed=3"], make_registry)   # setforge.checks
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import _MAX_FILE_BYTES, SUFFIXES, RunConfig, _child_annotation, _expand_shorthand, _model_in, type_words
from .errors import ConfigError
from .problems import fold_problems, is_under, scan_values, tidy_problems, type_name
from .validation import place_of

__all__ = ["read_run_file", "apply_overrides", "load_run_config"]


# ============================================================================== reading
def read_run_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a run file (YAML, TOML or JSON by extension), before validation.

    Every way a file can be unreadable (missing, binary, empty, bad syntax, a top level that is
    not a mapping, a YAML tag that would build a Python object) is a `ConfigError` naming the file.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(problems=[(where, "is not a file" if path.exists() else "no such file")])
    if (fmt := SUFFIXES.get(path.suffix.lower())) is None:
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
                                            f"got {type_name(raw)}")])
    return raw


class _SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also refuses duplicate keys (which YAML would silently overwrite), and
    reads numbers by YAML 1.2's core schema, as TOML and JSON do (PyYAML's YAML 1.1 reads ``1e-4``
    as text, ``017`` as 15 and ``1:30`` as 90), and dates as text."""

    yaml_implicit_resolvers = {first: [(tag, rule) for tag, rule in found if not tag.endswith(("int", "float", "stamp"))]
                               for first, found in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node).replace("_", "")
        return int(text, 0) if text.lstrip("+-")[:2] in ("0x", "0o") else int(text)


_SafeLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                  list("-+0123456789"))
_SafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
_SafeLoader.add_constructor("tag:yaml.org,2002:int", _SafeLoader.construct_yaml_int)


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


# ============================================================================= overrides
_SEGMENT = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_-]*)|\[(\d+|\+)\]")  # a key may start with a digit: a class name
_APPEND = -1  # the path segment ``[+]``: a new item at the end of the list


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
        index = found.group(2)
        segments.append(found.group(1) if index is None else _APPEND if index == "+" else int(index))
        position = found.end()
    if not segments:
        raise ValueError(0)
    return segments


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> tuple[dict[str, Any], list[tuple[str, str]],
                                                                             dict[str, str]]:
    """Apply ``PATH=VALUE`` overrides to a raw run-file mapping (a modified copy is returned).

    Values are parsed as YAML (``5`` an integer, ``true`` a boolean, ``null``, ``[a, b]`` a list,
    anything else a string); ``[+]`` in a path appends to a list (``observe[+]=NAME``). A path
    that leaves the run file's keys names the nearest valid one.
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
        if problem := _set_path(trial, path, value):
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
                return f"{here} is {type_name(container)}, not a list; nearest valid path: {here}"
            if segment == _APPEND:
                segment = path[depth] = len(container)
                container.append({})
            if segment >= len(container):
                if not container:
                    return f"{here} is an empty list; nearest valid path: {here}"
                return (f"{here}[{segment}] does not exist: {here} has {len(container)} item"
                        f"{'s' if len(container) != 1 else ''} ({here}[0] to {here}[{len(container) - 1}]); "
                        f"nearest valid path: {here}[{len(container) - 1}]")
        else:
            if not isinstance(container, dict):
                return f"{here} is {type_name(container)}, not a mapping; nearest valid path: {here}"
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
            return f"{below} takes {type_words(child)}, not {shape}; nearest valid path: {below}"
        if isinstance(container, dict) and segment not in container:
            container[segment] = {} if isinstance(path[depth + 1], str) else []
        current = container[segment]
        current = _expand_shorthand(current, child) if isinstance(path[depth + 1], str) else current
        if isinstance(current, (dict, list)):
            current = copy.copy(current)
        container[segment] = current
        container, annotation = current, child
    return None




# ============================================================================ loading
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


def load_run_config(path: str | Path, overrides: Sequence[str] = (),
                    context_for: Callable[[Any], Mapping[str, Any]] | None = None) -> RunConfig:
    """Read, override (``--set PATH=VALUE``) and validate a run file, in one pass.

    `context_for(partial)` (see `checks.load_and_check`) makes pydantic's validation context from
    what the file says before validation (its ``plugins`` keys and folder): with a component
    checker there, every component's params are parsed once, in the same pass, and their problems
    come with the file's. Raises `ConfigError` with every problem found, each with its place (and
    the `_Partial` as ``partial``). The config's ``base_dir`` is the run file's folder.
    """
    path = Path(path)
    raw = read_run_file(path)
    raw, problems, applied = apply_overrides(raw, overrides)
    scan = scan_values(raw)
    problems += scan.problems
    clean = scan.clean if isinstance(scan.clean, dict) else {}
    partial = _Partial(clean, path.resolve().parent, _str_list(clean.get("plugins"), []),
                       _str_list(clean.get("plugins_deny"), []), _str_list(clean.get("plugins_allow"), None), applied)
    context = None
    if context_for is not None:
        try:
            context = context_for(partial)
        except ConfigError as error:  # a bad plugins key: the file's other problems still count
            problems += error.problems
    config = None
    try:
        config = RunConfig.model_validate(scan.clean, context=context)
    except ValidationError as error:
        flagged = [place for place, _ in scan.problems]
        problems += [(place, message) for place, message in fold_problems(error)
                     if not any(is_under(place, other) for other in flagged)]
    if problems:
        error = ConfigError(problems=tidy_problems(problems, applied))
        error.partial = partial  # type: ignore[attr-defined]
        raise error
    assert config is not None
    config._base_dir = partial.base_dir
    config._file = path
    config._overrides = applied
    return config
