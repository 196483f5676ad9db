"""Per-column scalers for tabular data, fitted on the training split only.

Each scales the numeric columns (``features.numeric_indices``; every column when the data has no
`FeatureInfo`) and never touches categorical codes. They change units, so each also inverts
itself: the writer gives data back in original units. Statistics are computed in float64 on the
fitted data's device and kept as CPU tensors in the state saved in the run folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from setforge import DataError, Dataset, Preprocessor, StepContext

__all__ = ["Standardize", "MinMax", "Quantile"]


class _ColumnScaler(Preprocessor):
    """Shared plumbing: which columns, checking widths, float64 maths, state of named tensors."""

    modalities = ("tabular",)
    changes_units = True
    #: names of the fitted per-column tensors (the state besides ``columns`` and ``width``)
    state_tensors: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.columns = torch.zeros(0, dtype=torch.int64)
        self.width = 0

    def _fit(self, train: Dataset, ctx: StepContext) -> None:
        if len(train) == 0:
            raise DataError(f"preprocess '{self.name}': the training split is empty; nothing to fit on")
        self.width = train.x.shape[1]
        numeric = list(range(self.width)) if train.features is None else train.features.numeric_indices
        self.columns = torch.tensor(numeric, dtype=torch.int64)
        self._fit_columns(train.x[:, self.columns.to(train.device)].double())

    def _apply(self, ds: Dataset, fn: Any) -> Dataset:
        if ds.x.shape[1] != self.width:
            raise DataError(f"preprocess '{self.name}' was fitted on {self.width} columns, the data has "
                            f"{ds.x.shape[1]}; fit and apply it to data of the same columns")
        if self.columns.numel() == 0:
            return ds
        columns = self.columns.to(ds.device)
        x = ds.x.clone()
        x[:, columns] = fn(ds.x[:, columns].double()).to(torch.float32)
        return ds.replace(x=x)

    def _transform(self, ds: Dataset) -> Dataset:
        return self._apply(ds, self._forward)

    def _inverse(self, ds: Dataset) -> Dataset:
        return self._apply(ds, self._backward)

    def _stat(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return getattr(self, name).to(device=like.device, dtype=torch.float64)

    def _state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"columns": self.columns.tolist(), "width": self.width}
        state.update({name: getattr(self, name).detach().cpu() for name in self.state_tensors})
        return state

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.columns = torch.as_tensor(state["columns"], dtype=torch.int64)
        self.width = int(state["width"])
        for name in self.state_tensors:
            setattr(self, name, torch.as_tensor(state[name], dtype=torch.float64))

    # per scaler -----------------------------------------------------------------------------
    def _fit_columns(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _backward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Standardize(_ColumnScaler):
    """Centre each numeric column on its training mean and divide by its training standard deviation.

    As scikit-learn's StandardScaler: the population standard deviation (``ddof=0``), and a
    column with no spread is divided by 1. Categorical columns are left as they are.
    """

    name = "standardize"
    state_tensors = ("mean", "scale")

    class Params(Preprocessor.Params):
        """What to remove."""

        with_mean: bool = Field(True, description="subtract the training mean")
        with_std: bool = Field(True, description="divide by the training standard deviation")

    def _fit_columns(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=0) if self.params.with_mean else torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        std = x.std(dim=0, correction=0) if self.params.with_std else torch.ones_like(mean)
        self.mean = mean.cpu()
        self.scale = torch.where(std > 0, std, torch.ones_like(std)).cpu()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._stat("mean", x)) / self._stat("scale", x)

    def _backward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._stat("scale", x) + self._stat("mean", x)


class MinMax(_ColumnScaler):
    """Map each numeric column's training range onto ``feature_range`` (default [0, 1]).

    As scikit-learn's MinMaxScaler: a column with no spread is mapped to the range's lower end.
    Values outside the training range (in val or test) land outside ``feature_range`` unless
    ``clip`` is set. Categorical columns are left as they are.
    """

    name = "min-max"
    state_tensors = ("data_min", "data_range")

    class Params(Preprocessor.Params):
        """The target range."""

        feature_range: tuple[float, float] = Field((0.0, 1.0), description="[low, high] the training range maps to")
        clip: bool = Field(False, description="clip transformed values to feature_range")

        @field_validator("feature_range")
        @classmethod
        def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not value[0] < value[1]:
                raise ValueError(f"feature_range must be [low, high] with low < high, got {list(value)}")
            return value

    def _fit_columns(self, x: torch.Tensor) -> None:
        low, high = x.min(dim=0).values, x.max(dim=0).values
        spread = high - low
        self.data_min = low.cpu()
        self.data_range = torch.where(spread > 0, spread, torch.ones_like(spread)).cpu()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.params.feature_range
        out = (x - self._stat("data_min", x)) / self._stat("data_range", x) * (high - low) + low
        return out.clamp(low, high) if self.params.clip else out

    def _backward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.params.feature_range
        return (x - low) / (high - low) * self._stat("data_range", x) + self._stat("data_min", x)


_BOUND = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: uniform values are kept in [1e-7, 1 - 1e-7] before ndtri
#: Normal outputs within this of ndtri(1e-7) or ndtri(1 - 1e-7) (about -+5.2) are the training
#: ends: the float32 a transformed value is stored in is off by up to 2.4e-7 (half its step) there,
#: so no wider band of values is taken for the ends than float32 could tell apart anyway.
_NORMAL_END_SLACK = 2.5e-7


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Column-wise ``numpy.interp``: `x` ``(N, D)``, `xp` ``(Q, D)`` ascending per column, `fp` ``(Q, D)``."""
    xt, xpt, fpt = x.T.contiguous(), xp.T.contiguous(), fp.T.contiguous()
    q = xpt.shape[1]
    right = torch.searchsorted(xpt, xt, right=True).clamp(1, q - 1)
    left = right - 1
    x0, x1 = xpt.gather(1, left), xpt.gather(1, right)
    y0, y1 = fpt.gather(1, left), fpt.gather(1, right)
    width = x1 - x0
    weight = torch.where(width > 0, (xt - x0) / torch.where(width > 0, width, 1.0), 0.0)
    out = y0 + weight * (y1 - y0)
    out = torch.where(xt <= xpt[:, :1], fpt[:, :1], out)
    out = torch.where(xt >= xpt[:, -1:], fpt[:, -1:], out)
    return out.T


