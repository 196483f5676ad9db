"""flip, affine, resized-crop: agreement with torchvision, per-row draws, fusion inside a Chain."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms.v2 import InterpolationMode

from setforge import ConfigError
from setforge.chain import Chain
from setforge.plugins.augment._warp import inside_weight, make_grid, warp
from setforge.plugins.augment.color import Color
from setforge.plugins.augment.geometric import Affine, Flip, ResizedCrop
from setforge.plugins.augment.pixel import Invert

from ._helpers import assert_rows_independent, fixed, smooth_images

# Coordinates are computed in float32 on both sides (torchvision from a float64 matrix, we from a
# float32 one): about 1e-6 relative, i.e. < 1e-4 pixel on these sizes; a bilinear sample moves by at
# most (largest neighbour difference <= 1) x (coordinate error), so 1e-4 bounds the difference.
BILINEAR_TOL = 1e-4

AFFINE_CASES = [  # angle, translate x, translate y, scale, shear x, shear y
    (30.0, 2.0, -3.0, 1.2, 10.0, 5.0),
    (0.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    (-77.0, 1.5, 0.5, 0.7, 0.0, -20.0),
    (180.0, -4.0, 2.0, 0.9, 30.0, 0.0),
]


def affine_params(n: int, case: tuple[float, ...]) -> dict[str, torch.Tensor]:
    keys = ("angle", "translate_x", "translate_y", "scale", "shear_x", "shear_y")
    return fixed(n, **{k: float(v) for k, v in zip(keys, case)})


# ------------------------------------------------------------------------------ agreement
@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_flip_is_torchvision_flip(direction):
    x = smooth_images()
    out = Flip({"direction": direction})(x, params=fixed(3))
    ref = TF.horizontal_flip(x) if direction == "horizontal" else TF.vertical_flip(x)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("case", AFFINE_CASES)
def test_affine_bilinear_matches_torchvision(case):
    x = smooth_images()
    out = Affine({"interpolation": "bilinear"})(x, params=affine_params(3, case))
    angle, tx, ty, scale, shx, shy = case
    ref = TF.affine(x, angle=angle, translate=[tx, ty], scale=scale, shear=[shx, shy],
                    interpolation=InterpolationMode.BILINEAR, fill=None)
    assert (out - ref).abs().max() < BILINEAR_TOL


@pytest.mark.parametrize("case", AFFINE_CASES)
def test_affine_nearest_with_fill_matches_torchvision(case):
    x = smooth_images()
    out = Affine({"interpolation": "nearest", "fill": (0.2, 0.5, 0.9)})(x, params=affine_params(3, case))
    angle, tx, ty, scale, shx, shy = case
    ref = TF.affine(x, angle=angle, translate=[tx, ty], scale=scale, shear=[shx, shy],
                    interpolation=InterpolationMode.NEAREST, fill=[0.2, 0.5, 0.9])
    # nearest rounds the source coordinate; where it lies on a half-pixel tie (within float error)
    # the two may round different ways: every differing pixel must sit on such a tie
    grid = make_grid(Affine()._matrix(affine_params(3, case), 20, 24), 20, 24)
    source = torch.stack([(grid[..., 0] + 1) * 12 - 0.5, (grid[..., 1] + 1) * 10 - 0.5], dim=-1)
    on_tie = ((source - source.floor() - 0.5).abs() < 1e-4).any(dim=-1)
    differs = (out != ref).any(dim=1)
    assert bool(on_tie[differs].all())


def test_affine_bilinear_fill_blends_once():
    """Inside: torchvision's values; outside: exactly the fill; the edge band: sample + (1 - w) fill,
    where torchvision's ``sample * w + (1 - w) fill`` counts the zero padding twice."""
    x = smooth_images()
    params = affine_params(3, (25.0, 3.0, -2.0, 0.8, 0.0, 0.0))
    out = Affine({"fill": 0.7})(x, params=params)
    plain = TF.affine(x, angle=25.0, translate=[3.0, -2.0], scale=0.8, shear=[0.0, 0.0],
                      interpolation=InterpolationMode.BILINEAR, fill=None)
    weight = TF.affine(torch.ones_like(x[:, :1]), angle=25.0, translate=[3.0, -2.0], scale=0.8, shear=[0.0, 0.0],
                       interpolation=InterpolationMode.BILINEAR, fill=None)
    expected = plain + (1 - weight) * 0.7
    assert (out - expected).abs().max() < BILINEAR_TOL
    assert torch.allclose(out[:, :, 0, 0], torch.full((3, 3), 0.7))  # a corner far outside the rotated image
    inside = (weight == 1).expand_as(out)
    tv = TF.affine(x, angle=25.0, translate=[3.0, -2.0], scale=0.8, shear=[0.0, 0.0],
                   interpolation=InterpolationMode.BILINEAR, fill=0.7)
    assert (out - tv)[inside].abs().max() < BILINEAR_TOL


