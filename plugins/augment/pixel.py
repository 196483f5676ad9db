"""Pixel augmenters (the ops AutoAugment-style policies draw from), each vectorised over the batch.

Random parameters are drawn per row (ranges as in `setforge.plugins.augment._ranges`: blur sigma,
noise sigma, erasing area and aspect, sharpness factor, posterize bits, solarize threshold) and
applied to the whole batch at once — no Python loop over rows. Each op computes what
``torchvision.transforms.v2.functional`` computes on float images; equalize uses torchvision's
quantisation (``floor(x * 255.999)`` to 8 bits, the result in steps of 1/255), posterize its float
quantisation (``floor(x * 2**bits) / 2**bits``). Outputs stay in [0, 1].

Ops whose only randomness is whether a row changes (grayscale, equalize, autocontrast, invert)
default to ``p = 0.5``, as torchvision's Random* transforms do; the others to ``p = 1``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from setforge.components import Augmenter
from setforge.errors import DataError

from ._ranges import factor, integer, log_uniform, uniform, uniform_int, unit_values, value
from .color import check_channels, grayscale

__all__ = ["Grayscale", "GaussianBlur", "GaussianNoise", "Erasing", "Sharpness", "Posterize", "Solarize",
           "Equalize", "Autocontrast", "Invert"]

_VIEW = (-1, 1, 1, 1)

Sigma = value(1e-3, 100.0)
NoiseSigma = value(0.0, 1.0)
AreaFraction = value(1e-4, 1.0)
Aspect = value(1e-3, 1e3)
Factor = factor()
Bits = integer(0, 8)
Unit = value(0.0, 1.0)


class _Switch(Augmenter):
    """An op without parameters: p (default 0.5) is all its randomness."""

    class Params(Augmenter.Params):
        """Only the per-row probability."""

        p: float = Field(0.5, ge=0.0, le=1.0, description="probability that a row is transformed, drawn per row")


# ------------------------------------------------------------------------------- grayscale
class Grayscale(_Switch):
    """Turn RGB rows gray (ITU-R 601-2 luma, torchvision's weights), keeping three channels.

    Agrees with ``rgb_to_grayscale(x, num_output_channels=3)``; one-channel images are left as they are.
    """

    name = "grayscale"

    def _transform(self, x, y, params):
        check_channels(x, self.name)
        return x if x.shape[1] == 1 else grayscale(x).expand_as(x).contiguous()


# ----------------------------------------------------------------------------------- blur
def gaussian_kernels(kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """``(N, kernel_size)`` normalised 1-D Gaussian kernels, one per row's sigma (torchvision's formula)."""
    half = (kernel_size - 1) / 2.0
    offsets = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=sigma.dtype)
    return torch.softmax(-0.5 * (offsets / sigma.view(-1, 1)).square(), dim=1)


class GaussianBlur(Augmenter):
    """Blur each row with a Gaussian of its own sigma (separable, reflect padding).

    Agrees with ``gaussian_blur(x, kernel_size, sigma)`` (same kernel, same reflect padding; the
    blur runs as two 1-D passes, equal up to rounding).
    """

    name = "gaussian-blur"

    class Params(Augmenter.Params):
        """Kernel size and the range of sigma."""

        kernel_size: int | tuple[int, int] = Field(5, description="odd kernel size: one for both axes or (x, y)")
        sigma: Sigma = Field((0.1, 2.0), description="standard deviation of the Gaussian in pixels")

        @field_validator("kernel_size")
        @classmethod
        def _odd(cls, size: Any) -> Any:
            sizes = (size, size) if isinstance(size, int) else size
            if any(s < 1 or s % 2 == 0 for s in sizes):
                raise ValueError(f"kernel sizes must be odd and positive, got {size}")
            return size

    def _sizes(self) -> tuple[int, int]:
        size = self.params.kernel_size
        return (size, size) if isinstance(size, int) else (size[0], size[1])

    def _make_params(self, x, y, generator):
        return {"sigma": uniform(self.params.sigma, x.shape[0], generator, x.device)}

    def _transform(self, x, y, params):
        n, c, h, w = x.shape
        kx, ky = self._sizes()
        if kx // 2 >= w or ky // 2 >= h:
            raise DataError(f"augment '{self.name}': kernel_size {self.params.kernel_size} needs images larger than "
                            f"half the kernel (reflect padding), got {h}x{w}; use a smaller kernel_size")
        sigma = params["sigma"].to(x.dtype)
        # (reshape: the padding keeps a channels-last or permuted batch's strides, which no view can flatten)
        padded = F.pad(x, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
        padded = padded.reshape(1, n * c, h + ky - 1, w + kx - 1)
        weight_x = gaussian_kernels(kx, sigma).repeat_interleave(c, dim=0).view(n * c, 1, 1, kx)
        weight_y = gaussian_kernels(ky, sigma).repeat_interleave(c, dim=0).view(n * c, 1, ky, 1)
        out = F.conv2d(F.conv2d(padded, weight_x, groups=n * c), weight_y, groups=n * c)
        return out.view(n, c, h, w).clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------- noise
class GaussianNoise(Augmenter):
    """Add Gaussian noise with a per-row sigma, clipped to [0, 1].

    Agrees with ``gaussian_noise(x, mean, sigma, clip=True)`` given the same standard normal draw
    (the draw is kept in the params, ``noise``, so a call replays exactly).
    """

    name = "gaussian-noise"

    class Params(Augmenter.Params):
        """Mean and the range of sigma of the noise."""

        mean: float = Field(0.0, ge=-1.0, le=1.0, description="mean of the noise")
        sigma: NoiseSigma = Field((0.01, 0.1), description="standard deviation of the noise")

    def _make_params(self, x, y, generator):
        return {"sigma": uniform(self.params.sigma, x.shape[0], generator, x.device),
                "noise": torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)}

    def _transform(self, x, y, params):
        noise = params["noise"].mul(params["sigma"].to(x.dtype).view(_VIEW)).add_(self.params.mean)
        return noise.add_(x).clamp_(0.0, 1.0)


# -------------------------------------------------------------------------------- erasing
def random_boxes(height: int, width: int, n: int, scale: tuple[float, float], ratio: tuple[float, float],
                 generator: torch.Generator | None, device: torch.device, tries: int = 10) -> dict[str, torch.Tensor]:
    """Per row a box as torchvision's RandomErasing draws it: area fraction in `scale`, aspect
    log-uniform in `ratio`, whole pixels, strictly smaller than the image; the first of `tries`
    that fits, else an empty box."""
    area = float(height * width)
    target = uniform(scale, n * tries, generator, device).mul_(area).view(n, tries)
    aspect = log_uniform(ratio, n * tries, generator, device).view(n, tries)
    box_h = torch.sqrt(target * aspect).round_()
    box_w = torch.sqrt(target / aspect).round_()
    fits = (box_h < height) & (box_w < width)
    found = fits.any(dim=1)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    box_h = torch.where(found, box_h.gather(1, first).squeeze(1), 0.0)
    box_w = torch.where(found, box_w.gather(1, first).squeeze(1), 0.0)
    u = torch.rand(n, 2, generator=generator, device=device)
    top = torch.floor(u[:, 0] * (height - box_h + 1))
    left = torch.floor(u[:, 1] * (width - box_w + 1))
    return {"top": top, "left": left, "height": box_h, "width": box_w}


def box_mask(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """``(N, 1, H, W)`` boolean mask of each row's box."""
    rows = torch.arange(height, device=params["top"].device, dtype=params["top"].dtype).view(1, 1, height, 1)
    cols = torch.arange(width, device=params["top"].device, dtype=params["top"].dtype).view(1, 1, 1, width)
    top, left = params["top"].view(_VIEW), params["left"].view(_VIEW)
    bottom, right = top + params["height"].view(_VIEW), left + params["width"].view(_VIEW)
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


