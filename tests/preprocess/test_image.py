"""Image preprocessors against torchvision and scipy.ndimage, [0, 1] kept, channel rules, conformance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from setforge import ConfigError, DataError, Dataset, StepContext, create
from setforge.plugins.preprocess.image import CenterCrop, Denoise, Resize, ToGrayscale, ToRGB
from setforge.testing import check_component


def images(n: int = 6, c: int = 3, h: int = 20, w: int = 17, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(x=torch.rand(n, c, h, w, generator=g), y=torch.zeros(n, dtype=torch.int64), classes=["a"],
                   modality="image")


def run(name: str, ds: Dataset, params: dict | None = None) -> torch.Tensor:
    return create("preprocess", name, params).fit(ds, StepContext.from_seed(0)).transform(ds).x


@pytest.mark.parametrize("size, mode", [(8, "bilinear"), ([30, 40], "bicubic"), ([10, 9], "bilinear"),
                                        (5, "nearest")])
def test_resize_matches_torchvision(size, mode):
    ds = images()
    expected = TF.resize(ds.x, size, interpolation=TF.InterpolationMode(mode), antialias=True).clamp(0, 1)
    out = run("resize", ds, {"size": size, "interpolation": mode})
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_resize_antialias_removes_aliasing():
    # A one-pixel checkerboard shrunk to 9x9: antialiased it averages to mid-grey, plain sampling does not.
    board = ((torch.arange(32).view(-1, 1) + torch.arange(32)) % 2).float().expand(1, 1, 32, 32).contiguous()
    ds = Dataset(x=board, y=torch.zeros(1, dtype=torch.int64), classes=["a"], modality="image")
    smooth = run("resize", ds, {"size": 9})
    assert float((smooth - 0.5).abs().max()) < 0.01
    aliased = run("resize", ds, {"size": 9, "antialias": False})
    assert float((aliased - 0.5).abs().max()) > 0.3


@pytest.mark.parametrize("size", [8, [25, 10], [4, 30], [20, 17]])
def test_center_crop_matches_torchvision(size):
    ds = images()
    assert torch.equal(run("center-crop", ds, {"size": size}), TF.center_crop(ds.x, size))


def test_channels():
    rgb = images(c=3)
    torch.testing.assert_close(run("to-grayscale", rgb), TF.rgb_to_grayscale(rgb.x), atol=1e-6, rtol=0)
    three = run("to-grayscale", rgb, {"num_output_channels": 3})
    assert three.shape[1] == 3 and torch.equal(three[:, 0], three[:, 2])
    gray = images(c=1)
    assert torch.equal(run("to-grayscale", gray), gray.x)
    assert torch.equal(run("to-rgb", gray), gray.x.expand(-1, 3, -1, -1))
    assert torch.equal(run("to-rgb", images(c=4)), images(c=4).x[:, :3])
    with pytest.raises(DataError, match="to-grayscale.*1 or 3 channels"):
        run("to-grayscale", images(c=4))
    with pytest.raises(DataError, match="to-rgb.*5 channels"):
        run("to-rgb", images(c=5))


@pytest.mark.parametrize("k", [3, 5])
def test_median_matches_scipy(k):
    from scipy import ndimage

    ds = images()
    expected = ndimage.median_filter(ds.x.numpy(), size=(1, 1, k, k), mode="mirror")
    np.testing.assert_array_equal(run("denoise", ds, {"method": "median", "kernel_size": k}).numpy(), expected)


def test_median_removes_salt_and_pepper():
    from sklearn.datasets import load_digits

    clean = torch.tensor(load_digits().images[:50] / 16.0, dtype=torch.float32).unsqueeze(1)
    clean = TF.resize(clean, [24, 24], antialias=True).clamp(0, 1)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(clean.shape, generator=g)
    noisy = torch.where(noise < 0.05, 0.0, torch.where(noise > 0.95, 1.0, clean))
    ds = Dataset(x=noisy, y=torch.zeros(50, dtype=torch.int64), classes=["a"], modality="image")
    out = run("denoise", ds, {"method": "median"})
    before, after = (noisy - clean).abs().mean(), (out - clean).abs().mean()
    assert after < 0.6 * before


@pytest.mark.parametrize("k, sigma", [(5, 1.2), (3, 0.0), (7, 2.0)])
def test_gaussian_matches_scipy(k, sigma):
    from scipy import ndimage

    ds = images()
    s = sigma or 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    expected = ndimage.gaussian_filter(ds.x.double().numpy(), sigma=(0, 0, s, s), mode="mirror",
                                       truncate=(k // 2) / s)
    out = run("denoise", ds, {"method": "gaussian", "kernel_size": k, "sigma": sigma})
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("name, params", [("denoise", {"method": "gaussian", "kernel_size": 5}),
                                          ("denoise", {"method": "median"}), ("resize", {"size": 7})])
def test_work_is_done_in_bounded_chunks_of_rows(name, params, monkeypatch):
    # The page promises bounded chunks; the Gaussian filter once padded and filtered all rows at once.
    from setforge.plugins.preprocess import image

    ds = images(n=10)
    whole = run(name, ds, params)
    monkeypatch.setattr(image, "_CHUNK_VALUES", 4000)  # one to three rows of work
    seen: list[int] = []
    chunks = image._chunks

    def counting(x, values_per_row, fn):
        return chunks(x, values_per_row, lambda part: (seen.append(part.shape[0]), fn(part))[1])

    monkeypatch.setattr(image, "_chunks", counting)
    chunked = run(name, ds, params)
    assert seen and max(seen) < 10 and sum(seen) == 10
    torch.testing.assert_close(chunked, whole, atol=0, rtol=0)


def test_outputs_stay_in_unit_range_and_tiny_images_work():
    ds = images(h=3, w=3)
    for name, params in [("resize", {"size": 9, "interpolation": "bicubic"}), ("denoise", {"kernel_size": 7}),
                         ("denoise", {"method": "gaussian", "kernel_size": 7})]:
        out = run(name, ds, params)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_even_kernel_is_rejected():
    with pytest.raises(ConfigError, match="kernel_size must be odd"):
        create("preprocess", "denoise", {"kernel_size": 4})


@pytest.mark.parametrize("cls, params", [(Resize, {"size": [12, 10]}), (CenterCrop, {"size": 6}), (ToGrayscale, None),
                                         (ToRGB, None), (Denoise, {"method": "gaussian"}), (Denoise, None)])
def test_conformance(cls, params):
    check_component(cls, params)