def resize_band(size: int, box: int) -> int:
    """Output pixels at each end whose bilinear source lies beyond the box's outer pixel centres."""
    return sum(1 for u in range(size) if (u + 0.5) * box / size - 0.5 < 0)


@pytest.mark.parametrize("box", [(3, 5, 10, 12), (0, 0, 20, 13), (6, 11, 14, 13), (0, 2, 7, 22)])
def test_resized_crop_matches_torchvision_inside_the_box(box):
    x = smooth_images()
    top, left, height, width = box
    out = ResizedCrop()(x, params=fixed(3, top=float(top), left=float(left), height=float(height), width=float(width)))
    ref = TF.resized_crop(x, top, left, height, width, [20, 24], interpolation=InterpolationMode.BILINEAR,
                          antialias=True)
    band_y, band_x = resize_band(20, height), resize_band(24, width)
    inner = (out - ref)[..., band_y:20 - band_y, band_x:24 - band_x]
    assert inner.abs().max() < BILINEAR_TOL
    # where the box touches the image's own edge both repeat the edge pixel: equal there too
    if top == 0 and band_y:
        assert (out - ref)[..., :band_y, band_x:24 - band_x].abs().max() < BILINEAR_TOL
    if left == 0 and band_x:
        assert (out - ref)[..., band_y:20 - band_y, :band_x].abs().max() < BILINEAR_TOL
    # elsewhere in the band we read the pixel beyond the box where torchvision repeats the box's
    # edge: a blend of neighbours, so within the local pixel range of the image
    assert (out - ref).abs().max() < 0.25


def test_resized_crop_nearest_is_nearest_exact():
    x = smooth_images()
    out = ResizedCrop({"interpolation": "nearest"})(x, params=fixed(3, top=4.0, left=3.0, height=9.0, width=11.0))
    ref = TF.resized_crop(x, 4, 3, 9, 11, [20, 24], interpolation=InterpolationMode.NEAREST_EXACT)
    assert (out != ref).float().mean() < 0.005


def test_make_grid_equals_affine_grid():
    matrix = torch.eye(3).repeat(5, 1, 1)
    matrix[:, :2] += 0.3 * torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(make_grid(matrix, 7, 9), F.affine_grid(matrix[:, :2], [5, 1, 7, 9], align_corners=False),
                          atol=1e-6)


# ------------------------------------------------------------------------ per-row draws
@pytest.mark.parametrize("aug", [Affine({"degrees": 30, "translate": 0.2, "scale": (0.7, 1.3), "shear": 10}),
                                 ResizedCrop()], ids=lambda a: a.name)
def test_rows_draw_their_own_geometry(aug):
    assert_rows_independent(aug, smooth_images(1)[0])


