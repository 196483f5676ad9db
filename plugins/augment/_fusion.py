"""Fusing consecutive geometric augmenters into one resampling: the built-in geometric ops' base.

In a `setforge.Chain`, a run of consecutive geometric ops whose ``sampling`` agrees (see
`setforge.chain`) reaches `WarpAugmenter.fuse`: the per-row matrices are multiplied (a row an op
gates off contributes the identity; op i maps its output to its input, so the first op's matrix
stands leftmost) and the batch is resampled once by the run's lead op's ``warp``, which is faster
and sharper than resampling after every op. Ops that pad (``pads``: `Affine`) also fill what an
earlier op of the run left outside the image, so the run gives what its ops one by one give, up to
the one resampling. Rows that every op of the run gates off are left as they are. Every warp is
`._warp.warp`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from setforge.chain import GeometricAugmenter

from ._warp import inside_weight, warp

__all__ = ["WarpAugmenter"]


class WarpAugmenter(GeometricAugmenter):
    """A geometric augmenter whose runs in a chain resample once (the product of their matrices)."""

    def _check_batch(self, x: torch.Tensor) -> None:
        """Refuse anything but a batch of images: a single ``(C, H, W)`` image would be taken for C
        rows, each drawing its own warp (a flip would mirror some of its channels)."""
        if x.ndim != 4:
            from setforge import DataError

            raise DataError(f"augment '{self.name}' takes a batch of images (N, C, H, W), got shape "
                            f"{tuple(x.shape)} (one image: x.unsqueeze(0))")

    def _warp(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        # exact ops (sampling None) land on pixel centres: bilinear sampling with zero padding is exact
        return warp(x, matrix)

    #: Whether this op's resampling pads: points it reads from outside its input take a fill. In a
    #: fused run of such ops, a point that an earlier op's output lacks (pushed out of the image, or
    #: filled) takes the fill too, as applying the ops one by one gives (`_fill_outside`).
    pads: ClassVar[bool] = False

    def _fill_outside(self, x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """`x` with each point's share outside the image, ``1 - inside`` ``(N, 1, H, W)``, taken by
        this op's fill (for ops that pad)."""
        raise NotImplementedError

    def fuse(self, x: torch.Tensor, ops: Sequence[GeometricAugmenter], params: Sequence[Mapping[str, Any]]
             ) -> torch.Tensor:
        n, _, height, width = x.shape
        dtype = torch.promote_types(x.dtype, torch.float32)  # (half-precision matrices would blur: see `warp`)
        eye = torch.eye(3, device=x.device, dtype=dtype)
        matrix: torch.Tensor | None = None
        moved = torch.zeros(n, dtype=torch.bool, device=x.device)
        steps: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (matrix, rows whose input it reads padded)
        resampled = torch.zeros(n, dtype=torch.bool, device=x.device)  # rows an op that resamples has moved
        for op, own in zip(ops, params):
            gate = own["apply"]
            if not bool(gate.any()):
                continue
            step = torch.where(gate.view(-1, 1, 1), op.matrix(own, height, width).to(dtype), eye)
            matrix = step if matrix is None else torch.bmm(matrix, step)
            moved |= gate
            # The op reads the previous op's output, whose edge is not the image's where an earlier
            # op resampled (an exact op, a flip, maps the image onto itself).
            steps.append((step, gate & resampled if self.pads and op.sampling is not None else None))
            if op.sampling is not None:
                resampled = resampled | gate
        if matrix is None:
            return x
        inside = self._inside_every_step(steps, height, width)
        if bool(moved.all()):
            out = self.warp(x, matrix)
            return out if inside is None else self._fill_outside(out, inside)
        index = moved.nonzero().flatten()
        out = x.clone()
        warped = self.warp(x[index], matrix[index])
        out[index] = warped if inside is None else self._fill_outside(warped, inside[index])
        return out

    def _inside_every_step(self, steps: Sequence[tuple[torch.Tensor, torch.Tensor | None]], height: int,
                           width: int) -> torch.Tensor | None:
        """``(N, 1, H, W)``: how much of each output point lies inside every intermediate image its
        padded ops read (``None`` where no op reads one); the first op's input is the batch itself,
        whose edge the fused warp handles."""
        inside: torch.Tensor | None = None
        later = None  # the product of the matrices after this step: the map from output to this op's output
        for step, padded_rows in reversed(steps):
            into = step if later is None else torch.bmm(step, later)  # output to this op's input
            if padded_rows is not None and bool(padded_rows.any()):
                mode = self.sampling[0]  # type: ignore[index]  # (a built-in sampling: interpolation, padding, fill)
                weight = inside_weight(into, height, width, mode)
                weight = torch.where(padded_rows.view(-1, 1, 1, 1), weight, 1.0)
                inside = weight if inside is None else inside * weight
            later = into
        return inside
