"""Waveform augmenters: whole batches ``(N, C, T)`` on the run's device, parameters drawn per row.

``gain`` (dB), ``time-shift`` (roll or zero-fill), ``noise-snr`` (white noise at a target SNR),
``time-mask`` and ``frequency-mask`` (SpecAugment-style bands zeroed in the STFT, back through
``torch.istft``) and ``speed`` (speed perturbation: the clip played faster or slower by
resampling, so pitch and tempo change together, like sox's ``speed``). Every random number comes
from the step's ``torch.Generator``; ``_transform`` is deterministic, so a call replays from
``last_params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator

from setforge import Augmenter, DataError

__all__ = ["Gain", "TimeShift", "NoiseSnr", "TimeMask", "FrequencyMask", "Speed", "AUGMENTERS", "stft", "istft"]


def _uniform(n: int, low: float, high: float, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=x.device, dtype=torch.float32)


class _Range(Augmenter.Params):
    """Params with (low, high) pairs that must be ordered."""

    ranges: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="after")
    def _ordered(self):
        for low, high in self.ranges:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        return self


class _Audio(Augmenter):
    """An audio augmenter: clips ``(N, channels, samples)``, checked when a call draws its params."""

    modalities = ("audio",)

    def make_params(self, x, y=None, generator=None):
        if x.dim() != 3:
            raise DataError(f"augment '{self.name}': clips are (N, channels, samples), got shape {tuple(x.shape)}; "
                            "give mono clips a channel axis (x.unsqueeze(1))")
        return super().make_params(x, y, generator)


class Gain(_Audio):
    """Multiplies each clip by a gain drawn in dB (uniform in [min_db, max_db])."""

    name = "gain"
    class Params(_Range):
        """The gain range in decibels."""

        ranges: ClassVar[tuple[tuple[str, str], ...]] = (("min_db", "max_db"),)
        min_db: float = Field(-6.0, ge=-60.0, le=60.0, description="lowest gain (dB)")
        max_db: float = Field(6.0, ge=-60.0, le=60.0, description="highest gain (dB)")

    def _make_params(self, x, y, generator):
        return {"db": _uniform(x.shape[0], self.params.min_db, self.params.max_db, x, generator)}

    def _transform(self, x, y, params):
        return x * torch.pow(10.0, params["db"] / 20.0).view(-1, 1, 1)


class TimeShift(_Audio):
    """Shifts each clip in time by a fraction of its length drawn in [-max_shift, max_shift] (roll or zero-fill)."""

    name = "time-shift"
    class Params(Augmenter.Params):
        """How far and how the clip moves."""

        max_shift: float = Field(0.2, ge=0.0, le=1.0, description="largest shift, as a fraction of the clip length")
        rollover: bool = Field(True, description="samples shifted off one end come in at the other; "
                                                 "false: the gap is silence")

    def _make_params(self, x, y, generator):
        length = x.shape[-1]
        fraction = _uniform(x.shape[0], -self.params.max_shift, self.params.max_shift, x, generator)
        return {"shift": torch.round(fraction * length).to(torch.int64)}

    def _transform(self, x, y, params):
        n, length = x.shape[0], x.shape[-1]
        shift = params["shift"]
        # A roll is a window of the clip written twice: every row's window is a strided view of
        # one buffer, so the batch moves with one copy (a gather by index is several times slower).
        start = (-shift) % length
        out = torch.cat([x, x], dim=-1).unfold(2, length, 1)[torch.arange(n, device=x.device), :, start]
        if not self.params.rollover:
            source = torch.arange(length, device=x.device).view(1, -1) - shift.view(-1, 1)  # (N, T)
            out = out * ((source >= 0) & (source < length)).unsqueeze(1).to(x.dtype)
        return out


class NoiseSnr(_Audio):
    """Adds white Gaussian noise at a signal-to-noise ratio drawn in [min_snr_db, max_snr_db] per clip."""

    name = "noise-snr"
    class Params(_Range):
        """The SNR range in decibels."""

        ranges: ClassVar[tuple[tuple[str, str], ...]] = (("min_snr_db", "max_snr_db"),)
        min_snr_db: float = Field(5.0, ge=-20.0, le=100.0, description="lowest SNR (dB)")
        max_snr_db: float = Field(40.0, ge=-20.0, le=100.0, description="highest SNR (dB)")

    def _make_params(self, x, y, generator):
        n = x.shape[0]
        return {"snr_db": _uniform(n, self.params.min_snr_db, self.params.max_snr_db, x, generator),
                "noise": torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)}

    def _transform(self, x, y, params):
        # The noise drawn is scaled so that its own power gives the target SNR exactly.
        noise = params["noise"]
        signal_power = x.pow(2).mean(dim=(1, 2), keepdim=True)
        noise_power = noise.pow(2).mean(dim=(1, 2), keepdim=True).clamp_min(1e-20)
        target = signal_power / torch.pow(10.0, params["snr_db"] / 10.0).view(-1, 1, 1)
        return x + noise * torch.sqrt(target / noise_power)


# ---------------------------------------------------------------------- spectrogram
def stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """The complex STFT of every channel of ``(N, C, T)``: ``(N, C, n_fft // 2 + 1, frames)``."""
    n, c, length = x.shape
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x.reshape(n * c, length), n_fft, hop_length=hop, window=window, center=True,
                      return_complex=True)
    return spec.view(n, c, *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop: int, length: int) -> torch.Tensor:
    """The inverse of `stft`, ``(N, C, T)`` of `length` samples."""
    n, c = spec.shape[:2]
    window = torch.hann_window(n_fft, device=spec.device, dtype=spec.real.dtype)
    out = torch.istft(spec.reshape(n * c, *spec.shape[-2:]), n_fft, hop_length=hop, window=window, center=True,
                      length=length)
    return out.view(n, c, length)


