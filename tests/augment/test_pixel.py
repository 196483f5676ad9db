"""Pixel ops: agreement with torchvision's functionals row by row, per-row draws, one batched call."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from setforge import ConfigError, DataError
from setforge.plugins.augment.pixel import (Autocontrast, Equalize, Erasing, GaussianBlur, GaussianNoise, Grayscale,
                                            Invert, Posterize, Solarize, Sharpness)

from ._helpers import assert_rows_independent, fixed, smooth_images


def images() -> torch.Tensor:
    x = smooth_images(3)
    x[2] = x[2] * 0.3 + 0.2  # a low-contrast row, so equalize and autocontrast have work to do
    x[1, :, :4, :4] = 1.0     # saturated pixels, so solarize and posterize meet the top value
    return x


def per_row(out: torch.Tensor, refs: list[torch.Tensor]) -> float:
    return max(float((out[i] - ref).abs().max()) for i, ref in enumerate(refs))


# Ops that are the same arithmetic as torchvision's agree exactly; the blur runs as two 1-D
# convolutions where torchvision runs one 2-D one (same kernel, summed in another order: ~1 ulp
# per tap, < 1e-6), sharpness sums PIL's kernel as a box sum plus 4 x the centre (the same
# weights added in another order, < 1e-6).
def test_grayscale():
    x = images()
    assert per_row(Grayscale()(x, params=fixed(3)), [TF.rgb_to_grayscale(x[i], 3) for i in range(3)]) == 0.0


@pytest.mark.parametrize("size", [5, (3, 7)])
def test_gaussian_blur(size):
    x = images()
    sigma = [0.3, 1.0, 2.5]
    sizes = [size, size] if isinstance(size, int) else list(size)
    refs = [TF.gaussian_blur(x[i], sizes, [sigma[i], sigma[i]]) for i in range(3)]
    assert per_row(GaussianBlur({"kernel_size": size})(x, params=fixed(3, sigma=sigma)), refs) < 1e-6


def test_gaussian_noise_given_the_same_normal_draw():
    x = images()
    sigma = torch.tensor([0.05, 0.2, 0.0])
    noise, refs = torch.empty_like(x), []
    for i in range(3):
        torch.manual_seed(i)
        noise[i] = torch.randn_like(x[i])
        torch.manual_seed(i)
        refs.append(TF.gaussian_noise(x[i], mean=0.1, sigma=float(sigma[i])))
    out = GaussianNoise({"mean": 0.1})(x, params=fixed(3, sigma=sigma, noise=noise))
    assert per_row(out, refs) == 0.0


def test_erasing():
    x = images()
    box = {"top": [2.0, 0.0, 5.0], "left": [3.0, 0.0, 0.0], "height": [5.0, 19.0, 0.0], "width": [7.0, 23.0, 4.0]}
    value = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1)
    refs = [TF.erase(x[i], *(int(box[k][i]) for k in ("top", "left", "height", "width")), value) for i in range(3)]
    assert per_row(Erasing({"value": (0.1, 0.5, 0.9)})(x, params=fixed(3, **box)), refs) == 0.0


def test_sharpness():
    x = images()
    factor = [0.0, 0.7, 2.0]
    refs = [TF.adjust_sharpness(x[i], factor[i]) for i in range(3)]
    assert per_row(Sharpness()(x, params=fixed(3, factor=factor)), refs) < 1e-6


def test_posterize_on_torchvisions_float_quantisation():
    x = images()
    bits = [1, 4, 8]
    refs = [TF.posterize(x[i], bits[i]) for i in range(3)]
    assert per_row(Posterize()(x, params=fixed(3, bits=bits)), refs) == 0.0


def test_solarize():
    x = images()
    threshold = [0.2, 0.5, 0.99]
    refs = [TF.solarize(x[i], threshold[i]) for i in range(3)]
    assert per_row(Solarize()(x, params=fixed(3, threshold=threshold)), refs) == 0.0


def test_solarize_inverts_pixels_equal_to_the_threshold():
    # (torchvision's x >= threshold: at 0 every pixel is inverted, at 1 the saturated ones)
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2).expand(3, 3, 2, 2).contiguous()
    threshold = [0.0, 0.5, 1.0]
    refs = [TF.solarize(x[i], threshold[i]) for i in range(3)]
    assert per_row(Solarize()(x, params=fixed(3, threshold=threshold)), refs) == 0.0


@pytest.mark.parametrize("op, functional", [(Equalize, TF.equalize), (Autocontrast, TF.autocontrast),
                                            (Invert, TF.invert)], ids=["equalize", "autocontrast", "invert"])
def test_switch_ops(op, functional):
    x = images()
    x[0, 1] = 0.4  # a flat channel: equalize and autocontrast leave it (as torchvision does)
    assert per_row(op()(x, params=fixed(3)), [functional(x[i]) for i in range(3)]) == 0.0


def test_equalize_spreads_the_histogram_and_quantises_to_255ths():
    x = images()[2:].expand(2, -1, -1, -1).contiguous()
    out = Equalize()(x, params=fixed(2))
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)
    assert float(out.max() - out.min()) > 0.9 > float(x.max() - x.min())


# --------------------------------------------------------------------------- per-row draws
# (sigma below ~0.2 gives a kernel of one tap in float32: such rows come out equal, hence 0.5)
@pytest.mark.parametrize("aug", [GaussianBlur({"sigma": (0.5, 2.0)}), GaussianNoise(), Erasing(), Erasing({"value": "random"}),
                                 Sharpness({"factor": (0.0, 3.0)}), Posterize({"bits": (1, 8)}), Solarize({"threshold": (0.0, 1.0)})],
                         ids=lambda a: a.name)
def test_rows_draw_their_own_parameters(aug):
    image = smooth_images(1, height=48, width=48)[0]
    if aug.name == "posterize":  # eight levels of bits: 64 rows cannot all differ; the draws must spread
        out = aug(image.expand(64, -1, -1, -1).contiguous(), generator=torch.Generator().manual_seed(0))
        # every bit count of (1, 8), both ends included, each its own image
        assert torch.equal(torch.unique(aug.last_params["bits"]), torch.arange(1, 9))
        assert len(torch.unique(out.flatten(1), dim=0)) == 8
        return
    if aug.name == "solarize":
        image = torch.linspace(0, 1, 3 * 48 * 48).view(3, 48, 48)  # every threshold inverts a different set
    assert_rows_independent(aug, image)


@pytest.mark.parametrize("aug", [Grayscale(), Equalize(), Autocontrast(), Invert()], ids=lambda a: a.name)
def test_switch_ops_change_about_half_the_rows(aug):
    x = images()[1:2].expand(400, -1, -1, -1).contiguous()
    out = aug(x, generator=torch.Generator().manual_seed(0))
    changed = (out - x).flatten(1).abs().amax(dim=1) > 0
    assert 150 < int(changed.sum()) < 250
    assert torch.equal(out[~changed], x[~changed])


def test_erasing_boxes_follow_the_ranges():
    params = Erasing({"scale": (0.1, 0.2), "ratio": (0.5, 2.0)}).make_params(
        torch.zeros(2000, 1, 40, 50), None, torch.Generator().manual_seed(0))
    area = params["height"] * params["width"] / 2000
    assert float(area.min()) > 0.08 and float(area.max()) < 0.22  # whole pixels, as torchvision rounds
    assert bool((params["top"] + params["height"] <= 40).all() and (params["left"] + params["width"] <= 50).all())


def test_erasing_that_finds_no_box_leaves_the_row():
    out = Erasing({"scale": (0.99, 1.0), "ratio": (1.0, 1.0)})(images(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, images())  # a box of the whole image is never drawn, as in torchvision
    square = smooth_images(4, height=10, width=10)  # (a box of exactly the image's size does not fit either)
    out = Erasing({"scale": 1.0, "ratio": 1.0})(square, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, square)


def test_erasing_boxes_reach_every_edge():
    # torchvision's top in 0..H - h and left in 0..W - w, both ends included
    params = Erasing({"scale": 0.25, "ratio": 1.0}).make_params(torch.zeros(400, 1, 8, 8), None,
                                                               torch.Generator().manual_seed(0))
    assert bool((params["height"] == 4).all() and (params["width"] == 4).all())
    for start in ("top", "left"):
        assert torch.equal(torch.unique(params[start]), torch.arange(5.0))


def test_blur_refuses_a_kernel_larger_than_the_image():
    with pytest.raises(DataError, match="smaller kernel_size"):
        GaussianBlur({"kernel_size": 9})(torch.rand(2, 1, 4, 4), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls, bad, place", [(GaussianBlur, {"kernel_size": 4}, "kernel_size"),
                                             (GaussianBlur, {"sigma": 0}, "sigma"),
                                             (Posterize, {"bits": 9}, "bits"), (Posterize, {"bits": (6, 2)}, "bits"),
                                             (Solarize, {"threshold": 1.5}, "threshold"),
                                             (Erasing, {"value": "noise"}, "value"), (Sharpness, {"factor": -1}, "factor"),
                                             # true/false is not read as 1/0 (bits 1, threshold 1, factor (1, 1))
                                             (Posterize, {"bits": True}, "bits"), (Solarize, {"threshold": True}, "threshold"),
                                             (Sharpness, {"factor": False}, "factor"), (GaussianNoise, {"sigma": False}, "sigma")])
def test_bad_params_are_named(cls, bad, place):
    with pytest.raises(ConfigError) as error:
        cls(bad)
    assert f"params.{place}" in str(error.value)


def test_an_empty_erasing_value_says_what_is_accepted():
    with pytest.raises(ConfigError, match=r"params.value: .*one value, or one per channel"):
        Erasing({"value": []})


@pytest.mark.parametrize("layout", ["channels_last", "permuted"])
def test_ops_take_channels_last_and_permuted_batches(layout):
    # a batch read as NHWC and permuted to NCHW (the usual way from numpy or PIL) is channels-last in
    # memory; equalize and the blur flattened it with view, which such strides refuse
    x = smooth_images(4, height=9, width=11)
    other = (x.contiguous(memory_format=torch.channels_last) if layout == "channels_last"
             else x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2))
    assert not other.is_contiguous()
    for aug in (Grayscale({"p": 1}), GaussianBlur(), GaussianNoise(), Erasing(), Sharpness(), Posterize(), Solarize(),
                Equalize({"p": 1}), Autocontrast({"p": 1}), Invert({"p": 1})):
        out = aug(other, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, aug(x, params=aug.last_params)), aug.name


def test_ops_work_on_one_channel_digits_shape():
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for aug in (Grayscale({"p": 1}), GaussianBlur(), GaussianNoise(), Erasing(), Sharpness(), Posterize(), Solarize(),
                Equalize({"p": 1}), Autocontrast({"p": 1}), Invert({"p": 1})):
        out = aug(x, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_equalize_in_half_precision_quantises_as_in_float32(dtype):
    # (1.0 * 255.999 rounds to 256 in half precision: a level past the channel's own, which landed in
    # the next channel's histogram, or past the last)
    x = smooth_images(4).to(dtype)
    x[:, :, 0, 0] = 1.0
    out = Equalize({"p": 1.0})(x, generator=torch.Generator().manual_seed(0))
    expected = Equalize({"p": 1.0})(x.float(), generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype and torch.equal(out, expected.to(dtype))


def test_integer_images_are_refused_with_what_is_accepted():
    x = (smooth_images(2) * 255).to(torch.uint8)
    with pytest.raises(DataError, match=r"floating-point images in \[0, 1\], got torch.uint8"):
        Invert({"p": 1.0})(x)


def test_every_image_augmenter_refuses_a_single_image_with_the_shape_it_wants():
    # (found by an audit: a (C, H, W) image was taken for C rows by invert, solarize, posterize,
    # gaussian-noise and autocontrast, each channel drawing its own params; equalize, erasing,
    # gaussian-blur, sharpness and torchvision failed with bare ValueErrors; color said "got 20 channels")
    from setforge.registry import Registry

    infos = [i for i in Registry(use_env=False).load().components("augment")
             if tuple(i.cls.modalities) == ("image",) and i.distribution == "setforge"]
    assert len(infos) >= 15
    for info in infos:
        with pytest.raises(DataError, match=r"takes a batch of images \(N, C, H, W\), got shape \(3, 20, 24\)"):
            info.cls({})(smooth_images(1)[0], generator=torch.Generator().manual_seed(0))
