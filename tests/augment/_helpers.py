"""Shared material for the augmenter tests: images with structure, fixed params, independence checks."""

from __future__ import annotations

import math
from typing import Any

import torch

from setforge.components import Augmenter


def smooth_images(n: int = 3, channels: int = 3, height: int = 20, width: int = 24, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with smooth gradients and a few sharp edges (so both interpolation and
    edge handling show), different per row."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(1, 1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, 1, width)
    phase = torch.rand(n, channels, 1, 1, generator=g) * 2 * math.pi
    base = 0.5 + 0.35 * torch.sin(3 * xs * math.pi + phase) * torch.cos(2 * ys * math.pi + phase / 2)
    edges = ((xs > 0.6) & (ys < 0.4)).float() * 0.1
    return (base + edges + 0.02 * torch.rand(n, channels, height, width, generator=g)).clamp(0, 1)


def fixed(n: int, **values: Any) -> dict[str, torch.Tensor]:
    """Per-row params with every row open: each keyword is a list of n values (or one value for all)."""
    params: dict[str, torch.Tensor] = {}
    for key, value in values.items():
        tensor = torch.as_tensor(value)
        params[key] = tensor.expand(n).clone() if tensor.ndim == 0 else tensor
        if params[key].dtype == torch.float64:
            params[key] = params[key].float()
    params["apply"] = torch.ones(n, dtype=torch.bool)
    return params


def assert_rows_independent(aug: Augmenter, image: torch.Tensor, copies: int = 64, seed: int = 0) -> None:
    """`copies` copies of one image give `copies` different outputs, and the same seed replays them."""
    batch = image.unsqueeze(0).expand(copies, *image.shape).contiguous()
    out = aug(batch, torch.zeros(copies, dtype=torch.int64), generator=torch.Generator().manual_seed(seed))
    distinct = len(torch.unique(out.flatten(1), dim=0))
    assert distinct == copies, f"{aug.name}: {copies} copies gave only {distinct} different outputs"
    again = aug(batch, torch.zeros(copies, dtype=torch.int64), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, again), f"{aug.name}: the same seed did not replay the same outputs"
    replay = aug(batch, torch.zeros(copies, dtype=torch.int64), params=aug.last_params)
    assert torch.equal(out, replay), f"{aug.name}: forward(params=last_params) did not replay"
    if out.ndim == 4:
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