class _SpectrogramMask(_Audio):
    """A band of one axis of the STFT zeroed per clip: start and width drawn per row."""

    axis = -1  # -1: frames (time), -2: bins (frequency)

    class Params(Augmenter.Params):
        """The STFT and the widest band."""

        max_width: float = Field(0.15, ge=0.0, le=1.0, description="widest band, as a fraction of the axis")
        n_fft: int = Field(256, ge=8, le=65_536, description="STFT window length (samples, Hann window)")
        hop: int = Field(64, ge=1, le=65_536, description="STFT hop (samples); at most n_fft / 2 so istft inverts")

        @model_validator(mode="after")
        def _invertible(self):
            if self.hop * 2 > self.n_fft:
                raise ValueError(f"hop ({self.hop}) must be at most n_fft / 2 ({self.n_fft // 2}) for the Hann "
                                 "window to be inverted")
            return self

    def _size(self, length: int) -> int:
        return self.params.n_fft // 2 + 1 if self.axis == -2 else length // self.params.hop + 1

    def _make_params(self, x, y, generator):
        if x.shape[0] and x.shape[-1] <= self.params.n_fft // 2:
            # (the centred STFT pads each end by n_fft / 2 samples, reflecting the clip, which needs more)
            raise DataError(f"augment '{self.name}': clips of {x.shape[-1]} samples are too short for n_fft "
                            f"{self.params.n_fft}; the STFT needs more than n_fft / 2 = {self.params.n_fft // 2} "
                            f"samples: lower n_fft (and hop) or use longer clips")
        n, size = x.shape[0], self._size(x.shape[-1])
        width = torch.floor(_uniform(n, 0.0, self.params.max_width, x, generator) * size).to(torch.int64)
        start = torch.floor(torch.rand(n, generator=generator, device=x.device) * (size - width + 1)).to(torch.int64)
        return {"start": start, "width": width}

    def mask(self, params: Mapping[str, Any], size: int, device: Any) -> torch.Tensor:
        """``(N, size)`` True where the band of each row lies."""
        index = torch.arange(size, device=device).view(1, -1)
        start = params["start"].view(-1, 1)
        return (index >= start) & (index < start + params["width"].view(-1, 1))

    def _transform(self, x, y, params):
        p = self.params
        spec = stft(x, p.n_fft, p.hop)
        band = self.mask(params, spec.shape[self.axis], x.device)
        shape = (-1, 1, 1, spec.shape[-1]) if self.axis == -1 else (-1, 1, spec.shape[-2], 1)
        spec = spec.masked_fill(band.view(shape), 0)
        return istft(spec, p.n_fft, p.hop, x.shape[-1])