class Erasing(Augmenter):
    """Erase a random box of each row (random erasing / cutout), filled with a value or noise.

    The box is drawn as torchvision's RandomErasing draws it and filled as ``erase`` fills it.
    ``value: random`` fills with uniform noise in [0, 1) (torchvision draws standard normal values,
    which leave [0, 1]); the noise is kept in the params, so a call replays.
    """

    name = "erasing"

    class Params(Augmenter.Params):
        """Ranges of the box, and what fills it."""

        scale: AreaFraction = Field((0.02, 0.33), description="area of the box as a fraction of the image")
        ratio: Aspect = Field((0.3, 3.3), description="aspect ratio height/width of the box, drawn "
                                                               "log-uniformly")
        value: float | tuple[float, ...] | Literal["random"] = Field(
            0.0, description="fill: one value, one per channel (in [0, 1]), or 'random' for uniform noise")

        @field_validator("value")
        @classmethod
        def _in_range(cls, fill: Any) -> Any:
            return fill if fill == "random" else unit_values(fill, "value", " (or 'random')")

    def _make_params(self, x, y, generator):
        n, _, h, w = x.shape
        params = random_boxes(h, w, n, self.params.scale, self.params.ratio, generator, x.device)
        if self.params.value == "random":
            params["noise"] = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return params

    def _transform(self, x, y, params):
        n, c, h, w = x.shape
        mask = box_mask(params, h, w)
        if self.params.value == "random":
            fill = params["noise"]
        else:
            values = self.params.value if isinstance(self.params.value, tuple) else (self.params.value,)
            if len(values) not in (1, c):
                raise DataError(f"augment '{self.name}': value has {len(values)} entries for images with {c} "
                                f"channels (give one value, or one per channel)")
            fill = torch.tensor(values, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return torch.where(mask, fill, x)


# ------------------------------------------------------------------------------ sharpness
class Sharpness(Augmenter):
    """Sharpen or soften each row by its own factor (PIL's smoothing kernel, as torchvision).

    Agrees with ``adjust_sharpness(x, factor)``: 0 is the smoothed image, 1 the original, 2 twice
    as sharp; the one-pixel border stays.
    """

    name = "sharpness"

    class Params(Augmenter.Params):
        """Range of the sharpness factor."""

        factor: Factor = Field(0.5, description="sharpness factor (0 smoothed, 1 unchanged, 2 sharper)")

    def _make_params(self, x, y, generator):
        return {"factor": uniform(self.params.factor, x.shape[0], generator, x.device)}

    def _transform(self, x, y, params):
        if x.shape[-2] <= 2 or x.shape[-1] <= 2:
            return x
        # PIL's smoothing kernel (1 around, 5 in the middle, over 13) as a 3x3 box sum plus 4 x the
        # centre: a few additions instead of a one-channel convolution, ~20x faster on the CPU
        rows = x[..., :-2, :] + x[..., 1:-1, :]
        rows += x[..., 2:, :]
        smooth = rows[..., :-2] + rows[..., 1:-1]
        smooth += rows[..., 2:]
        smooth = smooth.add_(x[..., 1:-1, 1:-1], alpha=4.0).mul_(1.0 / 13.0)
        out = x.clone()
        inner = out[..., 1:-1, 1:-1]
        # x + (1 - f) (smooth - x), as torchvision blends
        inner.add_(smooth.sub_(inner).mul_(params["factor"].to(x.dtype).neg().add_(1.0).view(_VIEW)))
        return out.clamp_(0.0, 1.0)


# ------------------------------------------------------------------------------ posterize
class Posterize(Augmenter):
    """Keep a random number of bits per channel: ``floor(x 2^bits) / 2^bits``.

    torchvision's float quantisation (``posterize`` on float images), bits drawn per row.
    """

    name = "posterize"

    class Params(Augmenter.Params):
        """Range of the bits kept."""

        bits: Bits = Field((4, 8), description="bits kept per channel (0 to 8, both ends included)")

    def _make_params(self, x, y, generator):
        return {"bits": uniform_int(self.params.bits, x.shape[0], generator, x.device)}

    def _transform(self, x, y, params):
        levels = torch.pow(2.0, params["bits"].to(x.dtype)).view(_VIEW)
        return x.mul(levels).floor_().clamp_(min=0.0).minimum(levels - 1.0).mul_(levels.reciprocal())


# ------------------------------------------------------------------------------- solarize
class Solarize(Augmenter):
    """Invert the pixels at or above a per-row threshold (torchvision's ``solarize``)."""

    name = "solarize"

    class Params(Augmenter.Params):
        """Range of the threshold."""

        threshold: Unit = Field((0.5, 1.0), description="pixels >= threshold are inverted")

    def _make_params(self, x, y, generator):
        return {"threshold": uniform(self.params.threshold, x.shape[0], generator, x.device)}

    def _transform(self, x, y, params):
        return torch.where(x >= params["threshold"].to(x.dtype).view(_VIEW), 1.0 - x, x)


# ------------------------------------------------------------------------------- equalize
class Equalize(_Switch):
    """Equalise the histogram of each channel of each row (PIL's algorithm, as torchvision).

    Agrees with ``equalize``: pixels are quantised as torchvision does (``floor(x * 255.999)`` to
    8 bits), equalised per channel with PIL's look-up table, and come back in steps of 1/255.
    """

    name = "equalize"

    def _transform(self, x, y, params):
        n, c, h, w = x.shape
        # one flat index (row, channel, level) serves both the histogram and the look-up, so the
        # image crosses memory four times: quantise, offset, count, look up
        # (in float32: in float16 or bfloat16, 1.0 * 255.999 rounds to 256, a level past the channel's)
        # (reshape, not view: a channels-last or permuted batch keeps its strides through these ops)
        levels = x.float().mul(256.0 - 1e-3).to(torch.int64).clamp_(0, 255).reshape(n * c, h * w)
        offsets = torch.arange(n * c, device=x.device).mul_(256).view(-1, 1)
        flat = levels.add_(offsets).view(-1)
        hist = torch.bincount(flat, minlength=n * c * 256).view(n * c, 256)
        cum = hist.cumsum(dim=1)
        # PIL: step = (pixels not of the highest level present) // 255; lut = (cum + step // 2) // step
        last = cum.argmax(dim=1, keepdim=True)
        step = (h * w - hist.gather(1, last)).div_(255, rounding_mode="floor")
        valid = step.ne(0)
        step.clamp_(min=1)
        lut = cum[:, :-1].add(step // 2).div_(step, rounding_mode="floor").clamp_(0, 255)
        lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1)
        # a channel PIL leaves alone (one level, or all but one pixel on the top level) maps to itself
        lut = torch.where(valid, lut, torch.arange(256, device=x.device))
        return lut.to(x.dtype).mul_(1.0 / 255.0).view(-1).take(flat).view(n, c, h, w)


# --------------------------------------------------------------------------- autocontrast
class Autocontrast(_Switch):
    """Stretch each channel of each row to the full [0, 1] range (torchvision's ``autocontrast``)."""

    name = "autocontrast"

    def _transform(self, x, y, params):
        low = x.amin(dim=(-2, -1), keepdim=True)
        high = x.amax(dim=(-2, -1), keepdim=True)
        flat = high == low
        low = low.masked_fill(flat, 0.0)
        span = (high - low).masked_fill_(flat, 1.0)
        return x.sub(low).div_(span).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------- invert
class Invert(_Switch):
    """Invert each row: ``1 - x`` (torchvision's ``invert``)."""

    name = "invert"

    def _transform(self, x, y, params):
        return 1.0 - x