def test_flip_gate_is_drawn_per_row():
    x = smooth_images(1).expand(400, -1, -1, -1).contiguous()
    out = Flip()(x, generator=torch.Generator().manual_seed(0))
    flipped = (out - x).flatten(1).abs().amax(dim=1) > 0
    assert 150 < int(flipped.sum()) < 250  # p = 0.5 per row
    assert torch.equal(out[flipped], x[flipped].flip(-1))


def test_affine_draws_follow_the_ranges():
    aug = Affine({"degrees": 20, "translate": (0.1, 0.25), "scale": (0.8, 1.2), "shear": (-5, 5, 2, 4)})
    params = aug.make_params(torch.zeros(2000, 1, 10, 40), None, torch.Generator().manual_seed(0))
    for key, low, high in [("angle", -20, 20), ("translate_x", -4, 4), ("translate_y", -2.5, 2.5),
                           ("scale", 0.8, 1.2), ("shear_x", -5, 5), ("shear_y", 2, 4)]:
        values = params[key]
        assert low <= float(values.min()) and float(values.max()) <= high
        assert float(values.min()) < low + 0.05 * (high - low) and float(values.max()) > high - 0.05 * (high - low)


def test_resized_crop_boxes_follow_the_ranges():
    aug = ResizedCrop({"scale": (0.2, 0.6), "ratio": (0.5, 2.0)})
    params = aug.make_params(torch.zeros(3000, 1, 40, 50), None, torch.Generator().manual_seed(0))
    top, left, height, width = params["top"], params["left"], params["height"], params["width"]
    assert bool((top >= 0).all() and (left >= 0).all() and (top + height <= 40).all() and (left + width <= 50).all())
    area = height * width / 2000
    assert 0.2 - 1e-5 < float(area.min()) and float(area.max()) < 0.6 + 1e-5
    ratio = width / height
    assert 0.5 - 1e-5 < float(ratio.min()) and float(ratio.max()) < 2.0 + 1e-5
    assert len(set(width.tolist())) > 2900  # boxes are not rounded to whole pixels


@pytest.mark.parametrize("height,width,scale,ratio", [
    (50, 50, (0.9, 1.0), (2.0, 3.0)),  # every try too wide: the ratio clamped to 2
    (50, 50, (0.9, 1.0), (0.3, 0.5)),  # too tall: clamped to 0.5
    (40, 60, (0.99, 1.0), (1.0, 1.0)),  # non-square, clamped to 1
    (40, 60, (1.0, 1.0), (2.0, 3.0)),  # non-square, wider than any try can be: clamped to 2
    # (not (1.4, 1.6), the image's own 1.5 within the range: some tries fit, and torchvision draws
    # them from the global generator, so the test passed or failed by chance)
])
def test_resized_crop_falls_back_to_torchvisions_centre_box(height, width, scale, ratio):
    """When none of the ten tries fits, the box is RandomResizedCrop's fallback: its size (whole
    pixels here), centred exactly where torchvision rounds the corner down to a whole pixel."""
    from torchvision.transforms import RandomResizedCrop

    params = ResizedCrop({"scale": scale, "ratio": ratio}).make_params(
        torch.zeros(64, 1, height, width), None, torch.Generator().manual_seed(0))
    top, left, box_height, box_width = RandomResizedCrop.get_params(torch.zeros(1, height, width), list(scale),
                                                                    list(ratio))
    assert torch.equal(params["height"], torch.full((64,), float(box_height)))
    assert torch.equal(params["width"], torch.full((64,), float(box_width)))
    assert top == (height - box_height) // 2 and left == (width - box_width) // 2
    assert torch.equal(params["top"], torch.full((64,), (height - box_height) / 2))
    assert torch.equal(params["left"], torch.full((64,), (width - box_width) / 2))


