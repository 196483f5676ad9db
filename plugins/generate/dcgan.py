"""``dcgan``: a class-conditional DCGAN (Radford et al., 2016) for images of any size from 8x8 to 128x128.

The generator maps a latent vector concatenated with a learned label embedding through a 4x4
transposed convolution and stride-2 transposed convolutions (batch norm, ReLU) to ``tanh``
outputs; the discriminator is its mirror (stride-2 convolutions, LeakyReLU 0.2) ending in a
projection head (Miyato & Koyama, 2018): ``linear(phi(x)) + <embed(y), phi(x)>``. Its weights
are spectrally normalised by default (``discriminator_norm: spectral``, Miyato et al. 2018); the
paper's batch norm (``batch``) let the discriminator win outright on 32x32 RGB shapes (its loss
near 0.03, generator samples noise), and was no better on digits (benchmarks/generate_quality.py).
Depth adapts to the image: the networks work at the next power of two ``S >= max(H, W)`` (at
least 8) with ``log2(S) - 2`` up/down-sampling stages; images of other sizes are zero-padded (in network units) to ``S x S`` on the way into the discriminator, and
the generator's ``S x S`` output is cropped back, so real and generated rows meet the
discriminator padded alike. Any channel count works. Training is the shared loop in
``setforge.plugins.generate._gan_training`` (Adam with betas (0.5, 0.999), EMA weights for
sampling, checkpoints and resume, divergence checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from setforge.components import Generator
from setforge.context import StepContext
from setforge.dataset import Dataset
from setforge.errors import DataError

from ._gan_training import (refuse_untrained, note_sampled, GanObjective, GanTrainer, GanTrainingParams, NonSaturatingLoss, build_module,
                            init_dcgan_weights, spectral_normalise)

__all__ = ["DCGAN"]  # ConvGan is the base wgan-gp shares; not a component itself

MIN_SIZE, MAX_SIZE = 8, 128


def network_size(height: int, width: int) -> int:
    """The square, power-of-two size the networks work at: the smallest ``2**k >= max(H, W)``, at least 8."""
    return max(MIN_SIZE, 1 << math.ceil(math.log2(max(height, width))))


def _generator_widths(stages: int, width: int) -> list[int]:
    """Channels at 4x4, 8x8, ...: the DCGAN paper's halving towards the output (``width`` at the
    last hidden stage, at most ``8 * width``), with at least ``2 * width`` at 4x4 for small images."""
    return [width * min(8, max(2 ** (stages - 1 - i), 2 if i == 0 else 1)) for i in range(stages)]


class _DcganGenerator(nn.Module):
    """``(z, labels) -> (N, C, H, W)`` in [-1, 1]."""

    def __init__(self, latent_dim: int, embedding_dim: int, num_classes: int, channels: int, height: int,
                 width: int, base_width: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.height, self.width = height, width
        size = network_size(height, width)
        self.top, self.left = (size - height) // 2, (size - width) // 2
        stages = int(math.log2(size)) - 2
        widths = _generator_widths(stages, base_width)
        self.embedding = nn.Embedding(num_classes, embedding_dim)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim + embedding_dim, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for i in range(1, stages):
            layers += [nn.ConvTranspose2d(widths[i - 1], widths[i], 4, 2, 1, bias=False), nn.BatchNorm2d(widths[i]),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        code = torch.cat([z, self.embedding(labels).to(z.dtype)], dim=1)
        out = self.net(code[:, :, None, None])
        return out[:, :, self.top:self.top + self.height, self.left:self.left + self.width]


class _DcganDiscriminator(nn.Module):
    """``(rows, labels) -> (N,)`` logits with a projection head; ``batch_norm=False`` gives a critic
    without normalisation (a gradient penalty is per row, which batch norm would break)."""

    def __init__(self, num_classes: int, channels: int, height: int, width: int, base_width: int,
                 batch_norm: bool = True):
        super().__init__()
        size = network_size(height, width)
        top, left = (size - height) // 2, (size - width) // 2
        self.padding = (left, size - width - left, top, size - height - top)
        stages = int(math.log2(size)) - 2
        widths = list(reversed(_generator_widths(stages, base_width)))
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, stages):
            norm: list[nn.Module] = [nn.BatchNorm2d(widths[i])] if batch_norm else []
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=not batch_norm), *norm,
                       nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers)
        features = widths[-1] * 16
        self.linear = nn.Linear(features, 1)
        self.projection = nn.Embedding(num_classes, features)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = nn.functional.pad(x, self.padding)
        phi = self.net(x).flatten(1)
        return self.linear(phi).squeeze(1) + (self.projection(labels).to(phi.dtype) * phi).sum(dim=1)


def _to_network(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


def _to_images(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1.0) * 0.5).clamp_(0.0, 1.0)


class ConvGan(Generator):
    """The base of the convolutional class-conditional GANs (``dcgan``, ``wgan-gp``): DCGAN-shaped
    networks for images from 8x8 to 128x128, trained by the shared loop. A subclass names its
    objective (`_objective`) and the discriminator normalisations it accepts (its ``Params``)."""

    modalities = ("image",)

    class Params(GanTrainingParams):
        """Convolutional GAN params; the training ones are the shared loop's."""

        latent_dim: int = Field(100, ge=1, le=4096, description="size of the latent vector z")
        embedding_dim: int = Field(50, ge=1, le=4096, description="size of the label embedding fed to the generator")
        width: int = Field(64, ge=1, le=1024, description="channels of the last hidden generator stage and first "
                                                          "discriminator stage (ngf/ndf in the paper); deeper stages "
                                                          "double it, up to 8x")
        discriminator_norm: Literal["batch", "spectral", "none"] = Field(
            "spectral", description="normalisation in the discriminator: spectral (spectral norm of every weight, "
                                    "Miyato et al. 2018, and no batch norm), batch (batch norm after every "
                                    "convolution but the first, the DCGAN paper's) or none")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self._net: _DcganGenerator | None = None
        self._architecture: dict[str, int] = {}
        self._trained_classes: list[int] = []
        self.result = None

    def _objective(self, ctx: StepContext) -> GanObjective:
        raise NotImplementedError

    @staticmethod
    def _build_generator(a: Mapping[str, int], device: torch.device | str) -> _DcganGenerator:
        return build_module(lambda: _DcganGenerator(a["latent_dim"], a["embedding_dim"], a["num_classes"],
                                                    a["channels"], a["height"], a["width"], a["base_width"]), device)

    def _build_discriminator(self, a: Mapping[str, int], device: torch.device | str) -> _DcganDiscriminator:
        return build_module(lambda: _DcganDiscriminator(a["num_classes"], a["channels"], a["height"], a["width"],
                                                        a["base_width"], self.params.discriminator_norm == "batch"),
                            device)

    def _fit(self, ds: Dataset, ctx: StepContext) -> None:
        channels, height, width = ds.shape
        if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
            raise DataError(f"generate '{self.name}' takes images from {MIN_SIZE}x{MIN_SIZE} to {MAX_SIZE}x{MAX_SIZE}, "
                            f"got {height}x{width}; resize them first (a preprocess step)")
        p = self.params
        self._architecture = {"latent_dim": p.latent_dim, "embedding_dim": p.embedding_dim,
                              "num_classes": len(ds.classes), "channels": channels, "height": height, "width": width,
                              "base_width": p.width}
        generator = self._build_generator(self._architecture, ctx.device)
        discriminator = self._build_discriminator(self._architecture, ctx.device)
        init_dcgan_weights(generator, ctx.rng.torch)
        init_dcgan_weights(discriminator, ctx.rng.torch)
        if p.discriminator_norm == "spectral":
            spectral_normalise(discriminator, ctx.rng.torch)
        trainer = GanTrainer(generator, discriminator, self._objective(ctx), p, name=self.name, decode=_to_images,
                             encode=_to_network)
        self.result = trainer.fit(_to_network(ds.x), ds.y, len(ds.classes), ctx, data_fingerprint=ds.fingerprint())
        self._net = self.result.sampler
        self._trained_classes = sorted(set(ds.y.tolist()))
        self.training_report = self.result.report()

    def _sample(self, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        refuse_untrained(self, labels, self._trained_classes)
        note_sampled(self, labels)
        net = self._net
        if next(net.parameters()).device != ctx.device:
            net = self._net = net.to(ctx.device)
        z = torch.randn(len(labels), net.latent_dim, generator=ctx.rng.torch, device=ctx.device)
        return _to_images(net(z, labels))  # float32 even on CUDA: bf16 would quantise the pixels

    def _state_dict(self) -> dict[str, Any]:
        return {"architecture": dict(self._architecture), "trained_classes": list(self._trained_classes),
                "generator": {k: v.contiguous() for k, v in self._net.state_dict().items()}}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        architecture = {k: int(v) for k, v in state["architecture"].items()}
        weights = state["generator"]
        device = next(iter(weights.values())).device
        generator = self._build_generator(architecture, device)
        generator.load_state_dict(weights)
        self._net = generator.eval().requires_grad_(False)
        self._architecture = architecture
        self._trained_classes = [int(c) for c in state["trained_classes"]]


class DCGAN(ConvGan):
    """Class-conditional DCGAN for images (8x8 to 128x128, any channels), trained by the shared GAN loop."""

    name = "dcgan"
    testing_params: ClassVar[Mapping[str, Any]] = {"steps": 4, "batch_size": 16, "width": 8, "latent_dim": 8,
                                                   "embedding_dim": 4, "grid_every": 0}

    class Params(ConvGan.Params):
        """DCGAN params; the training ones are the shared loop's."""

    def _objective(self, ctx: StepContext) -> GanObjective:
        return NonSaturatingLoss()
