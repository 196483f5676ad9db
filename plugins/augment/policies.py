"""Augmentation policies drawn per row: `AutoAugment`, `RandAugment`, `TrivialAugment`, `AugMix`.

The op tables, magnitude bins, probabilities and signs are torchvision's
(``torchvision.transforms.v2._auto_augment``), and each op computes what torchvision's
``_apply_image_or_video_transform`` computes on a float image: shears about the top-left corner
(``center=[0, 0]``), translations truncated to whole pixels (``int(magnitude)``), rotations about
the centre, colour factors ``1 + magnitude``, solarize at ``magnitude`` (float images: bound 1),
posterize at ``int(magnitude)`` bits, one resampling per geometric op (``nearest`` by default, as
torchvision; AugMix ``bilinear``).

What differs is who draws: torchvision draws once per call, so a batch shares one sub-policy;
here **every row draws its own** sub-policy, ops, magnitudes and signs (and, for AugMix, its
own chain depths and mixing weights) from the step's generator. Applying is vectorised: for each
op slot the rows are grouped by the op they drew, every geometric op of the slot runs as one
batched warp (each row its own matrix), and every other op runs once on the sub-batch of rows
that drew it, through setforge's batched ops (`Color`, `Sharpness`, `Posterize`, ...).

Drawn params (leading dimension N): ``op`` (indices into `OPS`, ``Identity`` where a row's op is
off), ``level`` (the magnitude bin, -1 for ops without one), ``magnitude`` (signed value);
``subpolicy`` for AutoAugment; ``depth`` and ``weights`` for AugMix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from setforge.components import Augmenter

from ._warp import inverse_affine_pixels, pixels_to_normalized, warp
from .color import Color, check_channels
from ._ranges import unit_values
from .geometric import check_fill, fill_problems
from .pixel import Autocontrast, Equalize, Invert, Posterize, Sharpness, Solarize

__all__ = ["AutoAugment", "RandAugment", "TrivialAugment", "AugMix", "OPS", "magnitude_table"]

#: Every op a policy can draw, in one fixed order; params hold indices into it.
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
_INDEX = {name: i for i, name in enumerate(OPS)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")

Bins = Callable[[int, int, int], torch.Tensor]


def _linear(top: float | Callable[[int, int], float]) -> Bins:
    return lambda bins, h, w: torch.linspace(0.0, top(h, w) if callable(top) else top, bins)


def _posterize(high: int, span: int) -> Bins:
    return lambda bins, h, w: (high - (torch.arange(bins) / ((bins - 1) / span))).round()


def _solarize(bins: int, h: int, w: int) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, bins)


#: torchvision's spaces: op -> (magnitude bins, signed); None: the op has no magnitude.
_STANDARD: dict[str, tuple[Bins | None, bool]] = {
    "ShearX": (_linear(0.3), True), "ShearY": (_linear(0.3), True),
    "TranslateX": (_linear(lambda h, w: 150.0 / 331.0 * w), True),
    "TranslateY": (_linear(lambda h, w: 150.0 / 331.0 * h), True),
    "Rotate": (_linear(30.0), True),
    "Brightness": (_linear(0.9), True), "Color": (_linear(0.9), True), "Contrast": (_linear(0.9), True),
    "Sharpness": (_linear(0.9), True),
    "Posterize": (_posterize(8, 4), False), "Solarize": (_solarize, False),
    "AutoContrast": (None, False), "Equalize": (None, False),
}
SPACES: dict[str, dict[str, tuple[Bins | None, bool]]] = {
    "auto-augment": {**_STANDARD, "Invert": (None, False)},
    "rand-augment": {"Identity": (None, False), **_STANDARD},
    "trivial-augment": {
        "Identity": (None, False),
        "ShearX": (_linear(0.99), True), "ShearY": (_linear(0.99), True),
        "TranslateX": (_linear(32.0), True), "TranslateY": (_linear(32.0), True),
        "Rotate": (_linear(135.0), True),
        "Brightness": (_linear(0.99), True), "Color": (_linear(0.99), True), "Contrast": (_linear(0.99), True),
        "Sharpness": (_linear(0.99), True),
        "Posterize": (_posterize(8, 6), False), "Solarize": (_solarize, False),
        "AutoContrast": (None, False), "Equalize": (None, False),
    },
    "aug-mix": {
        "ShearX": (_linear(0.3), True), "ShearY": (_linear(0.3), True),
        "TranslateX": (_linear(lambda h, w: w / 3.0), True), "TranslateY": (_linear(lambda h, w: h / 3.0), True),
        "Rotate": (_linear(30.0), True),
        "Posterize": (_posterize(4, 4), False), "Solarize": (_solarize, False),
        "AutoContrast": (None, False), "Equalize": (None, False),
        "Brightness": (_linear(0.9), True), "Color": (_linear(0.9), True), "Contrast": (_linear(0.9), True),
        "Sharpness": (_linear(0.9), True),
    },
}
#: AugMix with ``all_ops: false`` leaves out the four ops that overlap ImageNet-C's corruptions.
_AUGMIX_PARTIAL = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Posterize", "Solarize",
                   "AutoContrast", "Equalize")

# torchvision's AutoAugment policies: sub-policies of two (op, probability, magnitude bin of 10)
_AUTO_POLICIES: dict[str, list[tuple[tuple[str, float, int | None], tuple[str, float, int | None]]]] = {
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    "svhn": [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}


def magnitude_table(space: Mapping[str, tuple[Bins | None, bool]], bins: int, height: int, width: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(len(OPS), bins)`` magnitudes of every op of `space` (0 for ops without one or outside it) and
    ``(len(OPS),)`` whether each op's magnitude is signed, for `height` x `width` images."""
    table = torch.zeros(len(OPS), bins)
    signed = torch.zeros(len(OPS), dtype=torch.bool)
    for name, (fn, sign) in space.items():
        if fn is not None:
            table[_INDEX[name]] = fn(bins, height, width).float()
        signed[_INDEX[name]] = sign
    return table.to(device), signed.to(device)


