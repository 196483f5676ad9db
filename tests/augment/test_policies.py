"""Policies drawn per row: agreement with torchvision's op definitions, frequencies, per-row draws."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2 as T
from scipy import stats
from torchvision.transforms.v2 import AutoAugmentPolicy, InterpolationMode

from setforge import ConfigError, create
from setforge.plugins.augment import policies as P

from ._helpers import smooth_images

POLICIES = [("auto-augment", {"policy": "imagenet"}), ("auto-augment", {"policy": "cifar10"}),
            ("auto-augment", {"policy": "svhn"}), ("rand-augment", {}), ("trivial-augment", {}), ("aug-mix", {})]
IDS = ["aa-imagenet", "aa-cifar10", "aa-svhn", "rand-augment", "trivial-augment", "aug-mix"]


def _reference(interpolation: str) -> T.RandAugment:
    return T.RandAugment(interpolation=InterpolationMode(interpolation))


def _ref_op(ref, image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    return ref._apply_image_or_video_transform(image, name, magnitude, interpolation=ref.interpolation,
                                               fill=ref._fill)


def _magnitudes(name: str) -> list[float]:
    if name == "Posterize":
        return [0.0, 3.0, 6.0]
    if name == "Solarize":
        return [0.0, 0.4, 1.0]
    if name in P._GEOMETRIC:
        return [0.25, -0.9, 3.7, -7.6]  # not m = odd / odd: see below
    return [0.25, -0.2, -0.9, 0.9]


# Every op, at several magnitudes, computes torchvision's op on float images. Bilinear warps and the
# colour ops agree to float rounding (< 1e-5: the warp matrix is built in float32 per row where
# torchvision builds it in float64 once). With nearest resampling, a source coordinate that falls
# exactly half-way between two pixels (shear 0.2 at the pixel centre 2.5 rows down is 0.5) is a tie
# that float rounding breaks either way. A shear m moves row centre i + 0.5 by m (2 i + 1) / 2,
# which is half-way only if m (2 i + 1) is odd: never for m = a / b with b even (a odd), which is
# why the magnitudes above are 1/4, 9/10, 37/10, 38/5.
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("name", P.OPS)
def test_each_op_matches_torchvision(name, interpolation):
    x = smooth_images(3, height=20, width=24)
    ref = _reference(interpolation)
    aug = P.RandAugment({"interpolation": interpolation})
    for magnitude in _magnitudes(name):
        op = torch.full((3, 1), P._INDEX[name])
        ours = aug._slots(x, op, torch.full((3, 1), magnitude))
        refs = torch.stack([_ref_op(ref, row, name, magnitude) for row in x])
        torch.testing.assert_close(ours, refs, rtol=0, atol=1e-5, msg=f"{name} {magnitude}")


def _replayed_in_torchvision(aug, x: torch.Tensor, i: int) -> torch.Tensor:
    """Row `i` of `x` through the (op, magnitude) sequence `aug` drew for it, by torchvision's ops."""
    drawn = aug.last_params
    ref = _reference(aug.params.interpolation)
    if aug.name == "aug-mix":
        width = aug.params.mixture_width
        ops, mags = drawn["op"][i].view(width, -1), drawn["magnitude"][i].view(width, -1)
        expected = drawn["weights"][i, 0] * x[i]
        for c in range(width):
            chain = x[i]
            for op, magnitude in zip(ops[c].tolist(), mags[c].tolist()):
                chain = _ref_op(ref, chain, P.OPS[op], magnitude)
            expected = expected + drawn["weights"][i, c + 1] * chain
        return expected
    expected = x[i]
    for op, magnitude in zip(drawn["op"][i].tolist(), drawn["magnitude"][i].tolist()):
        expected = _ref_op(ref, expected, P.OPS[op], magnitude)
    return expected


@pytest.mark.parametrize("name,params", POLICIES, ids=IDS)
def test_a_whole_policy_replays_row_by_row_in_torchvision(name, params):
    # the drawn (op, magnitude) of every row, applied by torchvision one row at a time, gives our batch
    x = smooth_images(16, height=16, width=16, seed=3)
    aug = create("augment", name, params)
    out = aug(x, generator=torch.Generator().manual_seed(0))
    for i in range(len(x)):
        differ = (out[i] - _replayed_in_torchvision(aug, x, i)).abs() > 1e-4
        # nearest ties (see above) may move a few pixels; bilinear (aug-mix) agrees everywhere
        assert float(differ.float().mean()) <= (0.0 if name == "aug-mix" else 0.1), (name, i)


