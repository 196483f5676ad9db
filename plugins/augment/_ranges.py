"""Random parameters given as ranges, and per-row draws from them.

One convention for every augmenter (torchvision's, made uniform): a random parameter is given as a
pair ``(low, high)`` — each row draws its value uniformly in it — or as one number whose meaning
depends on the family of the parameter:

- *symmetric* (angles, shears, hue shift): ``v`` means ``(-v, v)``;
- *factor* (brightness, contrast, saturation, sharpness — multiplicative around 1): ``v`` means
  ``(max(0, 1 - v), 1 + v)``, as in ``torchvision.transforms.ColorJitter``;
- *value* (blur sigma, noise sigma, posterize bits, solarize threshold, crop scale): ``v`` means
  the fixed value ``(v, v)``.

Validated params always hold the ``(low, high)`` pair, so what ``model_dump`` shows is what is
drawn from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, BeforeValidator

__all__ = ["symmetric", "factor", "value", "integer", "uniform", "uniform_int", "log_uniform", "Range", "unit_values"]

Range = tuple[float, float]


def _check_pair(pair: tuple[float, float], low: float, high: float) -> Range:
    lo, hi = float(pair[0]), float(pair[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"a range must hold finite numbers, got ({lo}, {hi})")
    if lo > hi:
        raise ValueError(f"a range (low, high) needs low <= high, got ({lo}, {hi})")
    if lo < low or hi > high:
        raise ValueError(f"the range ({lo}, {hi}) must lie within [{low}, {high}]")
    return lo, hi


def _not_a_switch(given: Any) -> Any:
    """Refuse ``true``/``false`` before pydantic's lax mode reads it as 1/0 (the core's check of
    retyped scalars does not see it: what is parsed is a pair, not a scalar to compare)."""
    if isinstance(given, bool):
        raise ValueError(f"a number or a range (low, high) is wanted here, not {str(given).lower()} (true/false)")
    return given


_REFUSE_SWITCHES = BeforeValidator(_not_a_switch)


def _validator(expand: Callable[[float], Range], low: float, high: float) -> Callable[[Any], Range]:
    def check(given: Any) -> Range:
        if isinstance(given, (int, float)):
            if not math.isfinite(float(given)):
                raise ValueError(f"must be a finite number, got {given}")
            return _check_pair(expand(float(given)), low, high)
        return _check_pair(tuple(given), low, high)
    return check


def _symmetric_expand(v: float) -> Range:
    if v < 0:
        raise ValueError(f"a single number means the range (-v, v) and must be >= 0, got {v}")
    return -v, v


def _factor_expand(v: float) -> Range:
    if v < 0:
        raise ValueError(f"a single number v means the factor range (max(0, 1 - v), 1 + v) and must be >= 0, got {v}")
    return max(0.0, 1.0 - v), 1.0 + v


def symmetric(bound: float) -> Any:
    """The type of a symmetric range: ``v`` means ``(-v, v)``; a pair is the range; within ±`bound`."""
    return Annotated[float | tuple[float, float], _REFUSE_SWITCHES,
                     AfterValidator(_validator(_symmetric_expand, -bound, bound))]


def factor(high: float = 100.0) -> Any:
    """The type of a factor range: ``v`` means ``(max(0, 1 - v), 1 + v)``; a pair is the range."""
    return Annotated[float | tuple[float, float], _REFUSE_SWITCHES,
                     AfterValidator(_validator(_factor_expand, 0.0, high))]


def value(low: float, high: float) -> Any:
    """The type of a value range: ``v`` means the fixed value ``(v, v)``; a pair is the range."""
    return Annotated[float | tuple[float, float], _REFUSE_SWITCHES,
                     AfterValidator(_validator(lambda v: (v, v), low, high))]


def integer(low: int, high: int) -> Any:
    """The type of an integer range: ``v`` means the fixed value ``(v, v)``; a pair is the range
    (both ends included)."""
    def check(given: Any) -> tuple[int, int]:
        pair = (given, given) if isinstance(given, int) else tuple(given)
        lo, hi = int(pair[0]), int(pair[1])
        if lo > hi or lo < low or hi > high:
            raise ValueError(f"must be an integer or a range (low, high) with {low} <= low <= high <= {high}, "
                             f"got {given}")
        return lo, hi
    return Annotated[int | tuple[int, int], _REFUSE_SWITCHES, AfterValidator(check)]


def uniform(bounds: Range, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` float32 values drawn uniformly in ``bounds`` (no draw when the range is one value)."""
    lo, hi = bounds
    if lo == hi:
        return torch.full((n,), float(lo), device=device)
    return torch.rand(n, generator=generator, device=device).mul_(hi - lo).add_(lo)


def uniform_int(bounds: tuple[int, int], n: int, generator: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """``n`` int64 values drawn uniformly from ``low..high`` (both included)."""
    lo, hi = bounds
    if lo == hi:
        return torch.full((n,), int(lo), device=device, dtype=torch.int64)
    return torch.randint(int(lo), int(hi) + 1, (n,), generator=generator, device=device)


def log_uniform(bounds: Range, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` values whose logarithm is uniform in ``log(bounds)`` (aspect ratios)."""
    return uniform((math.log(bounds[0]), math.log(bounds[1])), n, generator, device).exp_()


def unit_values(given: Any, key: str = "fill", also: str = "") -> Any:
    """The validator of a fill-like param: one value, or one per channel, each in [0, 1] (`also`:
    what else the param accepts, in words)."""
    values = (given,) if isinstance(given, (int, float)) else given
    if not values:
        raise ValueError(f"{key} needs one value, or one per channel, in [0, 1]{also}; got none")
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"{key} must lie in [0, 1]{also}, got {given}")
    return given
