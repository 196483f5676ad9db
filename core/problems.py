"""Problems with their places: pydantic's validation errors folded into ``(place, message)`` pairs
(union branches into one problem each, unknown keys with the closest accepted one), the values
pydantic would not name well (non-finite numbers, recursive or exploding YAML aliases), and the
order and ``--set`` marks of a final problem list."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .config import (_PLACED_ERROR, _SHORTHAND_KEY, ComponentRef, DeduplicateConfig, OutputConfig, RunConfig,
                     SourceConfig, SplitConfig, StepConfig, _annotation_at, _model_in)
from .errors import ConfigError
from .validation import BRANCH_TAGS, place_of, problems_from_validation_error

__all__ = ["fold_problems", "tidy_problems", "scan_values", "enrich_unknown", "is_under", "type_name"]

_MAX_VALUES = 1_000_000  # after expanding YAML aliases (guards against "billion laughs")


def type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@dataclass
class _Scan:
    problems: list[tuple[str, str]]
    clean: Any


def scan_values(raw: Any) -> _Scan:
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
                    problems.append((place, f"keys must be strings, got {type_name(k)} {k!r}"))
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


_MODEL_NAMES = {m.__name__ for m in (ComponentRef, SourceConfig, DeduplicateConfig, SplitConfig, StepConfig,
                                     OutputConfig, RunConfig)}
_TAG_TEXT = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "none": "null",
             "list": "a list", "dict": "a mapping"}


def _is_union_tag(segment: Any) -> bool:
    return isinstance(segment, str) and (segment in BRANCH_TAGS or segment in _MODEL_NAMES or "[" in segment)


def _tag_text(tag: str) -> str:
    if tag in _TAG_TEXT:
        return _TAG_TEXT[tag]
    if tag.startswith("list["):
        return "a list"
    if tag.startswith("literal["):
        return "one of " + tag[len("literal["):-1]
    return "a mapping"


def _into_union(unions: dict[tuple, dict[str, list[dict[str, Any]]]], adjusted: list[Any], item: dict[str, Any],
                tag_at: int) -> None:
    """File `item` under its union (the location before the branch tag at `tag_at`) and branch."""
    loc = tuple(item["loc"])
    prefix = loc[:tag_at]
    if prefix not in unions:
        unions[prefix] = {}
        adjusted.append(prefix)  # placeholder: keeps the problems in order
    unions[prefix].setdefault(loc[tag_at], []).append({**item, "loc": prefix + loc[tag_at + 1:]})


def fold_problems(error: ValidationError) -> list[tuple[str, str]]:
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
                placed = {**item, "loc": loc + ((key,) if key else ())}
                if tag_at is None:
                    adjusted.append(placed)
                else:  # inside a union branch (a chain's op): folded with the other branches below
                    _into_union(unions, adjusted, placed, tag_at)
            continue
        if item.get("type") in ("model_type", "dict_type", "model_attributes_type"):
            annotation = _annotation_at(loc)
            shorthand = _model_in(annotation) in _SHORTHAND_KEY if annotation is not None else False
            item["msg"] = "must be a name or a mapping" if shorthand else "must be a mapping"
        elif item.get("type") == "missing":
            item["msg"] = "required key missing"
        if tag_at is None:
            adjusted.append(item)
        else:
            _into_union(unions, adjusted, item, tag_at)
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
    return [(place, enrich_unknown(message, item["loc"])) if item.get("type") == "extra_forbidden" else (place, message)
            for (place, message), item in zip(problems, out)]


def enrich_unknown(message: str, loc: Sequence[Any], fields: Iterable[str] | None = None, owner: str = "") -> str:
    """``unknown key`` plus the closest accepted key and the accepted keys."""
    key = str(loc[-1]) if loc else ""
    if fields is None:
        if (model := _model_in(_annotation_at(loc[:-1])) if loc else None) is None:
            return message
        fields = list(model.model_fields)
    if not (fields := list(fields)):
        return f"unknown key: {owner or 'this'} takes no params"
    # (a key that begins accepted ones names them too: lr -> lr_generator or lr_discriminator)
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5) or [f for f in fields if f.startswith(key + "_")][:2]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown key{hint or '.'} Accepted{' by ' + owner if owner else ''}: {', '.join(fields)}"


def is_under(place: str, parent: str) -> bool:
    return place == parent or place.startswith(parent + ".") or place.startswith(parent + "[")




_TOP_KEYS = list(RunConfig.model_fields)


def tidy_problems(problems: Iterable[tuple[str, str]], overrides: Mapping[str, str] = {}) -> list[tuple[str, str]]:
    """Problems without repeats, in the order of the run file's keys, each naming the ``--set``
    that gave the value."""
    def order(problem: tuple[str, str]) -> tuple[int, int, int]:
        place = problem[0]
        top = re.match(r"[A-Za-z_][\w-]*", place)
        index = re.search(r"\[(\d+)\]", place)
        rank = _TOP_KEYS.index(top.group(0)) if top and top.group(0) in _TOP_KEYS else -1 if not top else len(_TOP_KEYS)
        return (1 if place.startswith("--set") else 0, rank, int(index.group(1)) if index else -1)

    marked = [(place, message + "".join(f" (from --set {text})" for set_place, text in overrides.items()
                                        if is_under(place, set_place)))
              for place, message in problems]
    return sorted(dict.fromkeys(marked), key=order)