# The edges of what a batch can be: one channel, non-square, a batch of one, the first and the last
# magnitude bin (RandAugment's bin 30 of 31 solarizes at 0: every pixel inverted). Bilinear, so every
# pixel must agree with torchvision.
EDGES = [((2, 1, 9, 17), "rand-augment", {"num_ops": 4}), ((1, 3, 13, 7), "trivial-augment", {}),
         ((3, 1, 8, 8), "aug-mix", {"severity": 10, "chain_depth": 3}), ((1, 1, 12, 10), "auto-augment", {"policy": "svhn"}),
         ((6, 3, 10, 12), "rand-augment", {"magnitude": 0}), ((6, 3, 10, 12), "rand-augment", {"magnitude": 30})]


@pytest.mark.parametrize("shape,name,params", EDGES, ids=[f"{n}-{i}" for i, (_, n, _) in enumerate(EDGES)])
def test_edge_shapes_and_magnitudes_replay_in_torchvision(shape, name, params):
    n, channels, height, width = shape
    x = smooth_images(n, channels=channels, height=height, width=width, seed=4)
    aug = create("augment", name, {**params, "interpolation": "bilinear"})
    for seed in range(3):
        out = aug(x, generator=torch.Generator().manual_seed(seed))
        for i in range(n):
            torch.testing.assert_close(out[i], _replayed_in_torchvision(aug, x, i), rtol=0, atol=1e-5)


def test_a_channels_last_batch_through_every_op():
    # (NHWC data permuted to NCHW is channels-last in memory: equalize flattened it with view)
    x = smooth_images(len(P.OPS), height=10, width=12)
    op = torch.arange(len(P.OPS)).view(-1, 1)
    params = {"op": op, "level": torch.zeros_like(op), "magnitude": torch.full((len(P.OPS), 1), 0.5),
              "apply": torch.ones(len(P.OPS), dtype=torch.bool)}
    aug = create("augment", "rand-augment", {"num_ops": 1})
    for rows in (op.flatten(), torch.full((4,), P._INDEX["Equalize"])):  # each op a row; every row one op
        batch = x[rows]
        taken = {k: v[rows] if k != "apply" else v[:len(rows)] for k, v in params.items()}
        out = aug(batch.contiguous(memory_format=torch.channels_last), params=taken)
        assert torch.equal(out, aug(batch, params=taken))


def test_no_ops_leave_the_batch_as_it_is():
    x = smooth_images(4)
    assert torch.equal(create("augment", "rand-augment", {"num_ops": 0})(x, generator=torch.Generator()), x)


