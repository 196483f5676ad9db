"""Turning pydantic's validation errors into setforge's ``(place, message)`` problems."""

from __future__ import annotations

from typing import Any

__all__ = ["place_of", "problems_from_validation_error"]


def place_of(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """``("pipeline", 2, "params", "epochs")`` -> ``pipeline[2].params.epochs`` (after `prefix`)."""
    place = prefix
    for part in loc:
        if isinstance(part, int):
            place += f"[{part}]"
        else:
            place += f".{part}" if place else str(part)
    return place


def problems_from_validation_error(error: Any, prefix: str = "") -> list[tuple[str, str]]:
    """One ``(place, message)`` per pydantic error, naming what was given and what is accepted."""
    problems = []
    for item in error.errors(include_url=False):
        loc = [p for p in item.get("loc", ()) if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        message = item.get("msg", "invalid value")
        if item.get("type") == "extra_forbidden":
            message = "unknown key"
        elif "input" in item and item.get("type") != "missing":
            given = item["input"]
            text = repr(given)
            if len(text) > 80:
                text = text[:77] + "..."
            message = f"{message} (given: {text})"
        problems.append((place_of(loc, prefix), message))
    return problems
