"""color: each adjustment and their fixed order agree with torchvision; factors drawn per row."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

import setforge.plugins.augment.color as color_module
from setforge import ConfigError, DataError
from setforge.plugins.augment.color import Color, hsv_to_rgb, rgb_to_hsv

from ._helpers import assert_rows_independent, fixed, smooth_images

# One multiply-add and a clamp per adjustment in float32 (torchvision's blend, and the contrast mean
# from channel means): a few ulp, far below 1e-5. Hue goes through HSV with a different
# (closed-form) HSV -> RGB formula: rounding of ~1e-6 per channel.
TOL = 1e-5
HUE_TOL = 1e-5


def reference(image, brightness=None, contrast=None, saturation=None, hue=None):
    out = image
    if brightness is not None:
        out = TF.adjust_brightness(out, brightness)
    if contrast is not None:
        out = TF.adjust_contrast(out, contrast)
    if saturation is not None:
        out = TF.adjust_saturation(out, saturation)
    if hue is not None:
        out = TF.adjust_hue(out, hue)
    return out


FACTORS = {"brightness": [0.0, 0.6, 1.4], "contrast": [1.5, 0.5, 0.0], "saturation": [0.3, 1.0, 2.0],
           "hue": [0.1, -0.4, 0.5]}


@pytest.mark.parametrize("which", ["brightness", "contrast", "saturation", "hue"])
def test_each_adjustment_matches_torchvision(which):
    x = smooth_images()
    neutral = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, which: 0.5}
    out = Color(neutral)(x, params=fixed(3, **{which: FACTORS[which]}))
    for i in range(3):
        ref = reference(x[i], **{which: FACTORS[which][i]})
        assert (out[i] - ref).abs().max() < (HUE_TOL if which == "hue" else TOL)


def test_all_adjustments_in_order_match_torchvision(path):
    x = smooth_images()
    out = Color({"hue": 0.5})(x, params=fixed(3, **FACTORS))
    for i in range(3):
        ref = reference(x[i], **{k: v[i] for k, v in FACTORS.items()})
        assert (out[i] - ref).abs().max() < HUE_TOL


def test_grayscale_images_take_brightness_and_contrast():
    x = smooth_images(channels=1)
    out = Color({"hue": 0.3})(x, params=fixed(3, **FACTORS))
    for i in range(3):
        ref = reference(x[i], brightness=FACTORS["brightness"][i], contrast=FACTORS["contrast"][i])
        assert (out[i] - ref).abs().max() < TOL


@pytest.mark.parametrize("chunk", [1, 3000, 1 << 30])
def test_chunking_does_not_change_the_result(monkeypatch, chunk, path):
    x = smooth_images(7)
    params = Color({"hue": 0.2}).make_params(x, None, torch.Generator().manual_seed(0))
    expected = Color({"hue": 0.2})(x, params=params)
    monkeypatch.setattr(color_module, "CHUNK_BYTES", chunk)
    assert torch.equal(Color({"hue": 0.2})(x, params=params), expected)


@pytest.fixture(params=["linear-rows", "one-at-a-time"])
def path(request, monkeypatch):
    """Both CPU paths of the colour arithmetic, whatever the image size (see LINEAR_ROWS_POINTS)."""
    monkeypatch.setattr(color_module, "LINEAR_ROWS_POINTS", 0 if request.param == "linear-rows" else 1 << 40)
    return request.param


@pytest.mark.parametrize("channels", [3, 1])
def test_every_clamp_regime_matches_torchvision_row_by_row(channels, path):
    # brightness, contrast and saturation below, at and above 1 (where torchvision's clamps bind),
    # zero brightness and zero contrast, on noise that reaches 0 and 1 and on smooth images: the
    # folded arithmetic (one matrix product a row, clamps moved inside the scaling) gives
    # torchvision's numbers row by row
    g = torch.Generator().manual_seed(3)
    n = 48
    x = torch.cat([torch.rand(n // 2, channels, 12, 10, generator=g),
                   smooth_images(n // 2, channels=channels, height=12, width=10, seed=4)])
    factors = {k: torch.rand(n, generator=g) * 2.2 for k in ("brightness", "contrast", "saturation")}
    factors["brightness"][:3] = torch.tensor([0.0, 1.0, 2.2])
    factors["contrast"][3:6] = torch.tensor([0.0, 1.0, 2.2])
    assert (factors["brightness"] > 1).sum() > 10 and (factors["contrast"] > 1).sum() > 10
    out = Color({})(x, params=fixed(n, **{k: v.tolist() for k, v in factors.items()}))
    for i in range(n):
        ref = reference(x[i], brightness=float(factors["brightness"][i]), contrast=float(factors["contrast"][i]),
                        saturation=float(factors["saturation"][i]) if channels == 3 else None)
        assert (out[i] - ref).abs().max() < TOL, i
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_no_rows_give_no_rows(path):
    from setforge.plugins.augment.color import adjust_

    x = torch.rand(0, 3, 80, 80)
    none = torch.rand(0)
    assert adjust_(torch.empty_like(x), x, none, none, none, none).shape == (0, 3, 80, 80)


def test_in_place_and_into_agree_with_a_fresh_output(path):
    x = torch.rand(9, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    color = Color({"brightness": (0.5, 1.8), "contrast": (0.5, 1.8), "saturation": (0.5, 1.8)})
    params = color.make_params(x, None, torch.Generator().manual_seed(0))
    expected = color._transform(x, None, params)
    assert torch.equal(color._transform_(x.clone(), None, params), expected)
    into = torch.empty_like(x)
    assert color._transform_into(into, x, None, params) is into and torch.equal(into, expected)


def test_rows_draw_their_own_factors():
    assert_rows_independent(Color({"hue": 0.1}), smooth_images(1)[0])


def test_input_is_not_modified_and_range_kept(path):
    x = smooth_images(5)
    before = x.clone()
    out = Color({"brightness": (2.0, 3.0), "contrast": (2.0, 3.0), "saturation": (2.0, 3.0)})(
        x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and float(out.max()) == 1.0


def test_hsv_round_trip():
    x = torch.rand(4, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    assert (hsv_to_rgb(rgb_to_hsv(x)) - x).abs().max() < 1e-6


def test_neutral_ranges_draw_nothing_and_factor_convention():
    params = Color.parse_params({"brightness": 0.4, "contrast": 0, "saturation": (0.5, 0.9), "hue": 0.1})
    assert params.brightness == (0.6, 1.4) and params.contrast == (1.0, 1.0)
    assert params.saturation == (0.5, 0.9) and params.hue == (-0.1, 0.1)
    drawn = Color(params).make_params(torch.zeros(4, 3, 2, 2), None, torch.Generator().manual_seed(0))
    assert set(drawn) == {"brightness", "saturation", "hue", "apply"}
    with pytest.raises(ConfigError, match="params.hue"):
        Color({"hue": 0.7})
    with pytest.raises(ConfigError, match="params.brightness"):
        Color({"brightness": -0.1})


def test_four_channels_are_refused_with_the_remedy():
    with pytest.raises(DataError, match="1 or 3 channels"):
        Color()(torch.rand(2, 4, 5, 5), generator=torch.Generator().manual_seed(0))


def _unclamped(image, brightness, contrast, saturation):
    """torchvision's blends (`TF._blend`) without the clamp: ``ratio * a + (1 - ratio) * b``."""
    out = image * brightness
    gray = TF.rgb_to_grayscale(out)
    out = contrast * out + (1 - contrast) * gray.mean()
    return saturation * out + (1 - saturation) * TF.rgb_to_grayscale(out)


