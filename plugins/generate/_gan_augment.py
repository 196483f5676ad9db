"""Data-efficient GAN training: DiffAugment (Zhao et al., 2020) and ADA (Karras et al., 2020),
built from setforge's own batched augmenters.

Both augment every image the discriminator sees, real and generated alike, with the same
differentiable ops, so the generator's gradients pass through the augmentation and the
discriminator cannot tell real from fake by the augmentation itself:

- ``diff_augment: [translation, color, cutout]`` applies each listed op to every row (p = 1);
- ``ada: {target: 0.6}`` gates each op per row with a probability p that starts at 0 and is
  adjusted every ``interval`` generator steps from the sign of the discriminator's scores on real
  rows, ``r_t = E[sign(D(real))]``: up when ``r_t > target`` (the discriminator grows
  over-confident on real rows, the sign of over-fitting), down otherwise, by
  ``batch * interval / speed`` per adjustment (p can go from 0 to 1 in ``speed`` real images).
  Without ``diff_augment`` it uses all three ops.

The ops (each per row, drawn from the step's torch generator, so a resumed run replays them):

- ``translation``: ``affine`` with shifts up to 1/8 of the width and height, no rotation, zero
  fill, nearest sampling: whole-pixel shifts as in the paper's code (bilinear sampling at
  fractional shifts would blur the real images the discriminator sees);
- ``color``: ``color`` with brightness, contrast and saturation factors in [0.5, 1.5] (saturation
  only for RGB images), without ``color``'s clamp to [0, 1]: as in the paper's code nothing is
  clamped, so the generator's gradient also reaches pixels that a factor pushes out of [0, 1];
- ``cutout``: ``erasing`` of one square box of a quarter of the image's area, filled with 0.

Against the paper's code (in [-1, 1] units): its brightness is an added shift (±0.25 in [0, 1]
units) rather than a factor, its saturation factor spans [0, 2], and it fills translation and
cutout with mid-grey; docs/generators.md lists these differences.

`AugmentedDiscriminator` wraps a discriminator so that an objective (`GanObjective`) sees the
augmented inputs without knowing about them; `AdaptiveAugment` keeps p and its state for
checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from setforge.plugins.augment.color import Color
from setforge.plugins.augment.geometric import Affine
from setforge.plugins.augment.pixel import Erasing

__all__ = ["DIFF_AUGMENT_OPS", "AdaParams", "build_ops", "AugmentedDiscriminator", "AdaptiveAugment"]

DiffAugmentOp = Literal["translation", "color", "cutout"]
DIFF_AUGMENT_OPS: tuple[str, ...] = ("translation", "color", "cutout")


class AdaParams(BaseModel):
    """Adaptive discriminator augmentation: the target of r_t and how fast p moves."""

    model_config = ConfigDict(extra="forbid")

    target: float = Field(0.6, gt=0.0, lt=1.0, description="the r_t = E[sign(D(real))] that p is steered to "
                                                           "(0.6 in the ADA paper)")
    interval: int = Field(4, ge=1, description="generator steps between adjustments of p")
    speed: int = Field(100_000, ge=1, description="real images over which p can move from 0 to 1 (the ADA paper "
                                                  "uses 500k; small data trains for fewer images)")
    initial_p: float = Field(0.0, ge=0.0, le=1.0, description="p at the start of training")
    max_p: float = Field(1.0, ge=0.0, le=1.0, description="the largest p")


class _UnclampedColor(Color):
    """`color` without its clamp to [0, 1], as in the paper's code: the generator's gradient reaches
    every pixel (the discriminator takes any values). Not a pipeline step: a run's augment steps
    must return images in [0, 1]."""

    clamps = False


def build_ops(names: Sequence[str]) -> list[nn.Module]:
    """setforge's batched augmenters for the DiffAugment op `names`, in that order."""
    makers: dict[str, Callable[[], nn.Module]] = {
        "translation": lambda: Affine({"degrees": 0.0, "translate": 0.125, "scale": (1.0, 1.0), "fill": 0.0,
                                       "interpolation": "nearest"}),
        "color": lambda: _UnclampedColor({"brightness": (0.5, 1.5), "contrast": (0.5, 1.5), "saturation": (0.5, 1.5)}),
        "cutout": lambda: Erasing({"scale": (0.25, 0.25), "ratio": (1.0, 1.0), "value": 0.0}),
    }
    return [makers[name]() for name in names]


class AugmentedDiscriminator(nn.Module):
    """``D(augment(x), labels)``: the wrapped discriminator on augmented inputs.

    Inputs arrive in network units; `decode` maps them to images in [0, 1] for the augmenters and
    `encode` maps them back. Each op's per-row parameters are drawn from `generator`; its per-row
    gate is ``rand < p`` (``p`` is 1 for DiffAugment and the adaptive p for ADA). Every op is
    differentiable in its input, so gradients reach the generator through it. ``p == 0`` skips
    the ops (and their draws).
    """

    def __init__(self, discriminator: nn.Module, ops: Sequence[nn.Module], generator: torch.Generator,
                 decode: Callable[[torch.Tensor], torch.Tensor], encode: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.inner = discriminator
        self.ops = list(ops)  # plain list: the ops hold no weights, and the wrapper's state is the discriminator's
        self.draw, self.decode, self.encode = generator, decode, encode
        self.p = 1.0

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The augmented batch (network units in and out)."""
        if self.p <= 0.0 or not self.ops:
            return x
        dtype = x.dtype
        images = self.decode(x).float()
        for op in self.ops:
            params = op.make_params(images, None, self.draw)
            if self.p < 1.0:
                params["apply"] = torch.rand(len(images), generator=self.draw, device=images.device) < self.p
            images = op.apply_params(images, None, params)
        return self.encode(images).to(dtype)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.inner(self.augment(x), labels)


class AdaptiveAugment:
    """ADA's controller: p, adjusted from the running mean of sign(D(real)) every `interval` steps."""

    def __init__(self, params: AdaParams, batch_size: int):
        self.params, self.batch_size = params, batch_size
        self.p = params.initial_p
        self.signs: list[torch.Tensor] = []

    def observe(self, real_sign: torch.Tensor) -> None:
        """Record one batch's mean sign of the discriminator's real scores (a 0-d tensor, not synced)."""
        self.signs.append(real_sign.detach().float())

    def adjust(self) -> float:
        """Move p by one step towards the target (one device sync); returns r_t."""
        if not self.signs:
            return float("nan")
        r_t = float(torch.stack(self.signs).mean())
        self.signs.clear()
        step = self.batch_size * self.params.interval / self.params.speed
        direction = 1.0 if r_t > self.params.target else -1.0
        self.p = min(self.params.max_p, max(0.0, self.p + direction * step))
        return r_t

    def state(self) -> dict[str, Any]:
        return {"p": self.p, "signs": [float(s) for s in self.signs]}

    def load_state(self, state: dict[str, Any], device: torch.device) -> None:
        self.p = float(state["p"])
        self.signs = [torch.tensor(s, device=device) for s in state["signs"]]
