"""The networks of ``stylegan2`` (Karras et al., 2020, "Analyzing and Improving the Image Quality
of StyleGAN"), compact and class-conditional.

- `MappingNetwork`: ``(z, labels) -> w``, the normalised latent concatenated with a normalised
  learned class embedding through ``depth`` equalised-lr linear layers (lr multiplier 0.01).
- `SynthesisNetwork`: a learned 4x4 constant, then per resolution a 2x upsampling modulated
  convolution and a modulated convolution (weights demodulated), each with its own noise input,
  and a skip ``toRGB`` output per resolution summed into the upsampled image ("skip" outputs).
- `StyleGan2Generator`: both, with style mixing while training (a second latent takes over from
  a random layer on), random noise drawn from an explicit `torch.Generator` (`Draw`), and
  truncation towards a per-class mean ``w`` when sampling.
- `StyleGan2Discriminator`: ``fromRGB``, residual blocks that halve the resolution down to 4x4,
  minibatch standard deviation, a convolution and a linear layer, and a projection head
  ``linear(phi) + <embed(y), phi> / sqrt(dim)`` (Miyato & Koyama, 2018).

Every weight uses the equalised learning rate (stored N(0, 1), scaled at run time by
``1/sqrt(fan_in)``) and is initialised by `init_stylegan2_weights` from an explicit generator.
Simplifications against the paper's code: upsampling is bilinear followed by a 3x3 convolution
(not a transposed convolution with a FIR blur), downsampling is 2x2 average pooling.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EqualLinear", "EqualConv2d", "ModulatedConv2d", "MappingNetwork", "SynthesisNetwork", "Draw",
           "StyleGan2Generator", "StyleGan2Discriminator", "init_stylegan2_weights", "channels_at",
           "network_levels"]

#: Leaky ReLU slope and the gain that keeps its output at unit second moment (StyleGAN's ``lrelu``).
SLOPE, GAIN = 0.2, math.sqrt(2.0)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE) * GAIN


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def network_levels(size: int) -> int:
    """Resolutions the synthesis network has for a ``size x size`` output: 4x4, 8x8, ..., size."""
    return int(math.log2(size)) - 1


def channels_at(resolution: int, size: int, width: int, max_width: int) -> int:
    """Channels at `resolution`: `width` at the output `size`, doubling per halving, at most `max_width`."""
    return min(max_width, width * (size // resolution))


# ----------------------------------------------------------------------------- layers
class EqualLinear(nn.Module):
    """A linear layer with the equalised learning rate; ``lr_mul`` slows it (the mapping network's 0.01)."""

    def __init__(self, inputs: int, outputs: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs))
        self.bias = nn.Parameter(torch.empty(outputs))
        self.bias_init, self.lr_mul = bias_init, lr_mul
        self.scale = lr_mul / math.sqrt(inputs)

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.weight, 0.0, 1.0 / self.lr_mul, generator=generator)
        nn.init.constant_(self.bias, self.bias_init / self.lr_mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """A same-padded convolution with the equalised learning rate."""

    def __init__(self, inputs: int, outputs: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(outputs)) if bias else None
        self.scale, self.padding = 1.0 / math.sqrt(inputs * kernel * kernel), kernel // 2

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.weight, 0.0, 1.0, generator=generator)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled per row by a style from ``w`` (modulation) and
    whose output channels are rescaled to the unit expected second moment (demodulation).

    Computed as scale-input, shared convolution, scale-output, which equals the paper's per-row
    weights ``w'_{ijk} = s_i w_{ijk}`` and ``w''_{ijk} = w'_{ijk} / sqrt(sum_{ik} w'^2_{ijk} + eps)``
    without building a weight tensor per row.
    """

    def __init__(self, inputs: int, outputs: int, kernel: int, w_dim: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, inputs, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(outputs, inputs, kernel, kernel))
        self.scale, self.padding = 1.0 / math.sqrt(inputs * kernel * kernel), kernel // 2
        self.demodulate, self.up = demodulate, up

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.weight, 0.0, 1.0, generator=generator)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        weight = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # sum over input channels and taps of (s_i w_ijk)^2, for every row and output channel
            energy = styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t()
            x = x * (energy + 1e-8).rsqrt()[:, :, None, None].to(x.dtype)
        return x


class Draw:
    """Where a generator network draws its noise and style-mixing latents from: an explicit
    `torch.Generator` (or none: zero noise, no mixing). Shared, not copied, by ``copy.deepcopy``:
    the moving-average copy of a network must not draw for itself, so it gets an empty one."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def __deepcopy__(self, memo: dict) -> "Draw":
        return Draw(None)


class SynthesisLayer(nn.Module):
    """Modulated convolution, per-pixel noise scaled by a learned strength, bias, leaky ReLU."""

    def __init__(self, inputs: int, outputs: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(inputs, outputs, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(outputs))

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.zeros_(self.noise_strength)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor, draw: torch.Generator | None) -> torch.Tensor:
        x = self.conv(x, w)
        if draw is not None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], generator=draw, device=x.device)
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        return _act(x + self.bias.to(x.dtype)[None, :, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to image channels, not demodulated, plus a bias."""

    def __init__(self, inputs: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(inputs, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.to(x.dtype)[None, :, None, None]


# ---------------------------------------------------------------------------- networks
class MappingNetwork(nn.Module):
    """``(z, labels) -> w``: normalised z and normalised class embedding, ``depth`` linear layers."""

    def __init__(self, latent_dim: int, w_dim: int, num_classes: int, depth: int, lr_mul: float = 0.01):
        super().__init__()
        self.embed = nn.Parameter(torch.empty(num_classes, w_dim))
        dims = [latent_dim + w_dim] + [w_dim] * depth
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:]))

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.embed, 0.0, 1.0, generator=generator)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = torch.cat([normalize_2nd_moment(z), normalize_2nd_moment(self.embed[labels].to(z.dtype))], dim=1)
        for layer in self.layers:
            x = _act(layer(x))
        return x


class SynthesisNetwork(nn.Module):
    """``ws (N, num_ws, w_dim) -> (N, C, size, size)``: constant, modulated layers, skip toRGB outputs."""

    def __init__(self, w_dim: int, channels: int, size: int, width: int, max_width: int):
        super().__init__()
        levels = network_levels(size)
        widths = [channels_at(4 << i, size, width, max_width) for i in range(levels)]
        self.const = nn.Parameter(torch.empty(widths[0], 4, 4))
        self.convs = nn.ModuleList([SynthesisLayer(widths[0], widths[0], w_dim)])
        self.to_rgbs = nn.ModuleList([ToRGB(widths[0], channels, w_dim)])
        for i in range(1, levels):
            self.convs.append(SynthesisLayer(widths[i - 1], widths[i], w_dim, up=True))
            self.convs.append(SynthesisLayer(widths[i], widths[i], w_dim))
            self.to_rgbs.append(ToRGB(widths[i], channels, w_dim))
        #: ws per row: conv 2i-1, conv 2i and toRGB 2i+1 at level i (the 4x4 level: conv 0, toRGB 1),
        #: so a toRGB shares its w with the next level's first conv, as in the paper's code
        self.num_ws = 2 * levels

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.const, 0.0, 1.0, generator=generator)

    def forward(self, ws: torch.Tensor, draw: torch.Generator | None = None) -> torch.Tensor:
        x = self.const[None].expand(len(ws), -1, -1, -1).to(ws.dtype)
        x = self.convs[0](x, ws[:, 0], draw)
        image = self.to_rgbs[0](x, ws[:, 1])
        for i in range(1, len(self.to_rgbs)):
            x = self.convs[2 * i - 1](x, ws[:, 2 * i - 1], draw)
            x = self.convs[2 * i](x, ws[:, 2 * i], draw)
            image = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False) \
                + self.to_rgbs[i](x, ws[:, 2 * i + 1])
        return image


class StyleGan2Generator(nn.Module):
    """``(z, labels) -> (N, C, H, W)`` images in network units (about [-1, 1]).

    In training mode (with a `Draw`): noise from the draw, and with probability ``mixing`` per
    row a second latent's ``w`` replaces the first from a random layer on; the ``ws`` of the last
    call are kept in ``last_ws`` (path-length regularisation differentiates through them). In
    eval mode ``forward`` draws nothing (no mixing, no noise); `generate` samples with noise from
    an explicit generator and truncation towards a per-class mean ``w``.
    """

    def __init__(self, latent_dim: int, w_dim: int, num_classes: int, channels: int, height: int, width: int,
                 size: int, base_width: int, max_width: int, mapping_layers: int, mixing: float):
        super().__init__()
        self.latent_dim, self.w_dim, self.mixing = latent_dim, w_dim, mixing
        self.height, self.width = height, width
        self.top, self.left = (size - height) // 2, (size - width) // 2
        self.mapping = MappingNetwork(latent_dim, w_dim, num_classes, mapping_layers)
        self.synthesis = SynthesisNetwork(w_dim, channels, size, base_width, max_width)
        self.num_ws = self.synthesis.num_ws
        self.draw = Draw()
        self.last_ws: torch.Tensor | None = None
        #: path-length regularisation's moving average of the lengths (a buffer: it is checkpointed)
        self.register_buffer("pl_mean", torch.zeros(()))

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :, self.top:self.top + self.height, self.left:self.left + self.width]

    def mix(self, ws: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Style mixing: for each row, with probability ``mixing``, the ws from a random layer
        ``1 <= k < num_ws`` on come from a second latent (of the same class)."""
        n = len(ws)
        z2 = torch.randn(n, self.latent_dim, generator=generator, device=ws.device)
        cutoff = torch.randint(1, self.num_ws, (n,), generator=generator, device=ws.device)
        mixed = torch.rand(n, generator=generator, device=ws.device) < self.mixing
        cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, self.num_ws))
        second = self.mapping(z2, labels).to(ws.dtype)
        later = torch.arange(self.num_ws, device=ws.device)[None, :] >= cutoff[:, None]
        return torch.where(later[:, :, None], second[:, None, :], ws)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # eval mode draws nothing (so that measuring the network, as the loop does, leaves the
        # training randomness alone); sampling with noise goes through `generate`
        draw = self.draw.generator if self.training else None
        ws = self.mapping(z, labels)[:, None, :].expand(-1, self.num_ws, -1)
        if draw is not None and self.mixing > 0 and self.num_ws > 1:
            ws = self.mix(ws, labels, draw)
        if self.training:
            self.last_ws = ws
        return self._crop(self.synthesis(ws, draw))

    def generate(self, z: torch.Tensor, labels: torch.Tensor, psi: float = 1.0,
                 w_avg: torch.Tensor | None = None, noise: torch.Generator | None = None) -> torch.Tensor:
        """Sample: ``w = w_avg[label] + psi * (w - w_avg[label])`` (no truncation without `w_avg`),
        noise from `noise` (none when None), no mixing."""
        w = self.mapping(z, labels)
        if w_avg is not None and psi != 1.0:
            centre = w_avg[labels].to(w.dtype)
            w = centre + psi * (w - centre)
        return self._crop(self.synthesis(w[:, None, :].expand(-1, self.num_ws, -1), noise))

    def class_mean_w(self, num_classes: int, generator: torch.Generator, rows: int = 2048) -> torch.Tensor:
        """Each class's mean ``w`` over `rows` latents drawn from `generator`: ``(num_classes, w_dim)``."""
        device = self.mapping.embed.device
        z = torch.randn(rows, self.latent_dim, generator=generator, device=device)
        means = []
        with torch.no_grad():
            for c in range(num_classes):
                means.append(self.mapping(z, torch.full((rows,), c, device=device)).float().mean(dim=0))
        return torch.stack(means)