def _choose(names: tuple[str, ...], shape: tuple[int, ...], generator: torch.Generator | None,
            device: torch.device) -> torch.Tensor:
    """Per entry one op of `names`, uniformly (torchvision's ``_get_random_item``), as `OPS` indices."""
    ids = torch.tensor([_INDEX[n] for n in names], device=device)
    return ids[torch.randint(len(names), shape, generator=generator, device=device)]


def _signed(table: torch.Tensor, signed: torch.Tensor, op: torch.Tensor, level: torch.Tensor,
            generator: torch.Generator | None) -> torch.Tensor:
    """The magnitude of each drawn (op, level), negated with probability 1/2 where the op is signed."""
    magnitude = table[op, level.clamp(min=0)]
    flip = torch.rand(op.shape, generator=generator, device=op.device) <= 0.5
    return torch.where(signed[op] & flip, -magnitude, magnitude)


class _Policy(Augmenter):
    """Shared machinery: runs op slots, each row its own op and magnitude, grouped by op."""

    class Params(Augmenter.Params):
        """Resampling of the geometric ops."""

        interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="resampling of the "
                                                              "geometric ops (torchvision's default: nearest)")
        fill: float | tuple[float, ...] = Field(0.0, description="value of areas from outside the image after a "
                                                "geometric op: one, or one per channel, in [0, 1]")

        @field_validator("fill")
        @classmethod
        def _check_fill(cls, fill: Any) -> Any:
            return unit_values(fill)

    def check_data(self, ds):
        return fill_problems(self.params.fill, ds)

    def __init__(self, params=None):
        super().__init__(params)
        self._ops: dict[str, tuple[Augmenter, Callable[[torch.Tensor], dict[str, torch.Tensor]]]] = {
            "Brightness": (Color(), lambda m: {"brightness": 1.0 + m}),
            "Color": (Color(), lambda m: {"saturation": 1.0 + m}),
            "Contrast": (Color(), lambda m: {"contrast": 1.0 + m}),
            "Sharpness": (Sharpness(), lambda m: {"factor": 1.0 + m}),
            "Posterize": (Posterize(), lambda m: {"bits": m.to(torch.int64)}),
            "Solarize": (Solarize(), lambda m: {"threshold": m}),
            "AutoContrast": (Autocontrast(), lambda m: {}),
            "Equalize": (Equalize(), lambda m: {}),
            "Invert": (Invert(), lambda m: {}),
        }
        self._geometric_ids = torch.tensor([_INDEX[n] for n in _GEOMETRIC])

    # one op slot -------------------------------------------------------------------------
    def _matrices(self, op: torch.Tensor, magnitude: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Normalised inverse warps of geometric ops, torchvision's per op (see the module docstring)."""
        zeros = torch.zeros_like(magnitude)
        shear = torch.rad2deg(torch.atan(magnitude))
        shifts = torch.trunc(magnitude)
        is_ = {name: op == _INDEX[name] for name in _GEOMETRIC}
        matrix = inverse_affine_pixels(
            angle=torch.where(is_["Rotate"], -magnitude, zeros),
            translate_x=torch.where(is_["TranslateX"], shifts, zeros),
            translate_y=torch.where(is_["TranslateY"], shifts, zeros),
            scale=torch.ones_like(magnitude),
            shear_x=torch.where(is_["ShearX"], shear, zeros),
            shear_y=torch.where(is_["ShearY"], shear, zeros))
        # shears turn about the top-left corner (torchvision's center=[0, 0]): conjugate by that shift
        corner = magnitude.new_tensor([[1.0, 0.0, -width / 2.0], [0.0, 1.0, -height / 2.0], [0.0, 0.0, 1.0]])
        back = magnitude.new_tensor([[1.0, 0.0, width / 2.0], [0.0, 1.0, height / 2.0], [0.0, 0.0, 1.0]])
        sheared = (is_["ShearX"] | is_["ShearY"]).view(-1, 1, 1)
        matrix = torch.where(sheared, corner @ matrix @ back, matrix)
        return pixels_to_normalized(matrix, height, width)

    def _run_op(self, name: str, x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        if name == "geometric":
            matrix = self._matrices(op, magnitude.to(torch.float32), *x.shape[-2:])
            return warp(x, matrix, mode=self.params.interpolation, padding="zeros", fill=self.params.fill)
        aug, params = self._ops[name]
        return aug._transform(x, None, params(magnitude.to(x.dtype)))

    def _slot(self, x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        """Every row through its own op: rows grouped by op, each group one batched call."""
        geometric = torch.isin(op, self._geometric_ids.to(op.device))
        groups: list[tuple[str, torch.Tensor]] = []
        if bool(geometric.any()):
            groups.append(("geometric", geometric))
        for i in torch.unique(op[~geometric]).tolist():
            if OPS[i] != "Identity":
                groups.append((OPS[i], op == i))
        out = x
        for name, rows in groups:
            if bool(rows.all()):
                out = self._run_op(name, out, op, magnitude)
                continue
            index = rows.nonzero().flatten()
            done = self._run_op(name, x.index_select(0, index), op[index], magnitude[index])
            out = (out.clone() if out is x else out).index_copy_(0, index, done)
        return out

    def _slots(self, x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        """Slot after slot (``op``, ``magnitude``: ``(N, S)``)."""
        check_channels(x, self.name)
        check_fill(self.params.fill, x.shape[1], self.name)  # (whether or not a geometric op was drawn)
        for s in range(op.shape[1]):
            x = self._slot(x, op[:, s], magnitude[:, s])
        return x

    def _transform(self, x, y, params):
        return self._slots(x, params["op"], params["magnitude"])


class AutoAugment(_Policy):
    """AutoAugment (Cubuk et al. 2019): each row draws one of the policy's 25 sub-policies.

    A sub-policy is two ops, each applied with its own probability at its fixed magnitude bin (of
    10), a signed magnitude negated with probability 1/2 — torchvision's ImageNet, CIFAR10 and SVHN
    policies. Every row draws its own sub-policy, gates and signs.
    """

    name = "auto-augment"
    testing_params = {"policy": "cifar10"}

    class Params(_Policy.Params):
        """Which learned policy."""

        policy: Literal["imagenet", "cifar10", "svhn"] = Field("imagenet", description="the learned policy")

    def _make_params(self, x, y, generator):
        n, device = x.shape[0], x.device
        policy = _AUTO_POLICIES[self.params.policy]
        ops = torch.tensor([[_INDEX[o[0]] for o in sub] for sub in policy], device=device)
        probs = torch.tensor([[o[1] for o in sub] for sub in policy], device=device)
        levels = torch.tensor([[-1 if o[2] is None else o[2] for o in sub] for sub in policy], device=device)
        table, signed = magnitude_table(SPACES["auto-augment"], 10, *x.shape[-2:], device)
        sub = torch.randint(len(policy), (n,), generator=generator, device=device)
        on = torch.rand(n, 2, generator=generator, device=device) <= probs[sub]
        op = torch.where(on, ops[sub], _INDEX["Identity"])
        level = torch.where(on, levels[sub], -1)
        magnitude = _signed(table, signed, op, level, generator)
        return {"subpolicy": sub, "op": op, "level": level, "magnitude": magnitude}


class RandAugment(_Policy):
    """RandAugment (Cubuk et al. 2020): each row draws `num_ops` ops uniformly, at one magnitude.

    torchvision's 14 ops (Identity included) and magnitude bins; the magnitude bin is the same for
    every op (`magnitude` of `num_magnitude_bins`), its sign drawn per row and op.
    """

    name = "rand-augment"

    class Params(_Policy.Params):
        """torchvision's RandAugment params."""

        num_ops: int = Field(2, ge=0, le=16, description="ops applied one after the other")
        magnitude: int = Field(9, ge=0, description="magnitude bin, < num_magnitude_bins")
        num_magnitude_bins: int = Field(31, ge=2, le=1000, description="bins the magnitude range is cut into")

        @model_validator(mode="after")
        def _magnitude_in_bins(self):
            if self.magnitude >= self.num_magnitude_bins:
                raise ValueError(f"magnitude must be below num_magnitude_bins ({self.num_magnitude_bins}), "
                                 f"got {self.magnitude}")
            return self

    def _make_params(self, x, y, generator):
        n, device = x.shape[0], x.device
        space = SPACES["rand-augment"]
        table, signed = magnitude_table(space, self.params.num_magnitude_bins, *x.shape[-2:], device)
        op = _choose(tuple(space), (n, self.params.num_ops), generator, device)
        has = torch.tensor([space.get(name, (None, False))[0] is not None for name in OPS], device=device)
        level = torch.where(has[op], self.params.magnitude, -1)
        return {"op": op, "level": level, "magnitude": _signed(table, signed, op, level, generator)}


class TrivialAugment(_Policy):
    """TrivialAugment Wide (Müller & Hutter 2021): each row draws one op and a uniform magnitude bin.

    torchvision's ``TrivialAugmentWide``: 14 ops with the wide magnitude ranges, the bin uniform in
    ``0..num_magnitude_bins - 1``, the sign drawn per row.
    """

    name = "trivial-augment"

    class Params(_Policy.Params):
        """torchvision's TrivialAugmentWide params."""

        num_magnitude_bins: int = Field(31, ge=2, le=1000, description="bins the magnitude range is cut into")

    def _make_params(self, x, y, generator):
        n, device = x.shape[0], x.device
        space = SPACES["trivial-augment"]
        bins = self.params.num_magnitude_bins
        table, signed = magnitude_table(space, bins, *x.shape[-2:], device)
        op = _choose(tuple(space), (n, 1), generator, device)
        has = torch.tensor([space.get(name, (None, False))[0] is not None for name in OPS], device=device)
        level = torch.where(has[op], torch.randint(bins, (n, 1), generator=generator, device=device), -1)
        return {"op": op, "level": level, "magnitude": _signed(table, signed, op, level, generator)}


class AugMix(_Policy):
    """AugMix (Hendrycks et al. 2020): a convex mix of the row and `mixture_width` random op chains.

    Per row: ``m ~ Beta(alpha, alpha)``, chain weights ``w ~ Dirichlet(alpha)``, output
    ``m x + (1 - m) sum_i w_i chain_i(x)``, each chain ``chain_depth`` ops (or 1-3, drawn per
    chain, when negative), each op uniform over torchvision's AugMix ops with a magnitude bin
    uniform in ``0..severity - 1`` of 10. Only the mixing; the paper's Jensen-Shannon consistency
    loss belongs to the training loop.
    """

    name = "aug-mix"
    testing_params = {"mixture_width": 2}

    class Params(_Policy.Params):
        """torchvision's AugMix params."""

        interpolation: Literal["nearest", "bilinear"] = Field("bilinear", description="resampling of the "
                                                              "geometric ops (torchvision's AugMix default)")
        severity: int = Field(3, ge=1, le=10, description="magnitude bins drawn from: 0..severity - 1 of 10")
        mixture_width: int = Field(3, ge=1, le=16, description="op chains mixed")
        chain_depth: int = Field(-1, ge=-1, le=16, description="ops per chain; -1 draws 1-3 per chain")
        alpha: float = Field(1.0, gt=0.0, le=100.0, description="Beta and Dirichlet concentration")
        all_ops: bool = Field(True, description="also brightness, colour, contrast and sharpness")

        @field_validator("chain_depth")
        @classmethod
        def _not_zero(cls, depth: int) -> int:
            if depth == 0:
                raise ValueError("chain_depth must be >= 1, or -1 for a depth of 1-3 drawn per chain")
            return depth

    def _make_params(self, x, y, generator):
        n, device = x.shape[0], x.device
        width = self.params.mixture_width
        space = SPACES["aug-mix"]
        names = tuple(space) if self.params.all_ops else _AUGMIX_PARTIAL
        table, signed = magnitude_table(space, 10, *x.shape[-2:], device)
        most = self.params.chain_depth if self.params.chain_depth > 0 else 3
        if self.params.chain_depth > 0:
            depth = torch.full((n, width), most, device=device, dtype=torch.int64)
        else:
            depth = torch.randint(1, 4, (n, width), generator=generator, device=device)
        op = _choose(names, (n, width, most), generator, device)
        op = torch.where(torch.arange(most, device=device) < depth.unsqueeze(-1), op, _INDEX["Identity"])
        has = torch.tensor([space.get(name, (None, False))[0] is not None for name in OPS], device=device)
        level = torch.randint(self.params.severity, op.shape, generator=generator, device=device)
        level = torch.where(has[op], level, -1)
        alpha = torch.tensor(self.params.alpha, device=device)
        beta = torch._sample_dirichlet(alpha.expand(n, 2).contiguous(), generator)
        mixing = torch._sample_dirichlet(alpha.expand(n, width).contiguous(), generator) * beta[:, 1:]
        return {"op": op.flatten(1), "level": level.flatten(1),
                "magnitude": _signed(table, signed, op, level, generator).flatten(1),
                "depth": depth, "weights": torch.cat([beta[:, :1], mixing], dim=1)}

    def _transform(self, x, y, params):
        width = self.params.mixture_width
        view = (-1,) + (1,) * (x.ndim - 1)
        weights = params["weights"].to(x.dtype)
        op = params["op"].view(len(x), width, -1)
        magnitude = params["magnitude"].view(len(x), width, -1)
        mix = x * weights[:, 0].view(view)
        for i in range(width):
            mix = mix + weights[:, i + 1].view(view) * self._slots(x, op[:, i], magnitude[:, i])
        return mix.clamp_(0.0, 1.0) if not mix.requires_grad else mix.clamp(0.0, 1.0)
