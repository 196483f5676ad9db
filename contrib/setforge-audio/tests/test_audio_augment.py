"""Physics of the waveform augmenters on synthesised tones and chirps, seeding, replay and the kit."""

import math

import pytest
import torch

from setforge import ConfigError
from setforge.testing import check_component
from setforge_audio.augment import (AUGMENTERS, FrequencyMask, Gain, NoiseSnr, Speed, TimeMask, TimeShift, istft,
                                    stft)

RATE = 8000


def tones(freqs, length=4096, amplitude=0.5):
    t = torch.arange(length, dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * math.pi * torch.tensor(freqs, dtype=torch.float64).view(-1, 1) * t)) \
        .float().unsqueeze(1)


def chirp(n=4, length=4096):
    t = torch.arange(length, dtype=torch.float64) / RATE
    return (0.5 * torch.sin(2 * math.pi * (200 * t + 0.5 * 3000 / t[-1] * t**2))).float().expand(n, 1, -1).clone()


def run(cls, params, x, seed=0):
    aug = cls({**params, "p": 1.0})
    return aug(x, generator=torch.Generator().manual_seed(seed)), aug


def power(x):
    return x.double().pow(2).mean(dim=(1, 2))


def peak_hz(x):
    spectrum = torch.fft.rfft(x[:, 0].double(), dim=1).abs()
    return spectrum.argmax(dim=1).double() * RATE / x.shape[-1]


@pytest.mark.parametrize("cls", AUGMENTERS, ids=lambda c: c.name)
def test_passes_the_conformance_kit(cls):
    check_component(cls)


def test_gain_scales_energy_by_the_drawn_decibels():
    x = chirp(16)
    out, aug = run(Gain, {"min_db": -12, "max_db": 12}, x)
    db = aug.last_params["db"].double()
    assert torch.allclose(power(out) / power(x), 10 ** (db / 10), rtol=1e-4)
    assert float(db.min()) >= -12 and float(db.max()) <= 12 and float(db.std()) > 3