class MinibatchStd(nn.Module):
    """Appends the standard deviation of the features over groups of rows (averaged) as one channel."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = next(k for k in range(min(self.group_size, n), 0, -1) if n % k == 0)
        y = x.float().reshape(g, n // g, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
        y = y.reshape(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual: two 3x3 convolutions (the second after 2x average pooling) plus a pooled 1x1 skip, / sqrt(2)."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.conv0 = EqualConv2d(inputs, inputs, 3)
        self.conv1 = EqualConv2d(inputs, outputs, 3)
        self.skip = EqualConv2d(inputs, outputs, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = _act(self.conv0(x))
        x = _act(self.conv1(F.avg_pool2d(x, 2)))
        return (skip + x) * (1.0 / math.sqrt(2.0))


class StyleGan2Discriminator(nn.Module):
    """``(rows, labels) -> (N,)`` logits: fromRGB, residual blocks to 4x4, minibatch std, projection head.

    ``blocks[0]`` is the highest-resolution block (with ``from_rgb`` it is what ``freeze_d: 1`` freezes).
    """

    def __init__(self, num_classes: int, channels: int, height: int, width: int, size: int, base_width: int,
                 max_width: int, mbstd_group: int = 4):
        super().__init__()
        top, left = (size - height) // 2, (size - width) // 2
        self.padding = (left, size - width - left, top, size - height - top)
        levels = network_levels(size)
        widths = [channels_at(size >> i, size, base_width, max_width) for i in range(levels)]  # size, size/2, .., 4
        self.from_rgb = EqualConv2d(channels, widths[0], 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(widths[i], widths[i + 1]) for i in range(levels - 1))
        last = widths[-1]
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(last + 1, last, 3)
        self.fc = EqualLinear(last * 16, last)
        self.out = EqualLinear(last, 1)
        self.projection = nn.Parameter(torch.empty(num_classes, last))

    def reset_parameters(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.projection, 0.0, 1.0, generator=generator)

    def frozen_modules(self, k: int) -> list[nn.Module]:
        """The modules ``freeze_d: k`` freezes: ``from_rgb`` and the first `k` blocks."""
        return [self.from_rgb, *self.blocks[:k]] if k > 0 else []

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding)
        x = _act(self.from_rgb(x))
        for block in self.blocks:
            x = block(x)
        x = _act(self.conv(self.mbstd(x)))
        phi = _act(self.fc(x.flatten(1)))
        projection = (self.projection[labels].to(phi.dtype) * phi).sum(dim=1) / math.sqrt(phi.shape[1])
        return self.out(phi).squeeze(1) + projection


def init_stylegan2_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Initialise every parameter of a stylegan2 network from `generator` (each layer's
    ``reset_parameters(generator)``): nothing of `build_module`'s default draws is left."""
    with torch.no_grad():
        for sub in module.modules():
            own = list(sub.parameters(recurse=False))
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters(generator)
            elif own:
                raise TypeError(f"init_stylegan2_weights does not know how to initialise {type(sub).__name__}")