def test_range_convention_and_errors():
    params = Affine.parse_params({"degrees": 15, "scale": 1.1})
    assert params.degrees == (-15.0, 15.0) and params.scale == (1.1, 1.1)
    assert Affine.parse_params({"degrees": [-5, 30]}).degrees == (-5.0, 30.0)
    for bad, place in [({"degrees": -3}, "degrees"), ({"degrees": [10, 5]}, "degrees"), ({"translate": 1.5}, "translate"),
                       ({"shear": [20, 10]}, "shear"), ({"fill": 2.0}, "fill"), ({"scale": 0}, "scale"),
                       ({"interpolation": "bicubic"}, "interpolation")]:
        with pytest.raises(ConfigError) as error:
            Affine(bad)
        assert f"params.{place}" in str(error.value)


# --------------------------------------------------------------------------------- fusion
def count_samplings(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = F.grid_sample

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "grid_sample", counting)
    return calls


def test_chain_groups_consecutive_geometric_ops():
    chain = Chain([Flip(), Affine(), Color(), ResizedCrop(), Flip(), Affine(), Affine({"interpolation": "nearest"}),
                   Affine({"interpolation": "nearest"}), Invert()])
    assert chain.runs == [[0, 1], [2], [3, 4], [5], [6, 7], [8]]


def test_flip_then_affine_is_one_resampling_equal_to_torchvision(monkeypatch):
    x = smooth_images(4)
    chain = Chain([Flip({"p": 1.0}), Affine()])
    params = chain.make_params(x, None, torch.Generator().manual_seed(3))
    calls = count_samplings(monkeypatch)
    out = chain(x, params=params)
    assert calls == [4]
    a = params["1"]
    for i in range(4):
        ref = TF.affine(TF.horizontal_flip(x[i]), angle=float(a["angle"][i]),
                        translate=[float(a["translate_x"][i]), float(a["translate_y"][i])],
                        scale=float(a["scale"][i]), shear=[float(a["shear_x"][i]), float(a["shear_y"][i])],
                        interpolation=InterpolationMode.BILINEAR, fill=None)
        assert (out[i] - ref).abs().max() < BILINEAR_TOL


def test_fusion_respects_each_ops_gate():
    x = smooth_images(64)
    chain = Chain([Flip({"p": 0.5}), Affine({"p": 0.5})])
    params = chain.make_params(x, None, torch.Generator().manual_seed(0))
    out = chain(x, params=params)
    flip, affine = params["0"]["apply"], params["1"]["apply"]
    assert 0 < int((flip & affine).sum()) and 0 < int((~flip & ~affine).sum())
    assert 0 < int((flip & ~affine).sum()) and 0 < int((~flip & affine).sum())
    untouched = ~flip & ~affine
    assert torch.equal(out[untouched], x[untouched])  # rows no op moves are not resampled at all
    only_flip = flip & ~affine
    assert (out[only_flip] - x[only_flip].flip(-1)).abs().max() < 1e-5
    affine_alone = Affine()(x, params=params["1"])
    only_affine = ~flip & affine
    assert (out[only_affine] - affine_alone[only_affine]).abs().max() < 1e-5
    both = flip & affine
    assert (out[both] - Affine()(x.flip(-1), params=params["1"])[both]).abs().max() < 1e-5


