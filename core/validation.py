"""Turning pydantic's validation errors into setforge's ``(place, message)`` problems."""

from __future__ import annotations

from typing import Any

__all__ = ["BRANCH_TAGS", "place_of", "problems_from_validation_error"]

#: pydantic's names for the plain-type branches of a union in an error's location (``steps.int``).
BRANCH_TAGS = frozenset({"str", "int", "float", "bool", "none", "bytes", "dict", "list"})
_SHOULD = "Input should be "
_NONE = object()  # no value to show: pydantic gave none, or a missing or unknown key


def place_of(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """``("pipeline", 2, "params", "epochs")`` -> ``pipeline[2].params.epochs`` (after `prefix`)."""
    place = prefix
    for part in loc:
        if isinstance(part, int):
            place += f"[{part}]"
        else:
            place += f".{part}" if place else str(part)
    return place


def _is_branch(part: Any) -> bool:
    return isinstance(part, str) and (part in BRANCH_TAGS or "[" in part or part.startswith(("function-",
                                                                                             "constrained-")))


def problems_from_validation_error(error: Any, prefix: str = "") -> list[tuple[str, str]]:
    """One ``(place, message)`` per pydantic error, naming what was given and what is accepted;
    the failed branches of one union (``int >= 1`` or ``'auto'``) make one message."""
    found: dict[Any, tuple[str, list[str], Any]] = {}  # union place or error number -> problem, in order
    for number, item in enumerate(error.errors(include_url=False)):
        loc = item.get("loc", ())
        kept = [p for p in loc if not _is_branch(p)]
        place = place_of(kept, prefix)
        message = ("unknown key" if item.get("type") == "extra_forbidden"
                   else str(item.get("msg", "invalid value")).removeprefix("Value error, "))  # (a validator's own words)
        given = item.get("input", _NONE) if item.get("type") not in ("missing", "extra_forbidden") else _NONE
        _, messages, _ = found.setdefault((place,) if len(kept) < len(loc) else number, (place, [], given))
        if message not in messages:
            messages.append(message)
    problems = []
    for place, messages, given in found.values():
        message = " or ".join([messages[0], *(m.removeprefix(_SHOULD) for m in messages[1:])])
        text = repr(given)  # (a message that quotes a given str already says it)
        if given is not _NONE and not (isinstance(given, str) and text in message):
            message += f" (given: {text[:77] + '...' if len(text) > 80 else text})"
        problems.append((place, message))
    return problems