@pytest.mark.parametrize("name,params", POLICIES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_kept(name, params, dtype):
    # float64 computes what float32 does (bilinear: no tie to break); half precision keeps its dtype and [0, 1]
    x = smooth_images(8, height=12, width=12, seed=6)
    aug = create("augment", name, {**params, "interpolation": "bilinear"})
    expected = aug(x, generator=torch.Generator().manual_seed(0))
    out = aug(x.to(dtype), params=aug.last_params)
    assert out.dtype == dtype and bool(torch.isfinite(out).all()) and 0.0 <= float(out.min()) <= float(out.max()) <= 1.0
    if dtype == torch.float64:
        torch.testing.assert_close(out.float(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,params", POLICIES, ids=IDS)
def test_64_copies_of_one_image_are_drawn_row_by_row(name, params):
    image = smooth_images(1, height=24, width=24, seed=5)[0] * 0.9 + 0.05
    batch = image.expand(64, *image.shape).contiguous()
    aug = create("augment", name, params)
    out = aug(batch, generator=torch.Generator().manual_seed(0))
    distinct = len(torch.unique(out.flatten(1), dim=0))
    drawn = aug.last_params
    if name == "aug-mix":
        assert distinct == 64  # continuous mixing weights: every row its own image
        return
    # The discrete policies have few outcomes: a row whose ops are all off (AutoAugment) or Identity
    # is the image itself, and equal draws give equal images. So count what the rows drew: rows
    # with different effective draws must give different images (nothing is shared between rows).
    keys = set()
    for ops, mags in zip(drawn["op"].tolist(), drawn["magnitude"].tolist()):
        keys.add(tuple((o, round(m, 6)) for o, m in zip(ops, mags) if P.OPS[o] != "Identity"
                       and not (P.OPS[o] in P._GEOMETRIC + ("Brightness", "Color", "Contrast", "Sharpness")
                                and m == 0.0)))
    # a few different draws may coincide on this image (ops that commute, autocontrast of a stretched
    # image, equalize twice): allow 15% of them
    assert distinct >= 0.85 * len(keys)
    # and far more than a batch sharing one draw (kornia: 3 distinct for AutoAugment, 24 RandAugment)
    assert distinct >= {"auto-augment": 15, "rand-augment": 45, "trivial-augment": 35}[name]


# The frequency tests below draw from setforge's own tables (`P.SPACES`, `P._AUTO_POLICIES`); so that
# they test torchvision's definitions, the tables themselves are compared with torchvision's here.
_TORCHVISION_SPACES = {"auto-augment": T.AutoAugment._AUGMENTATION_SPACE,
                       "rand-augment": T.RandAugment._AUGMENTATION_SPACE,
                       "trivial-augment": T.TrivialAugmentWide._AUGMENTATION_SPACE,
                       "aug-mix": T.AugMix._AUGMENTATION_SPACE}


@pytest.mark.parametrize("name", list(_TORCHVISION_SPACES))
def test_op_spaces_are_torchvisions(name):
    reference = _TORCHVISION_SPACES[name]
    assert set(P.SPACES[name]) == set(reference)
    for bins, height, width in [(10, 32, 32), (31, 20, 24), (2, 7, 13), (1000, 224, 300)]:
        table, signed = P.magnitude_table(P.SPACES[name], bins, height, width, torch.device("cpu"))
        for op, (magnitudes, sign) in reference.items():
            expected = magnitudes(bins, height, width)
            expected = torch.zeros(bins) if expected is None else expected.float()
            assert bool(signed[P._INDEX[op]]) == sign, (op, "sign")
            assert torch.equal(table[P._INDEX[op]], expected), (op, bins, height, width)
    if name == "aug-mix":
        assert set(P._AUGMIX_PARTIAL) == set(T.AugMix._PARTIAL_AUGMENTATION_SPACE)


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_auto_augment_policies_are_torchvisions(policy):
    assert P._AUTO_POLICIES[policy] == T.AutoAugment(AutoAugmentPolicy(policy))._policies


def _check_signs(drawn: dict, name: str) -> None:
    """Unsigned ops are never negated; a signed op's non-zero magnitude is negated with probability 1/2."""
    signed_ops = torch.tensor([P.SPACES[name].get(o, (None, False))[1] for o in P.OPS])[drawn["op"]]
    magnitude = drawn["magnitude"]
    assert not bool((magnitude[~signed_ops] < 0).any())
    nonzero = signed_ops & (magnitude != 0)
    assert int(nonzero.sum()) > 1000
    assert stats.binomtest(int((magnitude[nonzero] < 0).sum()), int(nonzero.sum()), 0.5).pvalue > 1e-3


def _chi2(counts: torch.Tensor, expected: torch.Tensor) -> float:
    counts, expected = counts.double(), expected.double()
    expected = expected / expected.sum() * counts.sum()
    return float(stats.chisquare(counts.numpy(), expected.numpy()).pvalue)


N = 40000


def _draw(name: str, params: dict, size: int = 32):
    aug = create("augment", name, params)
    x = torch.zeros(N, 3, size, size)
    return aug, aug._make_params(x, None, torch.Generator().manual_seed(7))


# Frequencies follow each policy's definition: a chi-square test per drawn quantity, at 1e-3 (fixed
# seed: the test is deterministic; a wrong table shows p-values of ~0 with 40,000 rows).
@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_auto_augment_frequencies(policy):
    _, drawn = _draw("auto-augment", {"policy": policy})
    table = P._AUTO_POLICIES[policy]
    sub = drawn["subpolicy"]
    assert _chi2(torch.bincount(sub, minlength=25), torch.ones(25)) > 1e-3
    for s in range(2):
        prob = torch.tensor([t[s][1] for t in table], dtype=torch.float64)
        on = torch.tensor([P.OPS[int(o)] != "Identity" for o in drawn["op"][:, s]])
        for k in range(25):
            rows = sub == k
            n_on = int(on[rows].sum())
            assert stats.binomtest(n_on, int(rows.sum()), float(prob[k])).pvalue > 1e-3, (k, s)
            expected_op = P._INDEX[table[k][s][0]]
            assert bool((drawn["op"][rows & on, s] == expected_op).all())
            # the sub-policy's own magnitude bin (of 10), -1 for ops without one
            expected_level = -1 if table[k][s][2] is None else table[k][s][2]
            assert bool((drawn["level"][rows & on, s] == expected_level).all()), (k, s)
    magnitudes, _ = P.magnitude_table(P.SPACES["auto-augment"], 10, 32, 32, torch.device("cpu"))
    assert torch.equal(drawn["magnitude"].abs(), magnitudes[drawn["op"], drawn["level"].clamp(min=0)])
    _check_signs(drawn, "auto-augment")


def test_rand_augment_frequencies():
    _, drawn = _draw("rand-augment", {"num_ops": 3, "magnitude": 12})
    space = list(P.SPACES["rand-augment"])
    counts = torch.bincount(drawn["op"].flatten(), minlength=len(P.OPS))[[P._INDEX[n] for n in space]]
    assert _chi2(counts, torch.ones(len(space))) > 1e-3
    table, signed = P.magnitude_table(P.SPACES["rand-augment"], 31, 32, 32, torch.device("cpu"))
    assert torch.equal(drawn["magnitude"].abs(), table[drawn["op"], 12])
    assert bool((drawn["level"][drawn["level"] >= 0] == 12).all())
    _check_signs(drawn, "rand-augment")


def test_trivial_augment_frequencies():
    _, drawn = _draw("trivial-augment", {})
    space = list(P.SPACES["trivial-augment"])
    counts = torch.bincount(drawn["op"].flatten(), minlength=len(P.OPS))[[P._INDEX[n] for n in space]]
    assert _chi2(counts, torch.ones(len(space))) > 1e-3
    level = drawn["level"][drawn["level"] >= 0]
    assert _chi2(torch.bincount(level, minlength=31), torch.ones(31)) > 1e-3
    table, _ = P.magnitude_table(P.SPACES["trivial-augment"], 31, 32, 32, torch.device("cpu"))
    has = drawn["level"] >= 0
    assert torch.equal(drawn["magnitude"].abs()[has], table[drawn["op"][has], drawn["level"][has]])
    _check_signs(drawn, "trivial-augment")


def test_aug_mix_frequencies():
    aug, drawn = _draw("aug-mix", {"severity": 4, "alpha": 0.7, "all_ops": False})
    width = aug.params.mixture_width
    assert _chi2(torch.bincount(drawn["depth"].flatten(), minlength=4)[1:], torch.ones(3)) > 1e-3
    ops = drawn["op"].view(N, width, 3)
    real = ops[ops != P._INDEX["Identity"]]
    assert int(real.numel()) == int(drawn["depth"].sum())  # exactly `depth` ops per chain
    counts = torch.bincount(real, minlength=len(P.OPS))[[P._INDEX[n] for n in P._AUGMIX_PARTIAL]]
    assert counts.sum() == real.numel() and _chi2(counts, torch.ones(len(P._AUGMIX_PARTIAL))) > 1e-3
    level = drawn["level"][drawn["level"] >= 0]
    assert _chi2(torch.bincount(level, minlength=4), torch.ones(4)) > 1e-3
    weights = drawn["weights"].double()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(N, dtype=torch.float64))
    # the original's weight is Beta(alpha, alpha): ten equiprobable bins of that law
    edges = torch.tensor(stats.beta(0.7, 0.7).ppf([i / 10 for i in range(1, 10)]))
    bins = torch.bucketize(weights[:, 0].contiguous(), edges)
    assert _chi2(torch.bincount(bins, minlength=10), torch.ones(10)) > 1e-3
    # the chains' shares of the rest are Dirichlet(alpha, ..., alpha): each share is Beta(alpha, (width - 1) alpha)
    shares = weights[:, 1:] / weights[:, 1:].sum(dim=1, keepdim=True)
    edges = torch.tensor(stats.beta(0.7, 0.7 * (width - 1)).ppf([i / 10 for i in range(1, 10)]))
    for chain in range(width):
        bins = torch.bucketize(shares[:, chain].contiguous(), edges)
        assert _chi2(torch.bincount(bins, minlength=10), torch.ones(10)) > 1e-3, chain
    _check_signs(drawn, "aug-mix")


def test_bad_params_are_refused_at_validate():
    with pytest.raises(ConfigError, match="num_magnitude_bins"):
        create("augment", "rand-augment", {"magnitude": 31})
    with pytest.raises(ConfigError, match="policy"):
        create("augment", "auto-augment", {"policy": "mnist"})
    with pytest.raises(ConfigError, match="chain_depth"):
        create("augment", "aug-mix", {"chain_depth": 0})
    with pytest.raises(ConfigError, match=r"params.fill: .*one value, or one per channel"):
        create("augment", "rand-augment", {"fill": []})


@pytest.mark.parametrize("name", ["auto-augment", "rand-augment", "trivial-augment", "aug-mix"])
def test_a_fill_per_channel_must_match_the_images_whatever_op_is_drawn(name):
    from setforge import DataError, create

    gray = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        with pytest.raises(DataError, match="fill has 3 values for images with 1 channels"):
            create("augment", name, {"fill": (0.1, 0.2, 0.3)})(gray, generator=torch.Generator().manual_seed(seed))