def test_two_affines_fuse_into_the_product_and_stay_sharper(monkeypatch):
    x = smooth_images(6, height=32, width=32)
    first, second = Affine({"degrees": 20, "scale": (1.0, 1.2)}), Affine({"degrees": 20, "scale": (1.0, 1.2)})
    chain = Chain([first, second])
    params = chain.make_params(x, None, torch.Generator().manual_seed(1))
    calls = count_samplings(monkeypatch)
    fused = chain(x, params=params)
    assert len(calls) == 1
    later = second._matrix(params["1"], 32, 32)
    product = torch.bmm(first._matrix(params["0"], 32, 32), later)
    # the product's warp, with zero (the fill) where the second reads outside the first's output
    assert (fused - warp(x, product) * inside_weight(later, 32, 32)).abs().max() < 1e-6
    sequential = second(first(x, params=params["0"]), params=params["1"])
    centre = (slice(None), slice(None), slice(10, 22), slice(10, 22))
    difference = (fused - sequential)[centre].abs()
    assert float(difference.mean()) < 0.02  # the same geometry ...
    assert float(fused[centre].std()) >= float(sequential[centre].std())  # ... resampled once, so no softer


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_what_an_earlier_affine_pushes_out_of_the_image_stays_out_when_fused(interpolation):
    """(The fused warp read the batch through the product alone: a zoom in then out gave the whole
    image back, where one op after the other the border the first cut off is gone and the second
    fills it; at the defaults 3 % of two affines' pixels showed image where the fill belongs.)"""
    x = smooth_images(4, height=24, width=32)
    still = {"degrees": 0, "translate": 0, "fill": 0.3, "interpolation": interpolation}
    zoom_in, zoom_out = Affine({**still, "scale": 2.0}), Affine({**still, "scale": 0.5})
    chain = Chain([zoom_in, Flip({"p": 1.0}), zoom_out])
    assert chain.runs == [[0, 1, 2]]
    params = chain.make_params(x, None, torch.Generator().manual_seed(0))
    params["2"]["apply"][1] = False  # row 1: zoomed in only, nothing to fill
    params["0"]["apply"][2] = False  # row 2: zoomed out only, the fill comes from the batch's own edge
    fused = chain(x, params=params)
    sequential = zoom_out(Flip()(zoom_in(x, params=params["0"]), params=params["1"]), params=params["2"])
    border = torch.ones(24, 32, dtype=torch.bool)
    border[6:18, 8:24] = False  # (zoomed back, the image covers the centre half of each axis)
    for row in (0, 2, 3):
        assert bool((sequential[row][:, border] == 0.3).all())
        assert (fused[row][:, border] - 0.3).abs().max() < 1e-6
    assert (fused - sequential).abs().max() < (0.05 if interpolation == "bilinear" else 0.2)  # resampled once


