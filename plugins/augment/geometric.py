"""Geometric augmenters: `Flip`, `Affine`, `ResizedCrop`, each one warp per row.

Every row draws its own parameters. Each op provides ``_matrix(params, height, width)``: the
``(N, 3, 3)`` map from output to input coordinates (normalised, ``align_corners=False``), so
that a `Chain` multiplies the matrices of consecutive geometric ops and resamples once. Each op
also states its ``sampling`` (interpolation, padding, fill): ops fuse only when their sampling
agrees; a flip is exact under any sampling and fuses with everything.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from setforge.components import Augmenter

from ._fusion import WarpAugmenter
from ._warp import crop_matrix, flip_matrix, inverse_affine_pixels, pixels_to_normalized, warp
from ._ranges import log_uniform, symmetric, uniform, unit_values, value

__all__ = ["Flip", "Affine", "ResizedCrop"]

Degrees = symmetric(180.0)
Fill = float | tuple[float, ...]
Zoom = value(1e-3, 100.0)
AreaFraction = value(1e-4, 1.0)
Aspect = value(1e-3, 1e3)


def fill_problem(fill: Fill, channels: int) -> str:
    """What is wrong with `fill` for images of `channels` channels ("" when nothing is)."""
    if isinstance(fill, tuple) and len(fill) not in (1, channels):
        return f"fill has {len(fill)} values for images with {channels} channels (give one value, or one per channel)"
    return ""


def check_fill(fill: Fill, channels: int, name: str) -> None:
    from setforge import DataError

    if problem := fill_problem(fill, channels):
        raise DataError(f"augment '{name}': {problem}")


def fill_problems(fill: Fill, ds: Any) -> list[tuple[str, str]]:
    """`check_data`'s answer for an augmenter with a ``fill`` param: found once the source is
    loaded, before any step (validate cannot know the images' channels)."""
    problem = fill_problem(fill, ds.shape[0]) if ds.modality == "image" else ""
    return [("fill", problem)] if problem else []


class Flip(WarpAugmenter):
    """Mirror rows left-right (or top-bottom), each row with probability p.

    Exact (a pixel permutation, no resampling). Agrees with ``torchvision.transforms.v2.functional``
    ``horizontal_flip`` / ``vertical_flip``.
    """

    name = "flip"
    sampling = None  # exact under any resampling: fuses with every geometric op

    class Params(Augmenter.Params):
        """Which axis to mirror; p defaults to 0.5 as in torchvision's RandomHorizontalFlip."""

        p: float = Field(0.5, ge=0.0, le=1.0, description="probability that a row is flipped, drawn per row")
        direction: Literal["horizontal", "vertical"] = Field("horizontal", description="horizontal mirrors "
                                                             "left-right, vertical mirrors top-bottom")

    def _make_params(self, x, y, generator):
        self._check_batch(x)
        return {}

    def _transform(self, x, y, params):
        self._check_batch(x)
        return x.flip(-1 if self.params.direction == "horizontal" else -2)

    def _matrix(self, params, height, width):
        return flip_matrix(params["apply"].shape[0], self.params.direction == "horizontal", params["apply"].device)


class Affine(WarpAugmenter):
    """Rotate, translate, scale and shear each row by its own random affine map.

    Parameters per row, drawn uniformly: ``angle`` (degrees, clockwise on screen as with
    torchvision's ``affine``, whose ``rotate`` turns the other way), ``translate_x``/``translate_y``
    (pixels), ``scale``, ``shear_x``/``shear_y`` (degrees). The
    matrix is torchvision's (``v2.functional.affine`` about the image centre); areas from outside
    the image take `fill`. Unlike torchvision's RandomAffine, translations are not rounded to whole
    pixels, and the default interpolation is bilinear (torchvision's is nearest).
    """

    name = "affine"
    testing_params = {"degrees": 20.0, "translate": 0.1, "scale": (0.8, 1.2), "shear": 10.0}

    class Params(Augmenter.Params):
        """Ranges of the per-row affine parameters."""

        degrees: Degrees = Field(10.0, description="rotation in degrees, clockwise (as torchvision's affine)")
        translate: float | tuple[float, float] = Field(
            0.1, description="largest shift as a fraction of the width and height: one number for both axes or "
                             "(x, y) per axis as in torchvision; each row shifts uniformly within ±that")
        scale: Zoom = Field((0.9, 1.1), description="zoom factor (>1 enlarges)")
        shear: float | tuple[float, float] | tuple[float, float, float, float] = Field(
            0.0, description="shear in degrees as in torchvision: v means x-shear in (-v, v); (a, b) an x-shear "
                             "range; (a, b, c, d) x-shear in (a, b) and y-shear in (c, d)")
        interpolation: Literal["bilinear", "nearest"] = Field("bilinear", description="resampling")
        fill: Fill = Field(0.0, description="value of areas from outside the image: one, or one per channel, "
                                            "in [0, 1]")

        @field_validator("translate")
        @classmethod
        def _check_translate(cls, translate: Any) -> Any:
            pair = (translate, translate) if isinstance(translate, (int, float)) else translate
            if any(not 0.0 <= t <= 1.0 for t in pair):
                raise ValueError(f"translate fractions must lie in [0, 1], got {translate}")
            return translate

        @field_validator("shear")
        @classmethod
        def _check_shear(cls, shear: Any) -> Any:
            values = (shear,) if isinstance(shear, (int, float)) else shear
            if any(abs(s) >= 90.0 for s in values) or (len(values) == 1 and values[0] < 0):
                raise ValueError(f"shear must be a number >= 0 or ranges within (-90, 90) degrees, got {shear}")
            if any(low > high for low, high in zip(values[::2], values[1::2])):
                raise ValueError(f"shear ranges need low <= high, got {shear}")
            return shear

        @field_validator("fill")
        @classmethod
        def _check_fill(cls, fill: Any) -> Any:
            return unit_values(fill)

    pads = True  # (zero padding with the fill: in a fused run, what an earlier op left outside takes it too)

    def check_data(self, ds):
        return fill_problems(self.params.fill, ds)

    @property
    def sampling(self) -> tuple[str, str, Any]:
        return (self.params.interpolation, "zeros", self.params.fill)

    def _shear_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        shear = self.params.shear
        if isinstance(shear, (int, float)):
            return (-float(shear), float(shear)), (0.0, 0.0)
        if len(shear) == 2:
            return (shear[0], shear[1]), (0.0, 0.0)
        return (shear[0], shear[1]), (shear[2], shear[3])

    def _make_params(self, x, y, generator):
        self._check_batch(x)
        n, device = x.shape[0], x.device
        height, width = x.shape[-2:]
        tx, ty = ((self.params.translate,) * 2 if isinstance(self.params.translate, (int, float))
                  else self.params.translate)
        shear_x, shear_y = self._shear_ranges()
        return {
            "angle": uniform(self.params.degrees, n, generator, device),
            "translate_x": uniform((-tx * width, tx * width), n, generator, device),
            "translate_y": uniform((-ty * height, ty * height), n, generator, device),
            "scale": uniform(self.params.scale, n, generator, device),
            "shear_x": uniform(shear_x, n, generator, device),
            "shear_y": uniform(shear_y, n, generator, device),
        }

    def _matrix(self, params, height, width):
        matrix = inverse_affine_pixels(params["angle"], params["translate_x"], params["translate_y"],
                                       params["scale"], params["shear_x"], params["shear_y"])
        return pixels_to_normalized(matrix, height, width)

    def _transform(self, x, y, params):
        self._check_batch(x)
        check_fill(self.params.fill, x.shape[1], self.name)
        return warp(x, self._matrix(params, *x.shape[-2:]), mode=self.params.interpolation, padding="zeros",
                    fill=self.params.fill)

    def _warp(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """Resample `x` through fused `matrix` with this op's sampling (used by `Chain`)."""
        check_fill(self.params.fill, x.shape[1], self.name)
        return warp(x, matrix, mode=self.params.interpolation, padding="zeros", fill=self.params.fill)

    def _fill_outside(self, x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """`x` with each point's share outside the image (``1 - inside``) taken by the fill (used by `Chain`)."""
        inside = inside.to(x.dtype)
        fill = torch.as_tensor(self.params.fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        return torch.addcmul(x * inside, 1.0 - inside, fill)


class ResizedCrop(WarpAugmenter):
    """Crop a random box of each row and resize it back to the full image (a random zoom).

    The box is drawn as in torchvision's RandomResizedCrop (area fraction in `scale`, aspect ratio
    log-uniform in `ratio`, ten tries, else the centre box with the ratio clamped) but not rounded
    to whole pixels (small images get every zoom, not a handful), and resized to the row's own
    size, so rows keep their shape; whole-pixel boxes given as params agree with torchvision. Resampling reads the pixels just
    outside the box where torchvision repeats the box's edge (a band of half an input pixel); the
    image's own edges repeat as in torchvision (border padding). Bilinear is torchvision's
    non-antialiased bilinear (the same when enlarging, as a crop always is); nearest is
    ``nearest-exact``, except that a source point exactly half-way between two pixels (an output
    row or column of odd sizes, say) may round to the other one, where torchvision floors.
    """

    name = "resized-crop"

    class Params(Augmenter.Params):
        """Ranges of the crop box."""

        scale: AreaFraction = Field((0.08, 1.0), description="area of the box as a fraction of the image")
        ratio: Aspect = Field((3.0 / 4.0, 4.0 / 3.0), description="aspect ratio width/height of the box, "
                                                                            "drawn log-uniformly")
        interpolation: Literal["bilinear", "nearest"] = Field("bilinear", description="resampling")

    @property
    def sampling(self) -> tuple[str, str, Any]:
        return (self.params.interpolation, "border", None)

    def _make_params(self, x, y, generator):
        self._check_batch(x)
        n, device = x.shape[0], x.device
        height, width = x.shape[-2:]
        tries = 10
        area = float(height * width)
        target = uniform(self.params.scale, n * tries, generator, device).mul_(area).view(n, tries)
        ratio = log_uniform(self.params.ratio, n * tries, generator, device).view(n, tries)
        box_w = torch.sqrt(target * ratio)
        box_h = torch.sqrt(target / ratio)
        ok = (box_w <= width) & (box_h <= height)
        found = ok.any(dim=1)
        first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
        box_w = box_w.gather(1, first).squeeze(1)
        box_h = box_h.gather(1, first).squeeze(1)
        # no try fitted: torchvision's fallback, the central box with the ratio clamped
        in_ratio = width / height
        lo, hi = self.params.ratio
        if in_ratio < lo:
            fallback_w, fallback_h = float(width), width / lo
        elif in_ratio > hi:
            fallback_w, fallback_h = height * hi, float(height)
        else:
            fallback_w, fallback_h = float(width), float(height)
        box_w = torch.where(found, box_w, fallback_w)
        box_h = torch.where(found, box_h, fallback_h)
        u = torch.rand(n, 2, generator=generator, device=device)
        top = torch.where(found, u[:, 0] * (height - box_h), (height - fallback_h) / 2)
        left = torch.where(found, u[:, 1] * (width - box_w), (width - fallback_w) / 2)
        return {"top": top, "left": left, "height": box_h, "width": box_w}

    def _matrix(self, params, height, width):
        return crop_matrix(params["top"], params["left"], params["height"], params["width"], height, width)

    def _transform(self, x, y, params):
        self._check_batch(x)
        return self._warp(x, self._matrix(params, *x.shape[-2:]))

    def _warp(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """Resample `x` through fused `matrix` with this op's sampling (used by `Chain`)."""
        return warp(x, matrix, mode=self.params.interpolation, padding="border")