@pytest.mark.parametrize("rollover", [True, False])
def test_time_shift_moves_the_signal_by_the_drawn_samples(rollover):
    x = chirp(8)
    out, aug = run(TimeShift, {"max_shift": 0.3, "rollover": rollover}, x)
    shifts = aug.last_params["shift"]
    assert int(shifts.abs().max()) <= round(0.3 * x.shape[-1]) and len(set(shifts.tolist())) > 4
    for row, s in enumerate(shifts.tolist()):
        expected = torch.roll(x[row], s, dims=-1)
        if not rollover:
            if s > 0:
                expected[..., :s] = 0
            elif s < 0:
                expected[..., s:] = 0
        assert torch.equal(out[row], expected)
        # the cross-correlation of output and input peaks at the shift
        corr = torch.fft.irfft(torch.fft.rfft(out[row, 0].double()) * torch.fft.rfft(x[row, 0].double()).conj())
        lag = int(corr.argmax())
        assert (lag if lag <= x.shape[-1] // 2 else lag - x.shape[-1]) == s


def test_noise_reaches_the_target_snr_exactly():
    x = tones([440, 880, 1000, 300] * 4)
    out, aug = run(NoiseSnr, {"min_snr_db": 0, "max_snr_db": 30}, x)
    target = aug.last_params["snr_db"].double()
    noise = out.double() - x.double()
    achieved = 10 * torch.log10(power(x) / noise.pow(2).mean(dim=(1, 2)))
    assert torch.allclose(achieved, target, atol=1e-3)
    # the noise is white: flat spectrum (no band holds much more than its share) and zero mean
    spectrum = torch.fft.rfft(noise[:, 0], dim=1).abs().pow(2)
    bands = spectrum[:, 1:].reshape(len(x), 8, -1).mean(2)
    assert float((bands / bands.mean(1, keepdim=True)).max()) < 1.5
    assert float(noise.mean().abs()) < 0.02 * float(noise.std())


def test_stft_round_trip_and_an_empty_mask_change_nothing():
    x = chirp(3)
    assert torch.allclose(istft(stft(x, 256, 64), 256, 64, x.shape[-1]), x, atol=1e-5)
    out, _ = run(TimeMask, {"max_width": 0.0}, x)
    assert torch.allclose(out, x, atol=1e-5)


def test_time_mask_silences_its_frames_and_keeps_the_rest():
    x = tones([440] * 6)
    out, aug = run(TimeMask, {"max_width": 0.3}, x)
    params, hop = aug.last_params, 64
    assert int((params["width"] > 10).sum()) >= 2
    for row in range(len(x)):
        start, width = int(params["start"][row]), int(params["width"][row])
        spec_in, spec_out = stft(x[row:row + 1], 256, hop).abs(), stft(out[row:row + 1], 256, hop).abs()
        if width > 10:  # deep inside a wide band the energy is gone
            inner = slice(start + 4, start + width - 4)
            assert float(spec_out[..., inner].pow(2).sum()) < 1e-3 * float(spec_in[..., inner].pow(2).sum())
        # samples far from the band are unchanged
        lo, hi = (start - 4) * hop, (start + width + 4) * hop
        keep = torch.ones(x.shape[-1], dtype=torch.bool)
        keep[max(lo, 0):max(hi, 0)] = False
        assert torch.allclose(out[row, 0, keep], x[row, 0, keep], atol=1e-4)


def test_frequency_mask_removes_a_tone_inside_the_band_only():
    # 256-point STFT at 8 kHz: bin k is k * 31.25 Hz; a tone at bin 20 (625 Hz)
    x = tones([625.0, 625.0])
    aug = FrequencyMask({"p": 1.0})
    inside = {"start": torch.tensor([10, 60]), "width": torch.tensor([21, 21]), "apply": torch.tensor([True, True])}
    out = aug(x, params=inside)
    drop = 10 * torch.log10(power(x) / power(out))
    assert float(drop[0]) > 30 and abs(float(drop[1])) < 0.1


def test_speed_scales_frequency_and_keeps_the_length():
    x = tones([400.0] * 8)
    out, aug = run(Speed, {"min_factor": 0.8, "max_factor": 1.25}, x)
    factor = aug.last_params["factor"].double()
    assert out.shape == x.shape
    resolution = RATE / x.shape[-1]
    assert torch.allclose(peak_hz(out[:, :, :2048]), 400 * factor, atol=2 * resolution * 2)
    # faster clips end in silence: the input ran out
    faster = factor > 1.05
    assert bool((out[faster, :, -100:].abs().amax(dim=(1, 2)) < 1e-6).all())


def test_speed_up_filters_what_would_alias():
    x = tones([3500.0])  # near Nyquist (4 kHz): at speed 1.5 it would fold back to 2750 Hz
    out = Speed({"p": 1.0})(x, params={"factor": torch.tensor([1.5]), "apply": torch.tensor([True])})
    assert float(power(out[:, :, :2000])) < 0.02 * float(power(x))


@pytest.mark.parametrize(("tone", "factor"), [(3700.0, 1.1), (3900.0, 1.05), (3950.0, 1.02)])
def test_speed_up_filters_a_tone_just_past_the_new_nyquist(tone, factor):
    # (found by an audit: a cutoff at the new Nyquist itself let such tones fold back at -11 to -20 dB)
    x = tones([tone])
    out = Speed({"p": 1.0})(x, params={"factor": torch.tensor([factor]), "apply": torch.tensor([True])})
    settled = out[:, :, 200:int(x.shape[-1] / factor) - 200]  # (away from the edges and the silent end)
    assert float(power(settled)) < 10 ** (-40 / 10) * float(power(x))  # at least 40 dB down


def test_clips_without_a_channel_axis_are_refused_by_every_augmenter():
    # (found by an audit: gain broadcast (N, samples) to (N, N, samples) without a word)
    from setforge import DataError
    from setforge_audio.augment import AUGMENTERS

    for cls in AUGMENTERS:
        with pytest.raises(DataError, match=r"clips are \(N, channels, samples\), got shape \(4, 800\)"):
            cls()(torch.zeros(4, 800), generator=torch.Generator().manual_seed(0))


def test_seeded_per_row_and_replayable():
    x = chirp(6)
    first, aug = run(NoiseSnr, {}, x)
    again, _ = run(NoiseSnr, {}, x)
    other, _ = run(NoiseSnr, {}, x, seed=1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(aug(x, params=aug.last_params), first)
    assert len(set(aug.last_params["snr_db"].tolist())) == len(x)


def test_bad_ranges_are_refused_at_their_place():
    with pytest.raises(ConfigError, match="min_db"):
        Gain({"min_db": 3, "max_db": -3})
    with pytest.raises(ConfigError, match="hop"):
        TimeMask({"n_fft": 64, "hop": 48})


@pytest.mark.parametrize("cls", [TimeMask, FrequencyMask])
def test_clips_too_short_for_the_stft_are_refused_with_what_to_change(cls):
    # (torch.stft's reflection padding failed with "Padding size should be less than the input dimension")
    from setforge import DataError

    with pytest.raises(DataError, match=r"clips of 100 samples are too short for n_fft 256.*lower n_fft"):
        cls({"p": 1.0})(torch.randn(2, 1, 100), generator=torch.Generator().manual_seed(0))
    assert cls({"p": 1.0, "n_fft": 64, "hop": 16})(torch.randn(2, 1, 100), generator=torch.Generator().manual_seed(0)).shape == (2, 1, 100)


@pytest.mark.parametrize("length", [800, 801, 1023, 4000])
def test_masks_count_the_frames_and_bins_torch_stft_makes(length):
    # (an audit's mutation that left the last frame out passed every test)
    for cls in (TimeMask, FrequencyMask):
        mask = cls()
        spectrum = torch.stft(torch.zeros(length), mask.params.n_fft, mask.params.hop, return_complex=True,
                              window=torch.hann_window(mask.params.n_fft), center=True)
        assert mask._size(length) == spectrum.shape[-1 if cls is TimeMask else -2]