def test_different_sampling_does_not_fuse(monkeypatch):
    x = smooth_images(2)
    chain = Chain([ResizedCrop(), Affine()])
    calls = count_samplings(monkeypatch)
    chain(x, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2


def test_flip_pair_is_identity_when_fused():
    x = smooth_images(3)
    out = Chain([Flip({"p": 1.0}), Flip({"p": 1.0})])(x, generator=torch.Generator().manual_seed(0))
    assert (out - x).abs().max() < 1e-5


def test_vertical_then_horizontal_flip_fuses_to_half_turn():
    x = smooth_images(3)
    chain = Chain([Flip({"p": 1.0, "direction": "vertical"}), Flip({"p": 1.0}), Affine({"p": 0.0})])
    out = chain(x, generator=torch.Generator().manual_seed(0))
    assert (out - torch.rot90(x, 2, dims=(-2, -1))).abs().max() < 1e-5


def test_fill_must_match_channels():
    from setforge import DataError

    with pytest.raises(DataError, match="fill has 2 values"):
        Affine({"fill": (0.1, 0.2)})(smooth_images(2), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"fill needs one value, or one per channel, in \[0, 1\]; got none"):
        Affine({"fill": []})  # (it said "must lie in [0, 1], got ()")


@pytest.mark.parametrize("aug", [Flip(), Affine(), ResizedCrop()], ids=lambda a: a.name)
def test_a_single_image_is_refused_with_the_shape_wanted(aug):
    """(A (C, H, W) image was taken for C rows: flip mirrored some of its channels and not the
    others, affine and resized-crop failed unpacking the shape.)"""
    from setforge import DataError

    image = smooth_images(1)[0]
    with pytest.raises(DataError, match=rf"augment '{aug.name}' takes a batch of images \(N, C, H, W\), got shape "
                                        r"\(3, 20, 24\) \(one image: x.unsqueeze\(0\)\)"):
        aug(image, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="takes a batch of images"):  # replayed params too
        aug(image, params=fixed(3, **{key: value for key, value in aug.make_params(
            smooth_images(3), None, torch.Generator().manual_seed(0)).items() if key != "apply"}))


def test_affine_keeps_unit_range_and_zero_fill_is_plain_zero_padding():
    x = torch.ones(8, 3, 16, 16)
    out = Affine({"degrees": 45, "scale": (0.5, 0.6)})(x, generator=torch.Generator().manual_seed(0))
    assert float(out.min()) == 0.0 and float(out.max()) <= 1.0
    assert math.isclose(float(out[:, :, 8, 8].min()), 1.0, rel_tol=1e-6)


# ------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_batches_resample_in_float32(dtype):
    """(The grid was built in the image's dtype: at 224 wide an identity warp of bfloat16 moved
    points by up to 0.44 pixel, changing values by up to 1.0, and float16 left [0, 1].) Identity warps
    give the batch back, and a fused chain gives the float32 result rounded to `dtype`."""
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    half = x.to(dtype)
    still = fixed(2, angle=0.0, translate_x=0.0, translate_y=0.0, scale=1.0, shear_x=0.0, shear_y=0.0)
    # (float32's own coordinate error, about 1e-6 of a pixel, can tip the rounding of a value near 0)
    assert (Affine()(half, params=still).float() - half.float()).abs().max() < 1e-4
    whole_box = fixed(2, top=0.0, left=0.0, height=224.0, width=224.0)
    assert (ResizedCrop()(half, params=whole_box).float() - half.float()).abs().max() < 1e-4
    chain = Chain([Flip({"p": 1.0}), Affine({"degrees": 30, "fill": 0.5}), Affine({"degrees": 30, "fill": 0.5})])
    assert chain.runs == [[0, 1, 2]]
    params = chain.make_params(x, None, torch.Generator().manual_seed(1))
    out = chain(half, params=params)
    assert out.dtype == dtype
    # float32 of the same rounded input, then rounded: within one rounding step of `dtype` (plus float32's noise)
    expected = chain(half.float(), params=params)
    assert (out.float() - expected).abs().max() <= torch.finfo(dtype).eps + 1e-5


def test_warp_on_the_cpu_ignores_torchs_default_device():
    # (a training loop's torch.set_default_device: the grid's and the fill channel's scratch
    # memory were made there, and a CPU batch failed with a cross-device error)
    from setforge.plugins.augment._scratch import release

    x = smooth_images(3, height=20, width=24)
    affine = Affine({"fill": 0.5})
    params = affine.make_params(x, None, torch.Generator().manual_seed(0))
    expected = affine(x, params=params)
    release()
    with torch.device("meta"):
        out = affine(x, params=params)
    assert out.device == x.device and torch.equal(out, expected)


@pytest.mark.parametrize("fill", [None, 0.5], ids=["zero-padding", "fill"])
def test_a_large_batch_is_warped_a_piece_at_a_time_with_the_same_bits(monkeypatch, fill):
    # (a batch over PIECE_BYTES goes through in pieces, so that the grid, the fill channel and the
    # sampled rows in flight stay within a piece rather than several times the batch)
    import setforge.plugins.augment._warp as warp_module

    x = smooth_images(7, height=12, width=10)
    matrix = Affine()._matrix(Affine().make_params(x, None, torch.Generator().manual_seed(2)), 12, 10)
    whole = warp(x, matrix, fill=fill)
    calls = []
    sample = warp_module._sample
    monkeypatch.setattr(warp_module, "_sample", lambda source, *a, **k: calls.append(len(source)) or sample(source, *a, **k))
    sampled = x.shape[1] + (fill is not None)  # (the fill's weight is one more channel)
    monkeypatch.setattr(warp_module, "PIECE_BYTES", 3 * sampled * x[0, 0].numel() * 4)  # three rows a piece
    assert torch.equal(warp(x, matrix, fill=fill), whole)
    assert calls == [3, 3, 1]
