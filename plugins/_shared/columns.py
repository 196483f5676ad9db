"""Per-column standardisation, one rule for every feature space (the evaluators' ``raw`` space
and the near-duplicate ``standardized`` space): centre on the column mean, divide by the sample
standard deviation; a constant column (an always-black border pixel) keeps scale 1, so it adds
nothing to any distance instead of dividing by zero."""

from __future__ import annotations

import torch

__all__ = ["column_stats"]


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