class Quantile(_ColumnScaler):
    """Map each numeric column through its training quantiles onto a uniform or normal distribution.

    As scikit-learn's QuantileTransformer: ``n_quantiles`` quantiles (at most the training rows)
    of each column, piecewise-linear between them, averaging the interpolation from both sides so
    a value repeated inside the range maps to the middle of its flat stretch (the quantiles' row
    positions are found in integers; scikit-learn's floating-point positions may put it half a
    quantile step aside) and the training extremes map to 0 and 1; ``normal`` output applies the
    inverse normal CDF to uniform values kept in [1e-7, 1 - 1e-7], and the inverse snaps those
    bounds back onto the training extremes exactly (as scikit-learn's does).

    Values beyond the training range (in val or test): scikit-learn maps them onto the ends
    (``beyond: clip``), which loses them for good, so the writer could not give them back in
    their own units. The default ``beyond: extend`` continues the first and last segments
    linearly instead (uniform output then leaves [0, 1] a little for such values), so the map
    stays invertible everywhere. Categorical columns are left as they are.
    """

    name = "quantile"
    state_tensors = ("quantiles",)

    class Params(Preprocessor.Params):
        """Resolution, target distribution and values beyond the training range."""

        n_quantiles: int = Field(1000, ge=2, le=100_000, description="quantiles per column (capped at the "
                                                                    "training rows)")
        output_distribution: Literal["uniform", "normal"] = Field("uniform", description="the target distribution")
        beyond: Literal["extend", "clip"] = Field("extend", description="values beyond the training range: extend the "
                                                                        "end segments linearly (invertible), or clip to "
                                                                        "the ends (scikit-learn)")

    def _fit_columns(self, x: torch.Tensor) -> None:
        n = min(self.params.n_quantiles, x.shape[0])
        if n < 2:
            raise DataError(f"preprocess '{self.name}': needs at least 2 training rows, got {x.shape[0]}")
        # Sort once and interpolate (torch.quantile's 'linear'), which has no size limit. Quantile k
        # sits at row k (rows - 1) / (n - 1) of the sorted column, found in integers: in floating
        # point row 7 of 300 came out as 6.999999999999999 (172 as 172.00000000000003), so a quantile
        # that should equal a repeated value fell just beside it, moving that value off the middle of
        # its stretch by half a quantile step.
        ordered = x.sort(dim=0).values
        scaled = torch.arange(n, dtype=torch.int64, device=x.device) * (x.shape[0] - 1)
        below = torch.div(scaled, n - 1, rounding_mode="floor")
        remainder = scaled - below * (n - 1)
        above = below + (remainder > 0).long()
        frac = (remainder.to(x.dtype) / (n - 1)).unsqueeze(1)
        quantiles = ordered[below] + frac * (ordered[above] - ordered[below])
        # Keep quantiles non-decreasing despite rounding (scikit-learn does the same).
        self.quantiles = torch.cummax(quantiles, dim=0).values.cpu()

    def _references(self, like: torch.Tensor) -> torch.Tensor:
        n = self.quantiles.shape[0]
        refs = torch.linspace(0.0, 1.0, n, dtype=torch.float64, device=like.device)
        return refs.unsqueeze(1).expand(n, self.quantiles.shape[1])

    def _inside(self, x: torch.Tensor) -> torch.Tensor:
        """The map within the training range (clipped at its ends), in output units."""
        q, refs = self._stat("quantiles", x), self._references(x)
        up = _interp(x, q, refs)
        down = -_interp(-x, -q.flip(0), -refs.flip(0))
        uniform = 0.5 * (up + down)
        # The training extremes map to the ends exactly, even when repeated (as scikit-learn does).
        uniform = torch.where(x <= q[:1], 0.0, torch.where(x >= q[-1:], 1.0, uniform))
        if self.params.output_distribution == "uniform":
            return uniform
        return torch.special.ndtri(uniform.clamp(_BOUND, 1.0 - _BOUND))

    def _tails(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per column: the range ends ``(lo, hi)``, their outputs and the slopes of the end segments
        (from each end to the nearest quantile that differs from it; 1 for a constant column)."""
        q = self._stat("quantiles", like)
        lo, hi = q[0], q[-1]
        inner_lo = torch.where(q > lo, q, torch.inf).min(dim=0).values
        inner_hi = torch.where(q < hi, q, -torch.inf).max(dim=0).values
        constant = hi <= lo
        inner_lo = torch.where(constant, lo + 1, inner_lo)
        inner_hi = torch.where(constant, hi - 1, inner_hi)
        out = self._inside(torch.stack([lo, hi, inner_lo, inner_hi]))
        slope_lo = torch.where(constant, 1.0, (out[2] - out[0]) / (inner_lo - lo))
        slope_hi = torch.where(constant, 1.0, (out[1] - out[3]) / (hi - inner_hi))
        return lo, hi, out[0], out[1], slope_lo, slope_hi

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._inside(x)
        if self.params.beyond == "clip":
            return y
        lo, hi, y_lo, y_hi, slope_lo, slope_hi = self._tails(x)
        y = torch.where(x < lo, y_lo + (x - lo) * slope_lo, y)
        return torch.where(x > hi, y_hi + (x - hi) * slope_hi, y)

    def _backward(self, y: torch.Tensor) -> torch.Tensor:
        normal = self.params.output_distribution == "normal"
        uniform = torch.special.ndtr(y) if normal else y
        q, refs = self._stat("quantiles", y), self._references(y)
        x = _interp(uniform.clamp(0.0, 1.0), refs, q)
        slack = 0.0
        if normal:
            # The forward map sent the training ends to the 1e-7 bounds; read back through the
            # quantiles, 1e-7 would land (n_quantiles - 1) 1e-7 of the end segment inside them
            # (8150.915 for a training maximum of 8151.023), so snap them onto the ends exactly,
            # as scikit-learn's inverse does.
            bounds = torch.tensor([_BOUND, 1.0 - _BOUND], dtype=torch.float64)  # on the CPU: two numbers
            end_lo, end_hi = torch.special.ndtri(bounds).tolist()
            slack = _NORMAL_END_SLACK
            x = torch.where(y <= end_lo + slack, q[:1], torch.where(y >= end_hi - slack, q[-1:], x))
        if self.params.beyond == "clip":
            return x
        lo, hi, y_lo, y_hi, slope_lo, slope_hi = self._tails(y)
        x = torch.where(y < y_lo - slack, lo + (y - y_lo) / slope_lo, x)
        return torch.where(y > y_hi + slack, hi + (y - y_hi) / slope_hi, x)
