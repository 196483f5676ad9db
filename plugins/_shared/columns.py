"""Tabular columns, one rule each for every kind that needs it.

- Per-column standardisation for every feature space (the evaluators' ``raw`` space and the
  near-duplicate ``standardized`` space): centre on the column mean, divide by the sample
  standard deviation; a constant column (an always-black border pixel) keeps scale 1, so it adds
  nothing to any distance instead of dividing by zero.
- Integer columns (augmenters and generators that make new tabular rows): a count stays a whole
  number within the range it spans, never 2.4 or -1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from setforge.dataset import Dataset

__all__ = ["column_stats", "is_integer_dtype", "IntegerColumns"]


def column_stats(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, scale)`` of the columns of the 2-D `flat`, in float64 on its device (one row: scale 1)."""
    values = flat.to(torch.float64)
    if len(values) == 0:
        width = values.shape[1]
        return (torch.zeros(width, dtype=torch.float64, device=flat.device),
                torch.ones(width, dtype=torch.float64, device=flat.device))
    mean = values.mean(dim=0)
    std = values.std(dim=0) if len(values) > 1 else torch.zeros_like(mean)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def is_integer_dtype(dtype: str | None) -> bool:
    """Whether a column's original dtype (``FeatureInfo.dtypes``) holds whole numbers only."""
    return dtype is not None and dtype.startswith(("int", "uint", "bool"))


class IntegerColumns:
    """The numeric columns of `ds` whose original dtype is an integer type and whose values are
    whole numbers (a preprocessor that changes units, ``standardize``, leaves such a column
    fractional, and rounding it would then destroy it), with the range each spans; `snap` rounds
    new rows' values of those columns into that range."""

    def __init__(self, ds: Dataset | None = None):
        info = None if ds is None else ds.features
        self.columns = [] if info is None or not len(ds) or ds.modality != "tabular" else [  # type: ignore[arg-type]
            i for i in info.numeric_indices if is_integer_dtype(info.dtypes.get(info.names[i]))
            and bool((ds.x[:, i] == ds.x[:, i].round()).all())]
        values = ds.x[:, self.columns] if self.columns else None
        self.range = None if values is None else torch.stack([values.amin(dim=0), values.amax(dim=0)]).cpu()

    def state(self) -> dict[str, Any]:
        """What `restore` needs (plain values and a tensor: safe to save with a generator)."""
        return {"columns": list(self.columns), "range": self.range}

    @classmethod
    def restore(cls, state: Mapping[str, Any] | None) -> "IntegerColumns":
        """The columns `state` describes (none for a generator saved before they were kept)."""
        out = cls()
        if state:
            out.columns, out.range = [int(c) for c in state["columns"]], state["range"]
        return out

    def snap(self, out: torch.Tensor) -> torch.Tensor:
        """`out` (rows of the same columns) with the integer columns rounded into their range, in place."""
        if self.columns and self.range is not None:
            columns = torch.tensor(self.columns, device=out.device)
            low, high = self.range.to(out.device, out.dtype)
            # (+ 0.0 turns a -0.0, rounded from a small negative value, into 0)
            out[:, columns] = torch.minimum(torch.maximum(out[:, columns].round(), low), high) + 0.0
        return out
