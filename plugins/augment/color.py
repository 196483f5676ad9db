"""`Color`: brightness, contrast, saturation and hue with factors drawn per row.

The arithmetic is torchvision's (``v2.functional.adjust_brightness``, ``adjust_contrast``,
``adjust_saturation``, ``adjust_hue`` on float images, each clamped to [0, 1]), applied in a fixed
order — brightness, contrast, saturation, hue — to cache-sized chunks of rows, so a batch
crosses main memory once instead of once per adjustment; on the CPU the first three are folded
into one matrix product per row (`_linear_rows_`, for contiguous float32/float64 images of at least
`LINEAR_ROWS_POINTS` pixels; torchvision's numbers for images in [0, 1], the range augmenters
take, since it moves the clamps inside the scaling). (torchvision's ColorJitter
shuffles the order per call; a per-row shuffle would cost a pass per order, so the order is
fixed.) A subclass with ``clamps = False`` leaves values outside [0, 1] where they fall, so
gradients pass at every pixel (DiffAugment's colour op, which is not a pipeline step: a run's
augment steps must return images in [0, 1]).
"""

from __future__ import annotations

import math
from functools import partial
from typing import ClassVar

import torch

from pydantic import Field

from setforge.components import Augmenter
from setforge.errors import DataError

from ._ranges import factor, symmetric, uniform
from ._scratch import scratch

__all__ = ["Color"]

#: Rows are processed in chunks of about this many bytes, so that the successive passes over a
#: chunk read it from cache rather than main memory. (64 x 3x224x224 on 2 threads, medians of 25
#: interleaved rounds, two runs: 16 MiB 5.9 and 10.8 ms, 8 MiB 6.5 and 10.9, 4 MiB 7.3 and 11.7,
#: unchunked 13.4 and 25.1; L2-sized chunks of 512 KiB measured slower still.)
CHUNK_BYTES = 16 * 1024 * 1024

# ITU-R 601-2 luma, torchvision's weights
_LUMA = (0.2989, 0.587, 0.114)

#: Images of at least this many pixels go through `_linear_rows_`, whose per-row bookkeeping
#: costs more than it saves on small ones (colour of 512 x 3x32x32, one thread: 5.3 ms against
#: 3.5 ms adjustment by adjustment; 128 x 3x64x64: 2.7 against 3.3; 32 x 3x128x128: 2.2 against 3.3).
LINEAR_ROWS_POINTS = 64 * 64