class Unclamped(Color):
    clamps = False  # as DiffAugment's colour op (setforge.plugins.generate._gan_augment)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_without_clamping_values_leave_the_unit_range(requires_grad):
    x = smooth_images().requires_grad_(requires_grad)
    factors = {"brightness": [1.4, 0.6, 1.2], "contrast": [1.5, 0.5, 1.0], "saturation": [2.0, 1.0, 0.3]}
    out = Unclamped({})(x, params=fixed(3, **factors))
    for i in range(3):
        ref = _unclamped(x[i].detach(), *(v[i] for v in factors.values()))
        assert (out[i].detach() - ref).abs().max() < TOL
    assert float(out.detach().max()) > 1.0  # brightness 1.4, contrast 1.5, saturation 2.0 leave [0, 1]


def test_without_clamping_gradients_pass_where_clamping_would_stop_them():
    x = torch.full((4, 3, 6, 6), 0.9, requires_grad=True)
    params = fixed(4, brightness=1.5)  # 0.9 * 1.5 = 1.35: clamped to 1 by color
    Color({"contrast": 0.0, "saturation": 0.0})(x, params=params).sum().backward()
    assert float(x.grad.abs().max()) == 0.0
    x.grad = None
    Unclamped({"contrast": 0.0, "saturation": 0.0})(x, params=params).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 1.5))


def test_the_cpu_paths_ignore_torchs_default_device(path):
    # (a training loop's torch.set_default_device: the per-row matrices, offsets and limits of
    # `_linear_rows_` were made there, and a CPU batch then failed with a cross-device error)
    from setforge.plugins.augment._scratch import release

    x = smooth_images(4)
    color = Color({"brightness": (1.2, 1.8), "contrast": (0.5, 1.8), "saturation": (0.5, 1.8)})
    params = color.make_params(x, None, torch.Generator().manual_seed(0))
    expected = color(x, params=params)
    release()  # (the scratch buffer too is made afresh under the default device)
    with torch.device("meta"):
        out = color(x, params=params)
    assert out.device == x.device and torch.equal(out, expected)
