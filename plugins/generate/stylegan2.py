"""``stylegan2``: a compact, class-conditional StyleGAN2 (Karras et al., 2020) for images from 8x8 to
128x128 with any number of channels, with fine-tuning from pretrained weights.

The networks are in `._stylegan2_nets` (mapping network with a class embedding, modulated and
demodulated convolutions, per-layer noise, learned constant, skip toRGB outputs; a residual
discriminator with minibatch standard deviation and a projection head). Sizes work as in
``dcgan``: the networks run at the next power of two ``S >= max(H, W)`` (at least 8), real rows
are zero-padded to it and generated ones cropped back. Training is the shared loop
(``setforge.plugins.generate._gan_training``) with `StyleGan2Loss`: the non-saturating logistic
loss, lazy R1 on real rows every ``r1_every`` steps, optional lazy path-length regularisation,
and style mixing inside the generator. Sampling truncates ``w`` towards the requested class's
mean ``w`` by ``psi``.

Fine-tuning: ``init_from: PATH`` starts both networks from a state dict (`load_pretrained`);
``freeze_d: K`` keeps the discriminator's ``fromRGB`` and first K blocks fixed (FreezeD, Mo et
al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from setforge.components import ExistingPath, Generator, read_weights
from setforge.context import StepContext
from setforge.dataset import Dataset
from setforge.errors import DataError

from ._gan_augment import DiffAugmentOp
from ._gan_training import (SELECT_DESCRIPTION, GanObjective, GanTrainer, GanTrainingParams, Selection, build_module,
                            note_sampled, refuse_untrained)
from ._stylegan2_nets import StyleGan2Discriminator, StyleGan2Generator, init_stylegan2_weights
from .dcgan import MAX_SIZE, MIN_SIZE, _to_images, _to_network, network_size

__all__ = ["StyleGAN2", "StyleGan2Loss", "load_pretrained", "read_state_dicts", "CLASS_KEYS"]

#: The parameters with one row per class: fine-tuning on other classes starts those rows afresh.
CLASS_KEYS = {"generator": "mapping.embed", "discriminator": "projection"}

#: ``steps: auto``'s steps per class, and DiffAugment on by default: on digits (seed 0, the monitor's
#: curve) plain training lost diversity steadily (val PRDC recall 0.65 at step 400, 0.005 at 8000);
#: with DiffAugment recall held 0.58-0.61 and FD bottomed out (1.7) between steps 3600 and 4400
STEPS_PER_CLASS = 400
DEFAULT_DIFF_AUGMENT = ("translation", "color", "cutout")


# ------------------------------------------------------------------------------ losses
class StyleGan2Loss(GanObjective):
    """Non-saturating logistic loss with lazy R1 and optional lazy path-length regularisation.

    R1 (``gamma / 2 * E ||grad_x D(x)||^2`` on real rows) is added every ``r1_every`` steps,
    multiplied by ``r1_every`` so its average strength does not depend on the interval; path
    length (``E (||J_w^T y|| - a)^2``, ``a`` the moving mean of the lengths, kept in the
    generator's ``pl_mean`` buffer) likewise every ``pl_every`` steps on the step's generated
    batch, with its noise ``y`` from `draw`. The logged ``r1`` / ``path_length`` are the latest values.
    """

    steps_per_class = STEPS_PER_CLASS

    def __init__(self, generator: StyleGan2Generator, draw: torch.Generator, *, r1_gamma: float, r1_every: int,
                 pl_weight: float, pl_every: int, pl_decay: float = 0.01):
        self.generator, self.draw = generator, draw
        self.r1_gamma, self.r1_every = r1_gamma, r1_every
        self.pl_weight, self.pl_every, self.pl_decay = pl_weight, pl_every, pl_decay
        device = generator.pl_mean.device
        self.last_r1 = torch.zeros((), device=device)
        self.last_pl = torch.zeros((), device=device)

    def state(self) -> dict[str, Any]:
        # the logged values stand until the next lazy step recomputes them: a resumed run logs them too
        return {"last_r1": self.last_r1.cpu(), "last_pl": self.last_pl.cpu()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        device = self.generator.pl_mean.device
        self.last_r1 = state.get("last_r1", self.last_r1).to(device)
        self.last_pl = state.get("last_pl", self.last_pl).to(device)

    def r1_due(self) -> bool:
        """Whether this step adds R1 (every ``r1_every``-th step; never with ``r1_gamma: 0``)."""
        return self.r1_gamma > 0 and self.iteration % self.r1_every == 0

    def pl_due(self) -> bool:
        """Whether this step adds path-length regularisation."""
        return self.pl_weight > 0 and self.iteration % self.pl_every == 0

    def r1_penalty(self, real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``E ||grad_x D(x)||^2`` over the real rows (`real` must require grad), differentiable."""
        (grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        return grads.float().square().flatten(1).sum(dim=1).mean()

    def discriminator_loss(self, discriminator, real, fake, real_labels, fake_labels):
        r1 = self.r1_due()
        if r1:
            real = real.detach().requires_grad_(True)
        real_logits = discriminator(real, real_labels).float()
        fake_logits = discriminator(fake, fake_labels).float()
        loss = nn.functional.softplus(-real_logits).mean() + nn.functional.softplus(fake_logits).mean()
        if r1:
            penalty = self.r1_penalty(real_logits, real)
            self.last_r1 = penalty.detach()
            loss = loss + penalty * (self.r1_gamma / 2 * self.r1_every)
        return {"discriminator": loss, "r1": self.last_r1, "real_sign": real_logits.detach().sign().mean()}

    def path_length_penalty(self, fake: torch.Tensor) -> torch.Tensor:
        """``(||J_w^T y|| - a)^2`` averaged over the batch, through the generator's last ``ws``."""
        ws = self.generator.last_ws
        noise = torch.randn(fake.shape, generator=self.draw, device=fake.device) / math.sqrt(fake[0, 0].numel())
        (grads,) = torch.autograd.grad((fake.float() * noise).sum(), ws, create_graph=True)
        lengths = grads.float().square().sum(dim=2).mean(dim=1).sqrt()
        mean = self.generator.pl_mean
        with torch.no_grad():
            mean.copy_(mean.lerp(lengths.mean().to(mean.dtype), self.pl_decay))
        return (lengths - mean).square().mean()

    def generator_loss(self, discriminator, fake, labels):
        out = {"generator": nn.functional.softplus(-discriminator(fake, labels).float()).mean()}
        if self.pl_weight > 0:
            if self.pl_due():
                penalty = self.path_length_penalty(fake)
                self.last_pl = penalty.detach()
                out["generator"] = out["generator"] + penalty * (self.pl_weight * self.pl_every)
            out["path_length"] = self.last_pl
        return out


# --------------------------------------------------------------------- pretrained weights
def _tensor_dict(value: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping) or not all(isinstance(v, torch.Tensor) for v in value.values()):
        raise DataError(f"{where} is not a state dict (names to tensors)")
    return {str(k): v for k, v in value.items()}


def read_state_dicts(path: Path, where: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor],
                                                     tuple[str, ...] | None]:
    """The generator and discriminator state dicts in `path`, and the class names when it has them.

    Accepted: a ``.safetensors`` file (needs the ``safetensors`` package: ``pip install
    setforge[safetensors]``) or a ``.pt`` file (read with ``torch.load(weights_only=True)``) holding
    either flat keys ``generator.<name>`` / ``discriminator.<name>``, or ``{"generator": {...},
    "discriminator": {...}}``, or a ``generator.pt`` that a ``stylegan2`` step saved.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise DataError(f"{where}: reading {path} needs the safetensors package "
                            f"(pip install 'setforge[safetensors]'), or give a .pt file") from None
        try:
            state: Any = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same remedy
            raise DataError(f"{where}: cannot read {path} as safetensors ({error})") from None
    else:
        state = read_weights(path, where)
    if not isinstance(state, Mapping):
        raise DataError(f"{where}: {path} holds a {type(state).__name__}, not a state dict")
    classes = None
    if "setforge_generator" in state:
        if state["setforge_generator"] != "stylegan2":
            raise DataError(f"{where}: {path} was saved by generate '{state['setforge_generator']}', "
                            f"not stylegan2")
        classes = tuple(str(c) for c in state["classes"])
        state = state["state"]
    if "generator" in state and isinstance(state["generator"], Mapping):
        if "discriminator" not in state:
            raise DataError(f"{where}: {path} has generator weights but no discriminator weights")
        return (_tensor_dict(state["generator"], f"{where}: {path} 'generator'"),
                _tensor_dict(state["discriminator"], f"{where}: {path} 'discriminator'"), classes)
    flat = _tensor_dict(state, f"{where}: {path}")
    parts: dict[str, dict[str, torch.Tensor]] = {"generator": {}, "discriminator": {}}
    other = []
    for key, value in flat.items():
        net, _, name = key.partition(".")
        (parts[net].__setitem__(name, value) if net in parts and name else other.append(key))
    if other or not parts["generator"] or not parts["discriminator"]:
        shown = ", ".join(other[:5]) or "none"
        raise DataError(f"{where}: {path} must hold keys 'generator.<name>' and 'discriminator.<name>' "
                        f"(other keys: {shown})")
    return parts["generator"], parts["discriminator"], classes


def load_pretrained(generator: nn.Module, discriminator: nn.Module, path: Path, classes: Sequence[str],
                    where: str) -> dict[str, int]:
    """Load the state dicts in `path` (see `read_state_dicts`) into `generator` and `discriminator`.

    Every key must exist on both sides with the same shape, except the per-class rows
    (`CLASS_KEYS`): with class names in the file, the rows of classes present in both are copied
    (by name) and the others keep their fresh initialisation; without names they are copied when
    the shapes agree. Otherwise a `DataError` lists the missing, unexpected and mismatched keys
    with their shapes. Returns how many class rows were copied per network.
    """
    g_state, d_state, source_classes = read_state_dicts(path, where)
    problems: list[str] = []
    plans = []
    copied: dict[str, int] = {}
    for net_name, net, state in (("generator", generator, g_state), ("discriminator", discriminator, d_state)):
        own = net.state_dict()
        class_key = CLASS_KEYS[net_name]
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [k for k in own if k in state and k != class_key and tuple(state[k].shape) != tuple(own[k].shape)]
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                problems.append(f"{net_name}: {label} {', '.join(keys[:8])}" + (f" (+{len(keys) - 8} more)"
                                                                                if len(keys) > 8 else ""))
        for k in mismatched[:8]:
            problems.append(f"{net_name}.{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}")
        if len(mismatched) > 8:
            problems.append(f"{net_name}: +{len(mismatched) - 8} more shape mismatches")
        if class_key in state and class_key in own and state[class_key].shape[1:] != own[class_key].shape[1:]:
            problems.append(f"{net_name}.{class_key}: file {list(state[class_key].shape)} vs model "
                            f"{list(own[class_key].shape)} (the per-class rows must have the same width)")
        plans.append((net_name, net, state, own, class_key))
    if problems:
        raise DataError(f"{where}: init_from {path} does not fit this model (same width, depth, w_dim, "
                        f"latent_dim, image size and channels needed): " + "; ".join(problems))
    for net_name, net, state, own, class_key in plans:
        rows = own[class_key].clone()
        if source_classes is not None:
            index = {name: i for i, name in enumerate(source_classes)}
            pairs = [(i, index[name]) for i, name in enumerate(classes) if name in index]
        else:
            pairs = [(i, i) for i in range(len(rows))] if state[class_key].shape == rows.shape else []
        for mine, theirs in pairs:
            rows[mine] = state[class_key][theirs]
        copied[net_name] = len(pairs)
        net.load_state_dict({**{k: v for k, v in state.items() if k != class_key}, class_key: rows})
    return copied


# ------------------------------------------------------------------------------ plugin
class StyleGAN2(Generator):
    """Class-conditional StyleGAN2 for images (8x8 to 128x128, any channels), with truncation and fine-tuning."""

    name = "stylegan2"
    modalities = ("image",)
    testing_params: ClassVar[Mapping[str, Any]] = {"steps": 4, "batch_size": 8, "width": 4, "max_width": 8,
                                                   "latent_dim": 8, "w_dim": 8, "r1_every": 2, "grid_every": 0}

    class Params(GanTrainingParams):
        """StyleGAN2 params; the training ones are the shared loop's (with StyleGAN2's Adam defaults)."""

        latent_dim: int = Field(64, ge=1, le=4096, description="size of the latent vector z")
        w_dim: int = Field(128, ge=1, le=4096, description="size of the intermediate latent w (and of the class "
                                                           "embedding)")
        mapping_layers: int = Field(2, ge=1, le=16, description="linear layers of the mapping network (8 in the paper)")
        width: int = Field(64, ge=1, le=1024, description="channels at the output resolution; each halving of the "
                                                          "resolution doubles them, up to max_width")
        max_width: int = Field(256, ge=1, le=2048, description="most channels at any resolution (512 in the paper)")
        mixing: float = Field(0.9, ge=0.0, le=1.0, description="share of training rows with style mixing (two "
                                                                "latents, the second from a random layer on)")
        r1_gamma: float = Field(0.05, ge=0.0, description="R1 weight gamma on real rows (0 turns R1 off)")
        r1_every: int = Field(16, ge=1, description="lazy R1: add it every this many steps (scaled by the interval)")
        pl_weight: float = Field(0.0, ge=0.0, description="path-length regularisation weight (0: off; 2 in the "
                                                          "paper)")
        pl_every: int = Field(4, ge=1, description="lazy path-length regularisation: every this many steps")
        psi: float = Field(1.0, ge=0.0, le=2.0, description="truncation at sampling: w moves towards the requested "
                                                            "class's mean w by this factor (1: none, 0: the class "
                                                            "mean image)")
        init_from: ExistingPath | None = Field(None, description="start both networks from this state dict (.pt, "
                                                                 "or .safetensors with the safetensors package)")
        freeze_d: int = Field(0, ge=0, le=16, description="keep the discriminator's fromRGB and its first K "
                                                          "(highest-resolution) blocks fixed (FreezeD)")
        diff_augment: list[DiffAugmentOp] = Field(
            default_factory=lambda: list(DEFAULT_DIFF_AUGMENT),
            description="DiffAugment ops on every discriminator input (the shared loop's); on by default for "
                        "stylegan2, which loses diversity without them on small data ([] turns them off)")
        # stylegan2's FD to the val split rises again late in training on small data: keep the best
        select: Selection = Field("auto", description=SELECT_DESCRIPTION)
        # StyleGAN2's optimiser settings
        batch_size: int = Field(32, ge=2, le=65536, description="real rows per training batch")
        lr_generator: float = Field(2e-3, gt=0.0, description="Adam learning rate of the generator")
        lr_discriminator: float = Field(2e-3, gt=0.0, description="Adam learning rate of the discriminator")
        beta1: float = Field(0.0, ge=0.0, lt=1.0, description="Adam beta1 (0 in StyleGAN2)")
        beta2: float = Field(0.99, ge=0.0, lt=1.0, description="Adam beta2 (0.99 in StyleGAN2)")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self._net: StyleGan2Generator | None = None
        self._discriminator_state: dict[str, torch.Tensor] = {}
        self._w_avg: torch.Tensor | None = None
        self._architecture: dict[str, int] = {}
        self._trained_classes: list[int] = []
        self.result = None
        self.init_report: dict[str, int] | None = None

    @staticmethod
    def _build(a: Mapping[str, Any], device: torch.device | str) -> tuple[StyleGan2Generator, StyleGan2Discriminator]:
        size = network_size(a["height"], a["width"])
        generator = build_module(lambda: StyleGan2Generator(
            a["latent_dim"], a["w_dim"], a["num_classes"], a["channels"], a["height"], a["width"], size,
            a["base_width"], a["max_width"], a["mapping_layers"], a["mixing"]), device)
        discriminator = build_module(lambda: StyleGan2Discriminator(
            a["num_classes"], a["channels"], a["height"], a["width"], size, a["base_width"], a["max_width"]), device)
        return generator, discriminator

    def _where(self, ctx: StepContext) -> str:
        return f"generate '{self.name}'" + (f" (pipeline step {ctx.step})" if ctx.step >= 0 else "")

    def _fit(self, ds: Dataset, ctx: StepContext) -> None:
        channels, height, width = ds.shape
        if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
            raise DataError(f"generate '{self.name}' takes images from {MIN_SIZE}x{MIN_SIZE} to {MAX_SIZE}x{MAX_SIZE}, "
                            f"got {height}x{width}; resize them first (a preprocess step)")
        p = self.params
        self._architecture = {"latent_dim": p.latent_dim, "w_dim": p.w_dim, "num_classes": len(ds.classes),
                              "channels": channels, "height": height, "width": width, "base_width": p.width,
                              "max_width": p.max_width, "mapping_layers": p.mapping_layers, "mixing": p.mixing}
        generator, discriminator = self._build(self._architecture, ctx.device)
        init_stylegan2_weights(generator, ctx.rng.torch)
        init_stylegan2_weights(discriminator, ctx.rng.torch)
        where = self._where(ctx)
        if p.init_from is not None:
            self.init_report = load_pretrained(generator, discriminator, p.init_from, ds.classes, where)
        if p.freeze_d > len(discriminator.blocks):
            raise DataError(f"{where}: freeze_d={p.freeze_d}, but the discriminator for {height}x{width} images has "
                            f"{len(discriminator.blocks)} blocks; use at most {len(discriminator.blocks)}")
        for module in discriminator.frozen_modules(p.freeze_d):
            module.requires_grad_(False)
        generator.draw.generator = ctx.rng.torch  # noise and mixing latents: the step's generator
        objective = StyleGan2Loss(generator, ctx.rng.torch, r1_gamma=p.r1_gamma, r1_every=p.r1_every,
                                  pl_weight=p.pl_weight, pl_every=p.pl_every)
        trainer = GanTrainer(generator, discriminator, objective, p, name=self.name, decode=_to_images,
                             encode=_to_network)
        try:
            self.result = trainer.fit(_to_network(ds.x), ds.y, len(ds.classes), ctx,
                                      data_fingerprint=ds.fingerprint())
        finally:
            generator.draw.generator, generator.last_ws = None, None
        self._net = self.result.sampler
        self.training_report = self.result.report()
        self._discriminator_state = {k: v.detach().clone() for k, v in discriminator.state_dict().items()}
        self._w_avg = self._net.class_mean_w(len(ds.classes), ctx.rng.torch)
        self._trained_classes = sorted(set(ds.y.tolist()))

    def _sample(self, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        refuse_untrained(self, labels, self._trained_classes)
        note_sampled(self, labels)
        net = self._net
        if next(net.parameters()).device != ctx.device:
            net = self._net = net.to(ctx.device)
            self._w_avg = self._w_avg.to(ctx.device)
        z = torch.randn(len(labels), net.latent_dim, generator=ctx.rng.torch, device=ctx.device)
        images = net.generate(z, labels, psi=self.params.psi, w_avg=self._w_avg, noise=ctx.rng.torch)
        return _to_images(images)  # float32 even on CUDA: bf16 would quantise the pixels

    def _state_dict(self) -> dict[str, Any]:
        return {"architecture": dict(self._architecture), "trained_classes": list(self._trained_classes),
                "generator": {k: v.contiguous() for k, v in self._net.state_dict().items()},
                "discriminator": {k: v.contiguous() for k, v in self._discriminator_state.items()},
                "w_avg": self._w_avg.contiguous()}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        architecture = {k: (float(v) if k == "mixing" else int(v)) for k, v in state["architecture"].items()}
        weights = state["generator"]
        device = next(iter(weights.values())).device
        generator, _ = self._build(architecture, device)
        generator.load_state_dict(weights)
        self._net = generator.eval().requires_grad_(False)
        self._discriminator_state = dict(state["discriminator"])
        self._w_avg = state["w_avg"].to(device)
        self._architecture = architecture
        self._trained_classes = [int(c) for c in state["trained_classes"]]
