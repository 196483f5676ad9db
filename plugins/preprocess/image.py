"""Image preprocessors: size, channels and de-noising, applied alike to every split.

None of them learns anything from the training split (their state is empty), and all keep
images in [0, 1]. They run on the data's device; resizing and filtering go through the rows in chunks,
so their working memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from setforge import DataError, Dataset, Preprocessor

__all__ = ["Resize", "CenterCrop", "ToGrayscale", "ToRGB", "Denoise"]

Side = Annotated[int, Field(ge=1, le=16_384)]
Size = Side | tuple[Side, Side]
_SIZE_DESCRIPTION = "an int, or [height, width]"
#: Values per chunk of work (rows x channels x kernel x pixels) — 256 MiB of float32.
_CHUNK_VALUES = 1 << 26


def _chunks(x: torch.Tensor, values_per_row: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`fn` over chunks of rows of `x`, each chunk at most ``_CHUNK_VALUES`` values of work."""
    rows = max(1, _CHUNK_VALUES // max(values_per_row, 1))
    if x.shape[0] <= rows:
        return fn(x)
    return torch.cat([fn(x[start:start + rows]) for start in range(0, x.shape[0], rows)])


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class _ImagePreprocessor(Preprocessor):
    modalities = ("image",)

    def _transform(self, ds: Dataset) -> Dataset:
        x = self._images(ds.x)
        return ds.replace(x=x.clamp(0.0, 1.0).contiguous())

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Resize(_ImagePreprocessor):
    """Resize images (antialiased when shrinking), as torchvision's Resize.

    ``size`` as an int matches the shorter side to it and keeps the aspect ratio; ``[height,
    width]`` sets both. Bicubic overshoot is clipped so images stay in [0, 1].
    """

    name = "resize"
    testing_params = {"size": 12}

    class Params(Preprocessor.Params):
        """Target size and interpolation."""

        size: Size = Field(32, description=f"target size: {_SIZE_DESCRIPTION} (an int matches the shorter side)")
        interpolation: Literal["bilinear", "bicubic", "nearest", "area"] = Field("bilinear",
                                                                                  description="how pixels are resampled")
        antialias: bool = Field(True, description="low-pass filter when shrinking (bilinear and bicubic)")

    def _target(self, height: int, width: int) -> tuple[int, int]:
        size = self.params.size
        if isinstance(size, int):
            if height <= width:
                return size, max(1, int(size * width / height))
            return max(1, int(size * height / width)), size
        return _pair(size)

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        target = self._target(x.shape[2], x.shape[3])
        if target == tuple(x.shape[2:]):
            return x
        mode = self.params.interpolation
        kwargs = {"align_corners": False, "antialias": self.params.antialias} if mode in ("bilinear", "bicubic") else {}
        per_row = x.shape[1] * (x.shape[2] * x.shape[3] + target[0] * target[1])
        return _chunks(x, per_row, lambda part: F.interpolate(part, size=target, mode=mode, **kwargs))


class CenterCrop(_ImagePreprocessor):
    """Cut the central region of each image, as torchvision's CenterCrop (zero padding if larger).

    Cropping moves no pixel to a new grid, so nothing is resampled or blurred; pair it with
    ``resize`` (antialiased) to change the scale.
    """

    name = "center-crop"
    testing_params = {"size": 6}

    class Params(Preprocessor.Params):
        """The crop size."""

        size: Size = Field(224, description=f"crop size: {_SIZE_DESCRIPTION}")

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        crop_h, crop_w = _pair(self.params.size)
        height, width = x.shape[2], x.shape[3]
        if crop_h > height or crop_w > width:
            pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
            # torchvision pads (left, top, right, bottom) = (pad_w // 2, pad_h // 2, rest, rest)
            x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
            height, width = x.shape[2], x.shape[3]
        top = int(round((height - crop_h) / 2.0))
        left = int(round((width - crop_w) / 2.0))
        return x[:, :, top:top + crop_h, left:left + crop_w]


_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, torchvision's rgb_to_grayscale weights


class ToGrayscale(_ImagePreprocessor):
    """Convert RGB images to grayscale (ITU-R 601-2 luma, as torchvision), with 1 or 3 channels."""

    name = "to-grayscale"

    class Params(Preprocessor.Params):
        """Output channels."""

        num_output_channels: Literal[1, 3] = Field(1, description="1, or 3 equal channels")

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == 3:
            weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            gray = (x * weights).sum(dim=1, keepdim=True)
        elif channels == 1:
            gray = x
        else:
            raise DataError(f"preprocess '{self.name}': images must have 1 or 3 channels, got {channels} "
                            f"(use to-rgb first for RGBA or two-channel images)")
        return gray.expand(-1, self.params.num_output_channels, -1, -1)


class ToRGB(_ImagePreprocessor):
    """Give every image three channels: gray repeated, alpha dropped (RGBA, gray + alpha), RGB kept."""

    name = "to-rgb"

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels in (1, 2):  # gray, gray + alpha
            return x[:, :1].expand(-1, 3, -1, -1)
        if channels in (3, 4):  # RGB, RGBA
            return x[:, :3]
        raise DataError(f"preprocess '{self.name}': images with {channels} channels have no RGB reading "
                        f"(1: gray, 2: gray + alpha, 3: RGB, 4: RGBA)")


class Denoise(_ImagePreprocessor):
    """Remove noise with a median or Gaussian filter per channel, batched on the device.

    Borders are mirrored (``reflect``: scipy.ndimage's ``mirror`` mode); an image smaller than
    half the kernel repeats its edge pixels instead. ``sigma: 0`` derives the Gaussian's width from
    the kernel as OpenCV does: ``0.3 ((k - 1) / 2 - 1) + 0.8``.
    """

    name = "denoise"

    class Params(Preprocessor.Params):
        """The filter."""

        method: Literal["median", "gaussian"] = Field("median", description="median (salt-and-pepper noise) "
                                                                            "or gaussian (sensor noise)")
        kernel_size: int = Field(3, ge=1, le=31, description="odd window side in pixels")
        sigma: float = Field(0.0, ge=0.0, le=100.0, description="gaussian: standard deviation in pixels "
                                                                "(0: from kernel_size)")

        @field_validator("kernel_size")
        @classmethod
        def _odd(cls, value: int) -> int:
            if value % 2 == 0:
                raise ValueError(f"kernel_size must be odd (a window centred on its pixel), got {value}")
            return value

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        k = self.params.kernel_size
        if k == 1:
            return x
        pad = k // 2
        mode = "reflect" if pad < min(x.shape[2], x.shape[3]) else "replicate"
        if self.params.method == "median":
            per_row = x.shape[1] * k * k * x.shape[2] * x.shape[3]
            return _chunks(x, per_row, lambda part: self._median(part, k, pad, mode))
        # The padded copy and the row pass are each about the size of the images: chunk them too.
        per_row = 3 * x.shape[1] * (x.shape[2] + 2 * pad) * (x.shape[3] + 2 * pad)
        return _chunks(x, per_row, lambda part: self._gaussian(part, k, pad, mode))

    @staticmethod
    def _median(x: torch.Tensor, k: int, pad: int, mode: str) -> torch.Tensor:
        n, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
        windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # (n, c, h, w, k, k), a view
        return windows.reshape(n, c, h, w, k * k).median(dim=-1).values

    def _gaussian(self, x: torch.Tensor, k: int, pad: int, mode: str) -> torch.Tensor:
        sigma = self.params.sigma or 0.3 * ((k - 1) * 0.5 - 1) + 0.8
        offsets = torch.arange(k, dtype=torch.float64, device=x.device) - pad
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = (kernel / kernel.sum()).to(x.dtype)
        c = x.shape[1]
        padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
        # Separable: one pass along rows, one along columns, each channel on its own (groups=c).
        rows = F.conv2d(padded, kernel.view(1, 1, 1, k).expand(c, 1, 1, k).contiguous(), groups=c)
        return F.conv2d(rows, kernel.view(1, 1, k, 1).expand(c, 1, k, 1).contiguous(), groups=c)