class TimeMask(_SpectrogramMask):
    """SpecAugment time masking: a band of STFT frames per clip set to zero (up to max_width of the frames)."""

    name = "time-mask"
    axis = -1


class FrequencyMask(_SpectrogramMask):
    """SpecAugment frequency masking: a band of STFT bins per clip set to zero (up to max_width of the bins)."""

    name = "frequency-mask"
    axis = -2


class Speed(_Audio):
    """Speed perturbation: each clip played faster or slower by a factor drawn in [min_factor, max_factor] (resampled)."""

    name = "speed"
    class Params(_Range):
        """The speed factors (above 1: faster and higher)."""

        ranges: ClassVar[tuple[tuple[str, str], ...]] = (("min_factor", "max_factor"),)
        min_factor: float = Field(0.9, ge=0.25, le=4.0, description="slowest factor")
        max_factor: float = Field(1.1, ge=0.25, le=4.0, description="fastest factor")

    def _make_params(self, x, y, generator):
        return {"factor": _uniform(x.shape[0], self.params.min_factor, self.params.max_factor, x, generator)}

    def _transform(self, x, y, params):
        # Output sample t reads the input at t * factor (linear interpolation); past the input's end
        # is silence, so the clip keeps its length. A faster clip is low-pass filtered first (a
        # windowed sinc whose transition band ends at the new Nyquist frequency, so what would fold
        # back is down by 40 dB or more there; a cutoff at the new Nyquist itself lets -6 dB fold back).
        n, c, length = x.shape
        factor = params["factor"].to(x.dtype)
        x = _lowpass(x, torch.where(factor > 1.0, 1.0 / factor - _TRANSITION / 2, 1.0), taps=_TAPS)
        position = torch.arange(length, device=x.device, dtype=x.dtype).view(1, -1) * factor.view(-1, 1)  # (N, T)
        left = position.floor().to(torch.int64)
        weight = (position - left.to(x.dtype)).unsqueeze(1)
        inside = (left < length).unsqueeze(1).to(x.dtype)
        gather = lambda i: torch.gather(x, 2, i.clamp(max=length - 1).unsqueeze(1).expand(-1, c, -1))  # noqa: E731
        right_ok = ((left + 1) < length).unsqueeze(1).to(x.dtype)
        return inside * ((1 - weight) * gather(left) + weight * right_ok * gather(left + 1))


#: The speed filter's length, and the width of its Hann window's transition band from -6 dB to
#: about -44 dB (6.2 / taps, as a fraction of Nyquist).
_TAPS = 127
_TRANSITION = 6.2 / _TAPS


def _lowpass(x: torch.Tensor, cutoff: torch.Tensor, taps: int = 63) -> torch.Tensor:
    """Each row filtered by a Hann-windowed sinc low-pass at ``cutoff`` (a fraction of Nyquist,
    per row); rows with cutoff 1 pass unchanged."""
    if bool((cutoff >= 1.0).all()):
        return x
    n, c, length = x.shape
    k = torch.arange(taps, device=x.device, dtype=x.dtype) - (taps - 1) / 2
    kernel = cutoff.view(-1, 1) * torch.sinc(cutoff.view(-1, 1) * k.view(1, -1)) * torch.hann_window(
        taps, periodic=False, device=x.device, dtype=x.dtype).view(1, -1)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # unit gain at 0 Hz
    # one group per (row, channel): every row its own kernel, in a single conv1d
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, taps)
    out = torch.nn.functional.conv1d(x.reshape(1, n * c, length), weight, padding=taps // 2, groups=n * c)
    out = out.view(n, c, length)
    keep = (cutoff >= 1.0).view(-1, 1, 1)
    return torch.where(keep, x, out)


AUGMENTERS = (Gain, TimeShift, NoiseSnr, TimeMask, FrequencyMask, Speed)
