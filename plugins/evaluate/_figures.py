"""Small PNG figures for the report, drawn with Pillow (no plotting library needed).

`pairs_figure` shows rows side by side with the row they are compared with (a new row above its
closest real training row), for images as pictures and for tabular rows as colour strips of
their standardised values.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["pairs_figure", "image_tile", "png_bytes"]

_TILE = 56          # smallest side of one image tile, in pixels
_GAP = 4
_CAPTION = 12       # pixels under a pair for its caption
_CELL_W, _CELL_H = 10, 12


def png_bytes(image: "object") -> bytes:
    """Encode a PIL image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_tile(x: torch.Tensor, side: int = _TILE) -> np.ndarray:
    """One ``(C, H, W)`` image in [0, 1] as an RGB uint8 array scaled up (nearest) to at least `side`."""
    x = x.detach().to("cpu", torch.float32).clamp(0, 1)
    if x.shape[0] == 3:
        rgb = x
    else:
        # Grey (or any channel count other than 3): show the first channel in grey.
        rgb = x[:1].expand(3, -1, -1)
    scale = max(1, math.ceil(side / max(x.shape[1], x.shape[2])))
    array = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def _strip(values: torch.Tensor) -> np.ndarray:
    """One tabular row of standardised values as a strip of cells, blue (-3) through white to red (+3)."""
    v = (values.detach().to("cpu", torch.float32).clamp(-3, 3) / 3).numpy()
    red = np.where(v > 0, 255, 255 * (1 + v))
    blue = np.where(v < 0, 255, 255 * (1 - v))
    green = 255 * (1 - np.abs(v))
    cells = np.stack([red, green, blue], axis=-1).round().astype(np.uint8)  # (D, 3)
    return cells[None, :, :].repeat(_CELL_H, axis=0).repeat(_CELL_W, axis=1)


def pairs_figure(top: torch.Tensor, bottom: torch.Tensor, captions: Sequence[str], modality: str) -> bytes:
    """A PNG of pairs: ``top[i]`` drawn above ``bottom[i]`` with ``captions[i]`` underneath.

    Images (``(N, C, H, W)`` in [0, 1]) go side by side in columns; tabular rows (``(N, D)``,
    standardised) go one pair under another as colour strips.
    """
    from PIL import Image, ImageDraw

    n = top.shape[0]
    if modality == "image":
        tops = [image_tile(t) for t in top]
        bottoms = [image_tile(b) for b in bottom]
        h, w = tops[0].shape[:2] if n else (_TILE, _TILE)
        width = max(1, n) * (w + _GAP) + _GAP
        height = 2 * h + 3 * _GAP + _CAPTION
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        for i in range(n):
            left = _GAP + i * (w + _GAP)
            canvas.paste(Image.fromarray(tops[i]), (left, _GAP))
            canvas.paste(Image.fromarray(bottoms[i]), (left, 2 * _GAP + h))
            draw.text((left, 3 * _GAP + 2 * h - 2), captions[i], fill="black")
        return png_bytes(canvas)
    flat_top = top.reshape(n, -1)
    flat_bottom = bottom.reshape(n, -1)
    columns = flat_top.shape[1] if n else 1
    label_w = 60
    pair_h = 2 * _CELL_H + _GAP
    width = label_w + columns * _CELL_W + 2 * _GAP
    height = max(1, n) * (pair_h + _GAP) + _GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        top_y = _GAP + i * (pair_h + _GAP)
        canvas.paste(Image.fromarray(_strip(flat_top[i])), (label_w, top_y))
        canvas.paste(Image.fromarray(_strip(flat_bottom[i])), (label_w, top_y + _CELL_H))
        draw.text((_GAP, top_y + 4), captions[i], fill="black")
    return png_bytes(canvas)
