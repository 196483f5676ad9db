"""Fusing consecutive geometric augmenters into one resampling: the built-in geometric ops' base.

In a `setforge.Chain`, a run of consecutive geometric ops whose ``sampling`` agrees (see
`setforge.chain`) reaches `WarpAugmenter.fuse`: the per-row matrices are multiplied (a row an op
gates off contributes the identity; op i maps its output to its input, so the first op's matrix
stands leftmost) and the batch is resampled once by the run's lead op's ``warp``, which is faster
and sharper than resampling after every op. Rows that every op of the run gates off are left as
they are. Every warp is `._warp.warp`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from setforge.chain import GeometricAugmenter

from ._warp import warp

__all__ = ["WarpAugmenter"]


class WarpAugmenter(GeometricAugmenter):
    """A geometric augmenter whose runs in a chain resample once (the product of their matrices)."""

    def _warp(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        # exact ops (sampling None) land on pixel centres: bilinear sampling with zero padding is exact
        return warp(x, matrix)

    def fuse(self, x: torch.Tensor, ops: Sequence[GeometricAugmenter], params: Sequence[Mapping[str, Any]]
             ) -> torch.Tensor:
        n, _, height, width = x.shape
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        matrix: torch.Tensor | None = None
        moved = torch.zeros(n, dtype=torch.bool, device=x.device)
        for op, own in zip(ops, params):
            gate = own["apply"]
            if not bool(gate.any()):
                continue
            step = torch.where(gate.view(-1, 1, 1), op.matrix(own, height, width).to(x.dtype), eye)
            matrix = step if matrix is None else torch.bmm(matrix, step)
            moved |= gate
        if matrix is None:
            return x
        if bool(moved.all()):
            return self.warp(x, matrix)
        index = moved.nonzero().flatten()
        out = x.clone()
        out[index] = self.warp(x[index], matrix[index])
        return out
