"""Sample grids show images as a reader sees them: RGBA in colour with its alpha composited over
mid grey, grey + alpha as grey, 1 and 3 channels as they are, other counts as their first channel."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from setforge.tools.plots import ALPHA_BACKGROUND, image_grid


def _image(channels: int) -> torch.Tensor:
    """One 8x8 image: left half the values 0.9, 0.2, 0.1, ... opaque, right half the same at alpha 0.5."""
    values = torch.tensor([0.9, 0.2, 0.1, 0.6, 0.3][:channels]).view(1, channels, 1, 1)
    image = values.expand(1, channels, 8, 8).clone()
    if channels in (2, 4):
        image[:, -1, :, :4], image[:, -1, :, 4:] = 1.0, 0.5
    return image


def _pixels(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The RGB of the grid's single cell at its left and right half (2 px padding, 8 px shown at 48)."""
    array = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return array[26, 14], array[26, 38]


def test_rgba_is_shown_in_colour_with_alpha_composited_over_mid_grey():
    left, right = _pixels(image_grid(_image(4), nrow=1))
    assert left.tolist() == [230, 51, 26]  # opaque: the RGB itself, 0.9 / 0.2 / 0.1
    half = [round((0.5 * v + 0.5 * ALPHA_BACKGROUND) * 255) for v in (0.9, 0.2, 0.1)]
    assert right.tolist() == half and ALPHA_BACKGROUND == 0.5


@pytest.mark.parametrize("channels, left, right", [
    (1, 230, 230),                                        # grey as it is
    (2, 230, round((0.5 * 0.9 + 0.25) * 255)),            # grey + alpha: grey, composited
    (5, 230, 230),                                        # anything else: the first channel
])
def test_other_channel_counts_show_in_grey(channels, left, right):
    l, r = _pixels(image_grid(_image(channels), nrow=1))
    assert l.tolist() == [left] * 3 and r.tolist() == [right] * 3


def test_rgb_is_unchanged():
    left, right = _pixels(image_grid(_image(3), nrow=1))
    assert left.tolist() == right.tolist() == [230, 51, 26]


def test_a_generators_training_grid_composites_alpha_the_same_way(tmp_path):
    from setforge.plugins.generate._gan_training import write_grid_png

    path = write_grid_png(_image(4), tmp_path / "grid.png", columns=1)
    array = np.asarray(Image.open(path).convert("RGB")).astype(int)  # 8 px shown at 32, 2 px padding
    assert array[10, 8].tolist() == [230, 51, 26]
    assert array[10, 28].tolist() == [round((0.5 * v + 0.25) * 255) for v in (0.9, 0.2, 0.1)]