Factor = factor()
HueShift = symmetric(0.5)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` luma of ``(N, 3, H, W)`` RGB, computed as torchvision does."""
    r, g, b = image.unbind(dim=-3)
    return r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(-3)


def check_channels(x: torch.Tensor, name: str) -> None:
    """Colour ops take grayscale (1 channel) or RGB (3 channels) images, like torchvision."""
    if x.shape[1] not in (1, 3):
        raise DataError(f"augment '{name}' takes images with 1 or 3 channels, got {x.shape[1]} "
                        f"(convert the images to grayscale or RGB first)")


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """HSV of RGB in [0, 1] (torchvision's algorithm, from Pillow), hue in [0, 1)."""
    r, g, _ = image.unbind(dim=-3)
    minc, maxc = torch.aminmax(image, dim=-3)
    eqc = maxc == minc
    channels_range = maxc - minc
    ones = torch.ones_like(maxc)
    s = channels_range / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, channels_range).unsqueeze_(dim=-3)
    rc, gc, bc = ((maxc.unsqueeze(dim=-3) - image) / divisor).unbind(dim=-3)
    max_not_r = maxc != r
    max_is_g = maxc == g
    hg = (rc + 2.0 - bc) * (max_is_g & max_not_r)
    hr = (bc - gc) * ~max_not_r
    hb = (gc + 4.0 - rc) * (max_not_r & ~max_is_g)
    h = ((hr + hg + hb) * (1.0 / 6.0) + 1.0).fmod(1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """RGB of HSV: channel ``n`` in (5, 3, 1) is ``v - v s clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 h) mod 6``."""
    h, s, v = hsv.unbind(dim=-3)
    h6 = h.mul(6.0)
    vs = v * s
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = h6.add(n).remainder_(6.0)
        ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        channels.append(v.sub(ramp.mul_(vs)).clamp_(0.0, 1.0))
    return torch.stack(channels, dim=-3)


def adjust_hue(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB rows by `shift` ``(N,)`` turns (torchvision's ``adjust_hue``, per row)."""
    h, s, v = rgb_to_hsv(image).unbind(dim=-3)
    h = (h + shift.view(-1, 1, 1)).remainder(1.0)
    return hsv_to_rgb(torch.stack((h, s, v), dim=-3))


def _bound(x: torch.Tensor, clamp: bool) -> torch.Tensor:
    return x.clamp(0.0, 1.0) if clamp else x


def _bound_(x: torch.Tensor, clamp: bool) -> torch.Tensor:
    return x.clamp_(0.0, 1.0) if clamp else x


def adjust(x: torch.Tensor, brightness: torch.Tensor | None, contrast: torch.Tensor | None,
           saturation: torch.Tensor | None, hue: torch.Tensor | None, clamp: bool = True) -> torch.Tensor:
    """The adjustments of `adjust_` without writing into any tensor, so autograd can follow them
    (what `Color` runs when its input requires grad)."""
    view = (-1, 1, 1, 1)
    rgb = x.shape[1] == 3
    if brightness is not None:
        x = _bound(x * brightness.to(x.dtype).view(view), clamp)
    if contrast is not None:
        if rgb:
            means = x.mean(dim=(-2, -1))
            mean = means[:, 0] * _LUMA[0] + means[:, 1] * _LUMA[1] + means[:, 2] * _LUMA[2]
        else:
            mean = x.mean(dim=(-3, -2, -1))
        c = contrast.to(x.dtype).view(view)
        x = _bound(x * c + mean.view(view) * (1.0 - c), clamp)
    if saturation is not None and rgb:
        s = saturation.to(x.dtype).view(view)
        x = _bound(x * s + grayscale(x) * (1.0 - s), clamp)
    if hue is not None and rgb:
        x = adjust_hue(x, hue.to(x.dtype))
    return x


def adjust_(out: torch.Tensor, source: torch.Tensor, brightness: torch.Tensor | None, contrast: torch.Tensor | None,
            saturation: torch.Tensor | None, hue: torch.Tensor | None, clamp: bool = True) -> torch.Tensor:
    """Write the adjusted `source` into `out` (same shape; per-row factors ``(n,)`` or None to skip)."""
    if out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64) and out.is_contiguous() \
            and source.is_contiguous() and (contrast is not None or saturation is not None) \
            and len(out) > 0 and out.shape[-2] * out.shape[-1] >= LINEAR_ROWS_POINTS:
        _linear_rows_(out, source, brightness, contrast, saturation, clamp)
    else:
        _one_adjustment_at_a_time_(out, source, brightness, contrast, saturation, clamp)
    if hue is not None and out.shape[1] == 3:
        out.copy_(adjust_hue(out, hue))
    return out


def _linear_rows_(out: torch.Tensor, source: torch.Tensor, brightness: torch.Tensor | None,
                  contrast: torch.Tensor | None, saturation: torch.Tensor | None, clamp: bool) -> None:
    """Brightness, contrast and saturation as one batched matrix product instead of a pass each.

    Between torchvision's clamps the three adjustments are linear, and a clamp can move inside
    the scaling before it: for a factor ``a > 0``, ``clamp(a y + k, 0, 1)`` is
    ``a clamp(y, -k / a, (1 - k) / a) + k``. So each row keeps its values as they came and carries
    the adjustments forward as a scale and an offset. When clamping, a chunk with a brightness
    factor above 1 is first copied into this thread's scratch (`._scratch`) with each such row
    clamped at ``1 / b``, and a row whose contrast factor exceeds 1 is clamped in the scratch copy
    (made at the first such row if there is none yet) at the bounds that step maps back to;
    saturation joins the scale and offset in one ``C x C`` matrix per row, applied by one
    ``baddbmm`` that writes `out`. (A clamp after a factor of at most 1 changes nothing: it mixes
    values of [0, 1] into [0, 1].) Same numbers as `_one_adjustment_at_a_time_` up to float
    rounding, for images in [0, 1], in about half the passes over the rows: 11 x 3x224x224 on one
    thread 1.8 ms against 2.9 ms.
    """
    n, channels = out.shape[:2]
    luma = _LUMA if channels == 3 else (1.0,)
    like = {"dtype": out.dtype, "device": out.device}  # (not torch's default device, which may not be the CPU)
    # (the per-row arithmetic is on n numbers each: Python floats cost less than tensor ops on them)
    scale = brightness.tolist() if brightness is not None else [1.0] * n
    rows = source.view(n, channels, -1)
    work = partial(scratch, "color", rows.shape, rows.dtype, rows.device)  # this thread's working copy of the rows
    own = False  # whether `rows` is that working copy, free to change
    if clamp and max(scale) > 1.0:
        # min(b x, 1) = b min(x, 1 / b): the clamp of a brighter row, with b still to come
        limit = torch.tensor([1.0 / b if b > 1.0 else math.inf for b in scale], **like)
        rows, own = torch.minimum(rows, limit.view(n, 1, 1), out=work()), True
    offset = [0.0] * n
    if contrast is not None:
        means = rows.mean(dim=-1).tolist()
        for i, c in enumerate(contrast.tolist()):
            mean = sum(w * m for w, m in zip(luma, means[i])) * scale[i]
            scale[i], offset[i] = c * scale[i], (1.0 - c) * mean
            if clamp and c > 1.0 and scale[i] > 0.0:
                if not own:
                    rows, own = work().copy_(rows), True
                rows[i].clamp_(-offset[i] / scale[i], (1.0 - offset[i]) / scale[i])
    # saturation s mixes each pixel with its luma: the matrix s I + (1 - s) 1 luma^T, whose rows
    # each sum to s + (1 - s) sum(luma), so an offset shared by the channels stays shared
    saturations = saturation.tolist() if saturation is not None and channels == 3 else [1.0] * n
    mix = torch.tensor([[[scale[i] * ((sat if j == k else 0.0) + (1.0 - sat) * luma[k]) for k in range(channels)]
                         for j in range(channels)] for i, sat in enumerate(saturations)], **like)
    shift = torch.tensor([offset[i] * (sat + (1.0 - sat) * sum(luma)) for i, sat in enumerate(saturations)],
                         **like).view(n, 1, 1).expand(n, channels, 1)
    flat_out = out.view(n, channels, -1)
    if rows.data_ptr() == flat_out.data_ptr():  # (in place: a product cannot be written over its input)
        rows = work().copy_(rows)
    torch.baddbmm(shift, mix, rows, out=flat_out)
    _bound_(out, clamp)


def _one_adjustment_at_a_time_(out: torch.Tensor, source: torch.Tensor, brightness: torch.Tensor | None,
                               contrast: torch.Tensor | None, saturation: torch.Tensor | None, clamp: bool) -> None:
    """Each adjustment as its own pass over the rows, per-row factors broadcast (any device)."""
    view = (-1, 1, 1, 1)
    if brightness is not None:
        _bound_(torch.mul(source, brightness.view(view), out=out), clamp)
    elif out.data_ptr() != source.data_ptr():
        out.copy_(source)
    rgb = out.shape[1] == 3
    if contrast is not None:
        if rgb:
            means = out.mean(dim=(-2, -1))
            mean = means[:, 0].mul(_LUMA[0]).add_(means[:, 1], alpha=_LUMA[1]).add_(means[:, 2], alpha=_LUMA[2])
        else:
            mean = out.mean(dim=(-3, -2, -1))
        # c x + (1 - c) mean, torchvision's blend, as ops with one per-row factor each: torch's CPU
        # kernels vectorise those, not lerp or addcmul with two (with lerp_ the whole adjustment
        # of 13 x 3x224x224 took 1.2x as long by median, 1.7x by best time)
        c = contrast.view(view)
        _bound_(out.mul_(c).add_(mean.view(view) * (1.0 - c)), clamp)
    if saturation is not None and rgb:
        s = saturation.view(view)
        gray = grayscale(out).mul_(1.0 - s)
        _bound_(out.mul_(s).add_(gray), clamp)


class Color(Augmenter):
    """Jitter brightness, contrast, saturation and hue with factors drawn per row.

    Each row draws a factor per adjustment (see the ranges' convention: a number ``v`` for
    brightness, contrast or saturation means ``(max(0, 1 - v), 1 + v)``; for hue ``(-v, v)``
    turns) and the adjustments run in the fixed order brightness, contrast, saturation, hue, each
    as torchvision computes it on images in [0, 1] (the range augmenters take: the CPU's folded
    arithmetic, `_linear_rows_`, relies on it). Grayscale images take brightness and contrast only.
    """

    name = "color"
    #: clamp to [0, 1] after each adjustment, as torchvision does (DiffAugment's subclass does not)
    clamps: ClassVar[bool] = True

    class Params(Augmenter.Params):
        """Ranges of the per-row factors; a range of (1, 1) (hue: (0, 0)) skips that adjustment."""

        brightness: Factor = Field(0.4, description="brightness factor (0 black, 1 unchanged)")
        contrast: Factor = Field(0.4, description="contrast factor (0 flat gray, 1 unchanged)")
        saturation: Factor = Field(0.4, description="saturation factor (0 grayscale, 1 unchanged)")
        hue: HueShift = Field(0.0, description="hue shift in turns of the colour wheel")

    def _active(self) -> dict[str, tuple[float, float]]:
        neutral = {"brightness": (1.0, 1.0), "contrast": (1.0, 1.0), "saturation": (1.0, 1.0), "hue": (0.0, 0.0)}
        return {k: getattr(self.params, k) for k, v in neutral.items() if getattr(self.params, k) != v}

    def _make_params(self, x, y, generator):
        return {k: uniform(bounds, x.shape[0], generator, x.device) for k, bounds in self._active().items()}

    def _transform(self, x, y, params):
        return self._adjust(torch.empty_like(x), x, params)

    def _transform_(self, x, y, params):
        """`_transform` written into `x` (a `Chain` uses it on its own intermediates)."""
        return self._adjust(x, x, params)

    def _transform_into(self, out, x, y, params):
        """`_transform` written into `out` (a chunked `Chain` writes its output this way)."""
        result = self._adjust(out, x, params)
        return result if result is out else out.copy_(result)

    def _adjust(self, out: torch.Tensor, x: torch.Tensor, params) -> torch.Tensor:
        check_channels(x, self.name)
        factors = [params.get(k) for k in ("brightness", "contrast", "saturation", "hue")]
        clamp = self.clamps
        if any(t is not None and t.requires_grad for t in (x, *factors)):
            # autograd cannot follow writes into `out`: the same arithmetic, out of place
            return adjust(x, *factors, clamp=clamp)
        row_bytes = max(1, x[0].numel() * x.element_size())
        step = max(1, CHUNK_BYTES // row_bytes)
        for start in range(0, x.shape[0], step):
            rows = slice(start, start + step)
            adjust_(out[rows], x[rows], *(None if f is None else f[rows] for f in factors), clamp=clamp)
        return out
