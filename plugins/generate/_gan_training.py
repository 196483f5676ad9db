"""The training loop every neural generator shares.

A generator plugin builds its networks and an objective (its losses) and hands them to
`GanTrainer`; the loop owns everything else, so that every neural generator behaves alike:

- Adam with the DCGAN paper's betas (0.5, 0.999), one optimiser per network;
- ``steps`` (optimiser steps of the generator) or ``epochs`` (passes over the real rows); by
  default ``steps: auto``, a budget chosen from the data by `training_budget` (classes, rows, and
  the cost of a step, which grows with the image size or feature count), reported with its reason;
- class-balanced sampling of real rows, on by default when the classes are skewed;
- an exponential moving average (EMA) of the generator's weights, used for sampling, with
  "standing" batch-norm statistics recomputed for the averaged weights;
- bf16 autocast and channels_last memory on CUDA (never on the CPU; ``precision: fp32`` turns
  both off); one CPU thread for small
  models (below `SMALL_STEP_MACS` per step), restored afterwards;
- a tqdm bar with the losses (``ctx.progress``), ``train_progress`` and ``samples`` events;
- a sample grid PNG (one row per class) every ``grid_every`` steps in the step's workdir;
- NaN or diverging losses stop training with a `DataError` naming the iteration, keeping the
  last good checkpoint;
- checkpoints every ``checkpoint_every`` steps (networks, optimisers, EMA, RNG states) as
  ``training-<iteration>.pt`` in the step's workdir, loaded with ``torch.load(weights_only=True)``;
  with ``ctx.resume`` training continues from the newest one and ends with the same weights as
  an uninterrupted run (bit for bit on the CPU).
- under ``torchrun`` (`setforge.distributed`), DistributedDataParallel: every rank draws the same
  global batch of ``batch_size x world_size`` rows and trains on its own slice of it (so an epoch
  is ``rows / (batch_size x world_size)`` steps), gradients are averaged across ranks, losses and
  ADA's r_t too; rank 0 alone writes checkpoints and grids, and a resume reads rank 0's newest
  checkpoint on every rank. All ranks keep the same random states, so they stay in step.

Randomness comes only from the step's `Rng`: latent draws from ``ctx.rng.torch``, the order of
real rows from ``ctx.rng.numpy``; the grid's fixed latents come from a sub-generator seeded
from ``ctx.rng.torch``. Build networks with `build_module` (which leaves torch's global RNG as
it was) and initialise them from ``ctx.rng.torch`` with `init_dcgan_weights`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from setforge import distributed
from setforge.components import Generator
from setforge.context import Event, StepContext
from setforge.errors import DataError, PluginError
from .._shared.threads import one_thread_if_small
from ._gan_augment import DIFF_AUGMENT_OPS, AdaParams, AdaptiveAugment, AugmentedDiscriminator, DiffAugmentOp, build_ops
from ._gan_selection import QualityMonitor, collapse_warnings, feature_network

__all__ = ["refuse_untrained", "note_sampled", "GanTrainingParams", "GanObjective", "NonSaturatingLoss", "WassersteinGradientPenalty", "GanTrainer", "GanResult", "BatchSampler",
           "build_module", "init_dcgan_weights", "spectral_normalise", "Selection", "SELECT_DESCRIPTION", "training_budget", "refresh_batch_norm", "write_grid_png", "is_skewed",
           "forward_macs", "CHECKPOINT_PATTERN", "SMALL_STEP_MACS"]

#: Training checkpoints in a step's workdir: ``training-00000200.pt``.
CHECKPOINT_PATTERN = re.compile(r"^training-(\d{8})\.pt$")
#: Classes count as skewed (balanced sampling switches on under ``balanced: auto``) when the
#: largest class has more than this many times the rows of the smallest.
SKEW_RATIO = 1.5
#: ``steps: auto`` (`training_budget`): generator steps per class present (the classes are what a
#: conditional generator must learn: long-tailed 10-class digits reached CAS 0.958 with dcgan at
#: 8000 steps), at least `AUTO_EPOCHS` passes over the real rows and `MIN_AUTO_STEPS` steps, and
#: at most `AUTO_MACS` multiply-adds of training (forward + backward of both networks, critic
#: steps included), so that big networks (32x32 RGB at width 64: about 0.7 CPU s a step on one
#: thread) stay within a stated CPU time; benchmarks/guard_shapes.py measures what it reaches.
STEPS_PER_CLASS = 800
#: The same for WGAN-GP (5 critic updates per generator step, so a step costs about 4x dcgan's):
#: on digits (seed 0, lr 2e-4) its CAS was 0.944 at 2000 steps, 0.960 at 2500 and 0.954 at 3000.
WGAN_STEPS_PER_CLASS = 250
AUTO_EPOCHS = 10
MIN_AUTO_STEPS = 1000
AUTO_MACS = 2e13
#: Params that do not change what a checkpoint means: a run may resume with different values.
_RESUMABLE_PARAMS = frozenset({"epochs", "steps", "checkpoint_every", "grid_every", "log_every", "checkpoint",
                               "lr_generator", "lr_discriminator", "divergence_limit"})


#: Which weights a GAN keeps after training (`GanTrainingParams.select`; a generator may change its default).
Selection = Literal["last", "best-fd", "auto"]
SELECT_DESCRIPTION = ("the weights kept: 'last', 'best-fd' (the checkpoint whose samples have the lowest Fréchet "
                      "distance to the real val split in a trained feature space), or 'auto' (best-fd when the "
                      "step has a val split and the monitor is on, else last)")


class GanTrainingParams(Generator.Params):
    """Params of the shared GAN training loop (every neural generator has them)."""

    steps: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="generator optimiser steps, or auto: chosen from the data (the larger of "
                            f"the loss's steps per class (dcgan and tabular-gan {STEPS_PER_CLASS}, wgan-gp "
                            f"{WGAN_STEPS_PER_CLASS}, stylegan2 400) and "
                            f"{AUTO_EPOCHS} passes over the rows, at least "
                            f"{MIN_AUTO_STEPS}, capped at {AUTO_MACS:.0e} multiply-adds of training); the choice "
                            "and why are in the step's training report")
    epochs: int | None = Field(None, ge=1, description="passes over the real rows instead (used when steps is "
                                                       "auto; an int steps wins)")
    batch_size: int = Field(64, ge=2, le=65536, description="real rows per training batch")
    lr_generator: float = Field(2e-4, gt=0.0, description="Adam learning rate of the generator")
    lr_discriminator: float = Field(2e-4, gt=0.0, description="Adam learning rate of the discriminator")
    beta1: float = Field(0.5, ge=0.0, lt=1.0, description="Adam beta1 (0.5 in the DCGAN paper)")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam beta2")
    balanced: bool | Literal["auto"] = Field(
        "auto", description="draw real rows class-balanced: true, false, or auto (on when the largest class "
                            f"has more than {SKEW_RATIO}x the rows of the smallest)")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="decay of the moving average of generator weights "
                                                                "used for sampling (0 turns it off)")
    checkpoint_every: int = Field(200, ge=1, description="write a resumable checkpoint every this many steps")
    grid_every: int | Literal["auto"] = Field(
        "auto", description="write a per-class sample grid PNG every this many steps (and at the end); 0 turns "
                            "grids off; auto: a fifth of the training steps, so any run shows at least 4 grids "
                            "during training plus the final one")
    log_every: int = Field(10, ge=1, description="check losses, update the progress bar and emit "
                                                 "train_progress every this many steps")
    divergence_limit: float = Field(1e4, gt=0.0, description="a loss whose magnitude exceeds this stops training "
                                                             "as diverged (as NaN or infinity does)")
    diff_augment: list[DiffAugmentOp] = Field(
        default_factory=list, description="DiffAugment (Zhao et al., 2020): augment every image the discriminator "
                                          "sees, real and generated, with these differentiable ops, each per row: "
                                          "translation, color, cutout (images only)")
    ada: AdaParams | None = Field(None, description="adaptive discriminator augmentation (Karras et al., 2020): gate "
                                                    "the diff_augment ops (all three when none are listed) per row "
                                                    "with a probability p steered so that E[sign(D(real))] stays at "
                                                    "target, e.g. {target: 0.6}")
    select: Selection = Field("last", description=SELECT_DESCRIPTION)
    monitor: bool | Literal["auto"] = Field(
        "auto", description="measure samples at every checkpoint (FD to the val split, per-class PRDC coverage and "
                            "recall for collapse warnings): true, false, or auto (on for images when the step has a "
                            "val split); select: best-fd needs it")
    collapse_coverage: float = Field(0.2, ge=0.0, le=1.0, description="a class whose samples' PRDC coverage of its "
                                                                      "real rows falls below this is reported as "
                                                                      "collapsed")
    monitor_samples: int = Field(1000, ge=10, le=1_000_000, description="rows sampled at each measurement (labels "
                                                                       "in the val split's class proportions)")
    precision: Literal["auto", "fp32"] = Field(
        "auto", description="auto: on CUDA, bf16 autocast (where the GPU supports it) and channels_last memory; "
                            "fp32: float32 and contiguous memory on every device (the CPU always trains in float32)")



def refuse_untrained(component: Any, labels: torch.Tensor, trained: Sequence[int]) -> None:
    """A `DataError` naming the requested classes a generator saw no training rows of (it cannot
    generate them); shared by every generator's ``_sample``."""
    untrained = sorted(set(labels.tolist()) - set(trained))
    if untrained:
        raise DataError(f"generate '{component.name}': no training rows of class "
                        f"{', '.join(repr(component.classes[c]) for c in untrained)}, so it cannot be generated "
                        f"(fit on data that has it, or leave it out of classes:)")


def note_sampled(component: Any, labels: torch.Tensor) -> None:
    """Narrow the collapse warnings of a generator's ``training_report`` to the classes it has
    sampled since it was fitted (``sampled_classes`` there, in class order): it is fitted on every
    class, and a class a step does not generate is no concern of its rows. Before any sampling the
    warnings cover every class the monitor saw. Shared by every GAN's ``_sample``."""
    report = component.training_report
    if not report or "curve" not in report:  # no monitor, or loaded from a checkpoint
        return
    sampled = set(report.get("sampled_classes", [])) | {str(component.classes[c]) for c in labels.unique().tolist()}
    report["sampled_classes"] = [str(name) for name in component.classes if str(name) in sampled]
    report["warnings"] = collapse_warnings(report, report["sampled_classes"])


# ------------------------------------------------------------------------- objectives
class GanObjective:
    """The losses of one GAN flavour. The loop calls them inside autocast; compute losses in float32.

    ``discriminator_loss`` returns a dict whose ``"discriminator"`` entry is minimised by the
    discriminator's optimiser; ``generator_loss`` one whose ``"generator"`` entry is minimised by the
    generator's. Other entries are logged only; ``"real_sign"``, the mean of ``sign(D(real))``
    (detached), is ADA's r_t and is required when ``ada`` is on. ``critic_steps`` discriminator
    updates (each on a fresh real batch) precede every generator update. The `discriminator`
    passed in may be the loop's `AugmentedDiscriminator` wrapper (DiffAugment/ADA): call it as
    given, on every input, so that real and generated rows are augmented alike.
    """

    critic_steps: int = 1
    #: ``steps: auto``'s generator steps per class present (`training_budget`); an objective whose
    #: generator step is dearer (several critic updates) may need fewer of them
    steps_per_class: int = STEPS_PER_CLASS
    #: the generator step being computed (1-based), set by the loop through `start_iteration`
    iteration: int = 0

    def start_iteration(self, iteration: int) -> None:
        """Called by the loop before each generator step's critic and generator updates (also after a
        resume, so schedules keyed on the iteration, such as lazy regularisation, resume exactly)."""
        self.iteration = iteration

    def state(self) -> dict[str, Any]:
        """What the objective carries from step to step beyond the networks (tensors and plain
        values), saved in every checkpoint so a resumed run goes on exactly; none by default."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore `state` (from `state`) on resuming."""

    def discriminator_loss(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                           real_labels: torch.Tensor, fake_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def generator_loss(self, discriminator: nn.Module, fake: torch.Tensor,
                       labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class NonSaturatingLoss(GanObjective):
    """The DCGAN losses: binary cross-entropy for the discriminator, -log D(G(z)) for the generator."""

    def discriminator_loss(self, discriminator, real, fake, real_labels, fake_labels):
        real_logits = discriminator(real, real_labels).float()
        fake_logits = discriminator(fake, fake_labels).float()
        # softplus(-l) = BCE(l, 1) and softplus(l) = BCE(l, 0), without building target tensors
        loss = nn.functional.softplus(-real_logits).mean() + nn.functional.softplus(fake_logits).mean()
        return {"discriminator": loss, "real_sign": real_logits.detach().sign().mean()}

    def generator_loss(self, discriminator, fake, labels):
        return {"generator": nn.functional.softplus(-discriminator(fake, labels).float()).mean()}


class WassersteinGradientPenalty(GanObjective):
    """WGAN-GP (Gulrajani et al., 2017): the critic minimises ``D(fake) - D(real)`` plus
    ``penalty * (||grad D(x_hat)|| - 1)^2`` at random interpolates ``x_hat`` of real and fake rows
    (one uniform weight per row, drawn from `generator`, the step's torch generator, so a resumed
    run draws the same); the generator minimises ``-D(G(z))``. ``critic_steps`` critic updates per
    generator update (5 in the paper). The critic must not use batch norm (the penalty is per row).
    ``drift`` adds ``drift * D(real)^2`` (Karras et al., 2018) to keep the critic's output near 0.
    ``steps: auto`` gives it `WGAN_STEPS_PER_CLASS` generator steps per class (each is
    ``critic_steps`` critic updates).
    """

    steps_per_class = WGAN_STEPS_PER_CLASS

    def __init__(self, generator: torch.Generator, penalty: float = 10.0, critic_steps: int = 5, drift: float = 0.0):
        self.draw, self.penalty, self.critic_steps, self.drift = generator, penalty, critic_steps, drift

    def discriminator_loss(self, discriminator, real, fake, real_labels, fake_labels):
        real_scores = discriminator(real, real_labels).float()
        fake_scores = discriminator(fake, fake_labels).float()
        shape = (len(real),) + (1,) * (real.ndim - 1)
        weight = torch.rand(shape, generator=self.draw, device=real.device, dtype=torch.float32).to(real.dtype)
        mixed = torch.lerp(fake.detach(), real.detach(), weight).requires_grad_(True)
        scores = discriminator(mixed, real_labels).float()
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norm = grad.float().flatten(1).norm(dim=1)
        penalty = ((norm - 1.0) ** 2).mean()
        distance = real_scores.mean() - fake_scores.mean()
        loss = -distance + self.penalty * penalty
        if self.drift:
            loss = loss + self.drift * (real_scores ** 2).mean()
        return {"discriminator": loss, "wasserstein": distance.detach(), "penalty": penalty.detach(),
                "real_sign": real_scores.detach().sign().mean()}

    def generator_loss(self, discriminator, fake, labels):
        return {"generator": -discriminator(fake, labels).float().mean()}


# --------------------------------------------------------------------------- networks
def build_module(factory: Callable[[], nn.Module], device: torch.device | str) -> nn.Module:
    """Build a module without changing torch's global RNG, then move it to `device`.

    The layers' default initialisation draws from the global RNG; it runs inside
    ``torch.random.fork_rng`` (CPU), which restores the global state afterwards, so no other code
    sees a difference. (The meta device would avoid the draws, but ``nn.Embedding`` on it imports
    torch._dynamo, seconds of start-up.) Initialise the weights afterwards from the step's
    generator (`init_dcgan_weights`).
    """
    with torch.random.fork_rng(devices=[]):
        module = factory()
    return module.to(device)


def init_dcgan_weights(module: nn.Module, generator: torch.Generator) -> None:
    """The DCGAN paper's initialisation, from an explicit generator: convolution, linear and
    embedding weights N(0, 0.02), batch-norm scales N(1, 0.02), biases 0, fresh running statistics.
    Every parameter and buffer is written: nothing of `build_module`'s default draws is left."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                if sub.weight is not None:
                    nn.init.normal_(sub.weight, 1.0, 0.02, generator=generator)
                    nn.init.zeros_(sub.bias)
                sub.reset_running_stats()
            elif isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding)):
                nn.init.normal_(sub.weight, 0.0, 0.02, generator=generator)
                if getattr(sub, "bias", None) is not None:
                    nn.init.zeros_(sub.bias)
            elif list(sub.parameters(recurse=False)) or list(sub.buffers(recurse=False)):
                raise TypeError(f"init_dcgan_weights does not know how to initialise {type(sub).__name__}")


def spectral_normalise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Spectral normalisation (Miyato et al., 2018) of every convolution, linear and embedding
    weight of `module` (call it after `init_dcgan_weights`): each weight is divided by its largest
    singular value, estimated by one power iteration per training forward pass. The starting
    vectors are drawn with a seed taken from `generator`, and torch's global RNG is left as it was."""
    device = next(module.parameters()).device
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        torch.manual_seed(seed)
        for sub in list(module.modules()):
            if isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding)):
                nn.utils.parametrizations.spectral_norm(sub)
    return module


def refresh_batch_norm(generator_net: nn.Module, latent_dim: int, classes: torch.Tensor, batch_size: int,
                       seed: int, batches: int = 8) -> None:
    """Recompute the batch-norm running statistics of `generator_net` (the EMA copy) for its own
    weights ("standing statistics"): averaged weights do not match the live network's statistics.

    Uses `batches` batches of latents from a generator seeded with `seed` and labels cycling
    through `classes`, so it is deterministic and consumes none of the training randomness.
    """
    norms = [m for m in generator_net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        generator_net.eval()
        return
    device = next(generator_net.parameters()).device
    draw = torch.Generator(device=device)
    draw.manual_seed(seed)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the refresh batches
    generator_net.train()
    with torch.no_grad():
        for _ in range(batches):
            labels = classes[torch.randint(len(classes), (batch_size,), generator=draw, device=device)]
            generator_net(torch.randn(batch_size, latent_dim, generator=draw, device=device), labels)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator_net.eval()


#: Below this many multiply-adds in one training step the loop runs on one CPU thread: such steps
#: are too small to share out, and on a busy machine torch's thread pool makes them many times
#: slower (the shared classifiers do the same).
SMALL_STEP_MACS = 2**28


def forward_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of `module` on `inputs` (convolutions, transposed
    convolutions and linear layers), measured with hooks in eval mode without gradients; the
    module's mode is restored and nothing (batch-norm statistics included) changes."""
    total = 0

    def count(layer: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.modules.conv._ConvTransposeNd):
            positions = args[0][0, 0].numel()  # each input position meets the whole kernel
        elif isinstance(layer, nn.modules.conv._ConvNd):
            positions = output[0, 0].numel()
        else:
            positions = output[0].numel() // layer.weight.shape[0]
        total += layer.weight.numel() * positions * len(output)

    hooks = [m.register_forward_hook(count) for m in module.modules()
             if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        module.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


# ------------------------------------------------------------------------------ data
def is_skewed(counts: np.ndarray) -> bool:
    """True when the largest present class has more than `SKEW_RATIO` times the rows of the smallest."""
    present = counts[counts > 0]
    return len(present) > 1 and present.max() > SKEW_RATIO * present.min()


class BatchSampler:
    """Which real rows each training batch holds, drawn from a numpy Generator.

    Plain: a fresh permutation per epoch, cut into full batches (a remainder smaller than a batch
    is dropped, as ``drop_last`` does). Balanced: each row of a batch
    picks a class uniformly among the classes present, then a row of that class uniformly.
    ``state()``/``load_state()`` make it resumable mid-epoch.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, balanced: bool, rng: np.random.Generator):
        self.n = len(labels)
        self.batch_size = min(batch_size, self.n)
        self.balanced = balanced
        self.rng = rng
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels)
        present = np.flatnonzero(counts)
        self.by_class = order
        self.class_start = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
        self.class_count = counts[present]
        self.permutation = np.zeros(0, dtype=np.int64)
        self.position = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n // self.batch_size)

    def next(self) -> np.ndarray:
        if self.balanced:
            cls = self.rng.integers(len(self.class_count), size=self.batch_size)
            within = (self.rng.random(self.batch_size) * self.class_count[cls]).astype(np.int64)
            return self.by_class[self.class_start[cls] + within]
        if self.position + self.batch_size > len(self.permutation):
            self.permutation = self.rng.permutation(self.n)
            self.position = 0
        batch = self.permutation[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def labels(self, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """What both networks are conditioned on for the rows just drawn (`index` into `y`): their
        classes. A subclass may condition on more (a tabular GAN's sampled category, say)."""
        return y[index]

    def state(self) -> dict[str, Any]:
        return {"numpy": json.dumps(self.rng.bit_generator.state), "permutation": torch.from_numpy(self.permutation),
                "position": self.position}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(state["numpy"])
        self.permutation = state["permutation"].numpy().astype(np.int64)
        self.position = int(state["position"])


def _fingerprint_differences(saved: Any, now: str) -> str:
    """What differs between a checkpoint's fingerprint and this run's, named: ``seed``,
    ``params.width``, ``training rows``, ``number of ranks``..."""
    try:
        old, new = json.loads(saved), json.loads(now)
    except (TypeError, ValueError):
        return "data or params"
    if not isinstance(old, dict):
        return "data or params"
    old_params = old.get("params") if isinstance(old.get("params"), dict) else {}
    named = [f"params.{k}" for k in sorted(set(old_params) | set(new["params"])) if old_params.get(k) != new["params"].get(k)]
    words = {"data": "training rows", "key": "place in the pipeline", "world_size": "number of ranks"}
    named += [words.get(k, k) for k in sorted(set(old) | set(new)) if k != "params" and old.get(k) != new.get(k)]
    return ", ".join(named) or "data or params"


def training_budget(params: GanTrainingParams, counts: np.ndarray, steps_per_epoch: int, critic_steps: int,
                    step_macs: int, row_shape: Sequence[int], steps_per_class: int = STEPS_PER_CLASS) -> dict[str, Any]:
    """The generator steps to train for and why: ``{"steps": N, "rule": "..."}``.

    An int ``steps`` is taken as given; ``epochs`` (with ``steps: auto``) is that many passes over
    the real rows (``steps_per_epoch`` batches, ``critic_steps`` of them per generator step). With
    ``steps: auto`` the budget is the larger of `steps_per_class` (the objective's; `STEPS_PER_CLASS`
    by default) per class present and
    `AUTO_EPOCHS` passes over the rows, at least `MIN_AUTO_STEPS`, then cut to what `AUTO_MACS`
    multiply-adds allow at `step_macs` per step (never below 1).
    """
    per_step = f"{critic_steps} critic batches per step" if critic_steps > 1 else "1 batch per step"
    if params.steps != "auto":
        return {"steps": int(params.steps), "rule": f"steps: {params.steps} (given)"}
    if params.epochs is not None:
        steps = max(1, params.epochs * steps_per_epoch // critic_steps)
        return {"steps": steps, "rule": f"epochs: {params.epochs} x {steps_per_epoch} batches per pass over the "
                                        f"rows, {per_step}"}
    classes, rows = int((counts > 0).sum()), int(counts.sum())
    by_classes = steps_per_class * classes
    by_rows = AUTO_EPOCHS * steps_per_epoch // critic_steps
    wanted = max(by_classes, by_rows, MIN_AUTO_STEPS)
    cap = max(1, int(AUTO_MACS // max(1, step_macs)))
    steps = min(wanted, cap)
    shape = "x".join(str(int(d)) for d in row_shape)
    why = (f"{classes} classes x {steps_per_class} = {by_classes}" if wanted == by_classes else
           f"{AUTO_EPOCHS} passes over {rows} rows = {by_rows}" if wanted == by_rows else f"at least {MIN_AUTO_STEPS}")
    rule = f"auto: {rows} rows of {shape} (network units), {classes} classes: {why}"
    if cap < wanted:
        rule += (f", capped at {steps} by the compute budget ({AUTO_MACS:.0e} multiply-adds at {step_macs / 1e9:.3g}G "
                 f"per step, {per_step}); set steps for more")
    return {"steps": steps, "rule": rule}


# ------------------------------------------------------------------------------ grids
def write_grid_png(images: torch.Tensor, path: Path, columns: int) -> Path:
    """Write `images` (``(rows * columns, C, H, W)`` in [0, 1]) as a PNG grid, `columns` per row,
    upscaled (nearest) so that small images stay visible. Grey + alpha (2 channels) and RGBA (4)
    composited over mid grey as the report's grids show them (`composite_alpha`); then one
    channel: grey; three or more: RGB (the first three)."""
    from PIL import Image

    from setforge.tools.plots import composite_alpha

    images = composite_alpha(images.detach().float().clamp(0, 1).cpu())
    n, channels, height, width = images.shape
    images = images[:, :1] if channels < 3 else images[:, :3]
    scale = max(1, math.ceil(32 / max(height, width)))
    images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    rows, pad = math.ceil(n / columns), 2
    h, w = height * scale, width * scale
    canvas = torch.ones(images.shape[1], rows * (h + pad) + pad, columns * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    array = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, mode="L" if array.shape[2] == 1 else "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------- trainer
@dataclass
class GanResult:
    """What training leaves: the network to sample from (EMA weights, eval mode), the number of
    generator steps taken, the last logged losses, where the grids and the last checkpoint went,
    the iteration training resumed from (None for a fresh start) and whether sampling was
    class-balanced."""

    sampler: nn.Module
    iterations: int
    losses: dict[str, float] = field(default_factory=dict)
    grids: list[Path] = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_from: int | None = None
    balanced: bool = False
    #: with monitoring: {"select", "chosen_iteration", "curve": [{"iteration", "fd", "by_class"}], "warnings"}
    selection: dict[str, Any] | None = None
    #: with ada: the augmentation probability at the end
    ada_p: float | None = None
    #: under torchrun: {"world_size", "rows_per_rank"} (each rank's slice of a batch)
    distributed: dict[str, int] | None = None
    #: the steps trained for and why (`training_budget`): {"steps", "rule"}
    budget: dict[str, Any] = field(default_factory=dict)

    def report(self, **extra: Any) -> dict[str, Any]:
        """The step's training report (a generator's ``training_report``): steps, budget and
        resume point, ADA's final p, the ranks, `extra`, then the monitor's selection."""
        return {"iterations": self.iterations, "budget": self.budget, "resumed_from": self.resumed_from,
                **({"ada_p": round(self.ada_p, 6)} if self.ada_p is not None else {}),
                **({"distributed": self.distributed} if self.distributed else {}), **extra, **(self.selection or {})}


class GanTrainer:
    """Trains a conditional generator against a discriminator with the shared loop.

    `generator` maps ``(z, labels)`` to rows in network units and has an int ``latent_dim``;
    `discriminator` maps ``(rows, labels)`` to ``(N,)`` logits/scores; `objective` gives the
    losses. `decode` maps network units back to dataset units (images in [0, 1]) for grids and
    for the quality monitor; `encode` is its inverse, needed by ``diff_augment``/``ada`` (the
    augmenters work in dataset units; they see the decoded, so clamped, rows). Pass
    ``image_grids=False`` for non-image generators.
    `name` names the component in messages. `make_sampler` builds the row sampler as
    ``make_sampler(labels, batch_size, balanced, numpy_generator)`` (`BatchSampler` or a
    subclass). A discriminator with an int ``pac`` scores packs of that many rows (PacGAN).
    `condition` maps class labels ``(B,)`` and a ``torch.Generator`` to the labels the generator
    samples with (tabular-gan's class and drawn category); the batch-norm refresh and the quality
    monitor use it. By default the class labels themselves.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, objective: GanObjective,
                 params: GanTrainingParams, *, name: str, decode: Callable[[torch.Tensor], torch.Tensor],
                 encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 image_grids: bool = True, grid_columns: int = 8, max_grid_classes: int = 20,
                 make_sampler: Callable[..., BatchSampler] = BatchSampler,
                 condition: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        self.make_sampler, self.condition = make_sampler, condition
        self.generator, self.discriminator, self.objective = generator, discriminator, objective
        self.params, self.name, self.decode, self.encode = params, name, decode, encode
        self.image_grids, self.grid_columns, self.max_grid_classes = image_grids, grid_columns, max_grid_classes
        self.latent_dim = int(generator.latent_dim)

    # ------------------------------------------------------------------ helpers
    def _where(self, ctx: StepContext) -> str:
        return f"generate '{self.name}'" + (f" (pipeline step {ctx.step})" if ctx.step >= 0 else "")

    def _fingerprint(self, data_fingerprint: str, ctx: StepContext, world: int = 1) -> str:
        """What a checkpoint must match to be resumed: data, params that shape training, networks, seed
        (and the number of ranks, which shapes the batches)."""
        kept = {k: v for k, v in self.params.model_dump(mode="json").items() if k not in _RESUMABLE_PARAMS}
        return json.dumps({**({"world_size": world} if world > 1 else {}), "data": data_fingerprint, "params": kept, "generator": type(self.generator).__name__,
                           "discriminator": type(self.discriminator).__name__, "seed": ctx.rng.seed,
                           "key": [str(k) for k in ctx.rng.key]}, sort_keys=True)

    @staticmethod
    def latest_checkpoint(workdir: Path) -> tuple[int, Path] | None:
        """The newest ``training-*.pt`` in `workdir` as ``(iteration, path)``, or None."""
        found = [(int(m.group(1)), p) for p in workdir.glob("training-*.pt") if (m := CHECKPOINT_PATTERN.match(p.name))]
        return max(found) if found else None

    def _save_checkpoint(self, workdir: Path, iteration: int, ema: nn.Module, optimisers: dict[str, torch.optim.Optimizer],
                         sampler: BatchSampler, ctx: StepContext, fingerprint: str,
                         extra: dict[str, Any] | None = None) -> Path | None:
        if distributed.group()[0]:  # rank 0 writes the checkpoints
            return None
        state = {"extra": extra or {},
            "format": 1, "iteration": iteration, "fingerprint": fingerprint,
            "networks": {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                         "ema": ema.state_dict()},
            "optimisers": {k: opt.state_dict() for k, opt in optimisers.items()},
            "rng": {"torch": ctx.rng.torch.get_state(), "data": sampler.state()},
        }
        path = workdir / f"training-{iteration:08d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # atomic: a kill leaves the previous checkpoint or this one, never half of one
        for old in workdir.glob("training-*.pt"):
            if old != path and CHECKPOINT_PATTERN.match(old.name):
                old.unlink(missing_ok=True)
        return path

    def _load_checkpoint(self, path: Path, ema: nn.Module, optimisers: dict[str, torch.optim.Optimizer],
                         sampler: BatchSampler, ctx: StepContext, fingerprint: str,
                         blob: bytes | None = None) -> tuple[int, dict[str, Any]]:
        try:  # `blob`: the file's bytes as rank 0 read them
            state = torch.load(path if blob is None else io.BytesIO(blob), map_location=ctx.device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same remedy
            # the first sentence only: torch goes on to suggest weights_only=False, which would run the file's code
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
            raise DataError(f"{self._where(ctx)}: cannot read the checkpoint {path} ({reason}; only tensors and "
                            f"plain values are loaded); delete it to train from the start") from None
        if state.get("fingerprint") != fingerprint:
            raise DataError(f"{self._where(ctx)}: the checkpoint {path} was written for another run (other "
                            f"{_fingerprint_differences(state.get('fingerprint'), fingerprint)}); delete it (or run "
                            f"without --resume) to train from the start")
        self.generator.load_state_dict(state["networks"]["generator"])
        self.discriminator.load_state_dict(state["networks"]["discriminator"])
        ema.load_state_dict(state["networks"]["ema"])
        lrs = {"generator": self.params.lr_generator, "discriminator": self.params.lr_discriminator}
        for key, opt in optimisers.items():
            opt.load_state_dict(state["optimisers"][key])
            for group in opt.param_groups:  # a resumed run may lower the learning rate after a divergence
                group["lr"] = lrs[key]
        ctx.rng.torch.set_state(state["rng"]["torch"].cpu())
        sampler.load_state(state["rng"]["data"])
        return int(state["iteration"]), state.get("extra", {})

    def _grid(self, ema: nn.Module, classes: torch.Tensor, seed: int, workdir: Path, iteration: int,
              ctx: StepContext) -> Path | None:
        shown = classes[:self.max_grid_classes]
        labels = shown.repeat_interleave(self.grid_columns)
        refresh_batch_norm(ema, self.latent_dim, classes, self.params.batch_size, seed + 1)
        draw = torch.Generator(device=ctx.device)
        draw.manual_seed(seed)  # the same latents every time, so grids show training progress
        z = torch.randn(len(labels), self.latent_dim, generator=draw, device=ctx.device)
        with torch.no_grad():
            images = self.decode(ema(z, labels).float()).cpu()
        path = write_grid_png(images, workdir / f"samples-{iteration:08d}.png", self.grid_columns)
        ctx.emit(Event("samples", step=ctx.step if ctx.step >= 0 else None, name=self.name,
                       data={"iteration": iteration, "images": images, "labels": labels.cpu(), "path": str(path)}))
        return path

    # --------------------------------------------------------------------- fit
    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, ctx: StepContext,
            data_fingerprint: str = "") -> GanResult:
        """Train on rows `x` (network units, on ``ctx.device``) with labels `y`; see the module doc."""
        p, device = self.params, ctx.device
        if len(x) < 2:
            raise DataError(f"{self._where(ctx)}: needs at least 2 rows to train on, got {len(x)}")
        fast_cuda = device.type == "cuda" and p.precision == "auto"  # the fast path; fp32 asks for none of it
        if fast_cuda:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
        # bf16 autocast where the GPU supports it (Ampere and later); float32 elsewhere, the CPU included
        bf16 = fast_cuda and torch.cuda.is_bf16_supported()
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        self.generator.train()
        self.discriminator.train()
        ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        betas = (p.beta1, p.beta2)
        optimisers = {"generator": torch.optim.Adam(self.generator.parameters(), lr=p.lr_generator, betas=betas),
                      "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=p.lr_discriminator,
                                                        betas=betas)}
        opt_g, opt_d = optimisers["generator"], optimisers["discriminator"]
        g_params, ema_params = list(self.generator.parameters()), list(ema.parameters())

        labels_np = y.cpu().numpy()
        counts = np.bincount(labels_np, minlength=num_classes)
        balanced = is_skewed(counts) if p.balanced == "auto" else bool(p.balanced)
        rank, world = distributed.group()
        # one global batch drawn alike on every rank, each rank training on its slice (DistributedSampler's split)
        sampler = self.make_sampler(labels_np, p.batch_size * world, balanced, ctx.rng.numpy)
        pac = int(getattr(self.discriminator, "pac", 1))
        share = sampler.batch_size // world // pac * pac
        if share < max(2, pac):
            raise DataError(f"{self._where(ctx)}: {len(x)} training rows give each of {world} ranks {share} rows per "
                            f"batch; training needs at least {max(2, pac)}: run on fewer ranks")
        mine = slice(rank * share, (rank + 1) * share)
        g_net, d_net = distributed.wrap(self.generator, device), distributed.wrap(self.discriminator, device)
        # forward + backward of the generator and two discriminator passes, per step, about 3x forward
        probe_z = torch.zeros(1, self.latent_dim, device=device)
        step_macs = 3 * share * self.objective.critic_steps * (
            forward_macs(self.generator, probe_z, y[:1]) + 2 * forward_macs(self.discriminator, x[:pac], y[:pac]) // pac)
        budget = training_budget(p, counts, sampler.steps_per_epoch, self.objective.critic_steps, step_macs * world,
                                 x.shape[1:], self.objective.steps_per_class)
        total = budget["steps"]
        grid_every = max(1, total // 5) if p.grid_every == "auto" else p.grid_every
        present = torch.as_tensor(np.flatnonzero(counts), device=device)
        # the grid's latents: a sub-generator seeded from the step's generator, drawn before any resume
        grid_seed = int(torch.randint(0, 2**62, (1,), generator=ctx.rng.torch, device=device).item())
        standing = self._sampling_labels(present, grid_seed + 3)  # the labels of the batch-norm refresh
        fingerprint = self._fingerprint(data_fingerprint, ctx, world)
        workdir = ctx.ensure_workdir()
        torch_rng = ctx.rng.torch
        seen_by_objective, ada = self._augmentation(ctx, d_net)
        monitor = self._monitor(x, y, ctx, grid_seed + 2)

        start, resumed_from, checkpoint_path = 0, None, None
        latest = self.latest_checkpoint(workdir) if ctx.resume else None
        # rank 0 holds the checkpoints; every rank resumes from its newest one
        latest, blob = distributed.from_main(lambda: (latest, latest[1].read_bytes() if latest else None), device)
        if latest is not None and latest[0] > total:
            raise DataError(f"{self._where(ctx)}: --resume found a checkpoint at step {latest[0]} ({latest[1].name}), "
                            f"past this run's budget of {total} steps ({budget['rule']}); resume with a budget of at "
                            f"least {latest[0]} steps, or run the step afresh (without --resume)")
        if latest is not None:
            checkpoint_path = latest[1]
            start, extra = self._load_checkpoint(latest[1], ema, optimisers, sampler, ctx, fingerprint, blob)
            resumed_from = start
            if ada is not None and "ada" in extra:
                ada.load_state(extra["ada"], device)
            if monitor is not None and "monitor" in extra:
                monitor.load_state(extra["monitor"])
            self.objective.load_state(extra.get("objective", {}))
        last_good = (start, checkpoint_path)
        if ada is not None:
            seen_by_objective.p = ada.p

        def extra_state() -> dict[str, Any]:
            return {**({"ada": ada.state()} if ada is not None else {}),
                    **({"monitor": monitor.state()} if monitor is not None else {}),
                    **({"objective": own} if (own := self.objective.state()) else {})}

        decay = p.ema_decay
        window: list[torch.Tensor] = []
        loss_names: list[str] = []
        last_losses: dict[str, float] = {}
        grids: list[Path] = []
        progress = None
        if ctx.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=total, initial=start, desc=f"{self.name}", unit="step", dynamic_ncols=True,
                            leave=False)  # nested under the pipeline's bar; gone when the step ends

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            index = torch.from_numpy(sampler.next()).to(device)
            labels = sampler.labels(y, index)
            return x[index[mine]], labels[mine]

        def flush(iteration: int) -> None:
            """Check the losses of the window (one device sync), log them, raise on divergence."""
            nonlocal last_losses
            if not window:
                return
            values = distributed.all_mean(torch.stack(window)).cpu().numpy()  # every rank decides alike
            first = iteration - len(window) + 1
            bad = ~np.isfinite(values) | (np.abs(values) > p.divergence_limit)
            if bad.any():
                row, col = np.argwhere(bad)[0]
                good, good_path = last_good
                keep = (f"the last good checkpoint is {good_path} (iteration {good})" if good_path is not None
                        else "no checkpoint was written yet")
                raise DataError(
                    f"{self._where(ctx)}: training diverged at iteration {first + row} of {total}: the "
                    f"{loss_names[col]} loss is {values[row, col]:.4g} (NaN, infinite or beyond "
                    f"divergence_limit={p.divergence_limit:g}); {keep}. Lower lr_generator/lr_discriminator "
                    f"(now {p.lr_generator:g}/{p.lr_discriminator:g}) and rerun (with --resume to continue "
                    f"from that checkpoint)")
            last_losses = {name: float(v) for name, v in zip(loss_names, values.mean(axis=0))}
            window.clear()
            ctx.emit(Event("train_progress", step=ctx.step if ctx.step >= 0 else None, name=self.name,
                           data={"iteration": iteration, "total": total, "losses": dict(last_losses)}))
            if progress is not None:
                progress.update(iteration - progress.n)
                progress.set_postfix({k: f"{v:.3f}" for k, v in last_losses.items()})

        threads = one_thread_if_small(step_macs, SMALL_STEP_MACS, device)
        threads.__enter__()
        try:
            for iteration in range(start + 1, total + 1):
                self.objective.start_iteration(iteration)
                fake = None
                for critic in range(self.objective.critic_steps):
                    real, real_labels = batch()
                    # the global batch's latents (the same draws on every rank), this rank's slice
                    z = torch.randn(share * world, self.latent_dim, generator=torch_rng, device=device)[mine]
                    last = critic == self.objective.critic_steps - 1
                    with autocast():
                        with contextlib.nullcontext() if last else torch.no_grad():
                            fake = g_net(z, real_labels)
                        d_losses = self.objective.discriminator_loss(seen_by_objective, real, fake.detach(), real_labels,
                                                                     real_labels)
                    opt_d.zero_grad(set_to_none=True)
                    d_losses["discriminator"].backward()
                    opt_d.step()
                    if ada is not None:
                        ada.observe(distributed.all_mean(self._real_sign(d_losses, ctx)))
                with autocast():
                    g_losses = self.objective.generator_loss(seen_by_objective, fake, real_labels)
                opt_g.zero_grad(set_to_none=True)
                # inputs=: the generator's step computes no gradients for the discriminator's weights
                g_losses["generator"].backward(inputs=g_params)
                opt_g.step()
                with torch.no_grad():
                    # warm-up as in TF's ExponentialMovingAverage, so early weights are not kept forever;
                    # ema_decay 0 copies the live weights
                    torch._foreach_lerp_(ema_params, g_params, 1.0 - min(decay, (1 + iteration) / (10 + iteration)))
                    losses = {**d_losses, **g_losses}
                    if not loss_names:
                        loss_names = list(losses)
                    window.append(torch.stack([losses[k].detach().float() for k in loss_names]))
                if ada is not None and iteration % ada.params.interval == 0:
                    ada.adjust()
                    seen_by_objective.p = ada.p

                at_checkpoint = iteration % p.checkpoint_every == 0 and iteration < total
                if monitor is not None and (iteration % p.checkpoint_every == 0 or iteration == total):
                    refresh_batch_norm(ema, self.latent_dim, standing, p.batch_size, grid_seed + 1)
                    monitor.measure(ema, iteration)
                if iteration % p.log_every == 0 or at_checkpoint or iteration == total:
                    flush(iteration)
                if at_checkpoint:
                    checkpoint_path = self._save_checkpoint(workdir, iteration, ema, optimisers, sampler, ctx,
                                                            fingerprint, extra_state())
                    last_good = (iteration, checkpoint_path)
                if self.image_grids and grid_every and iteration % grid_every == 0 and iteration < total and not rank:
                    grids.append(self._grid(ema, present, grid_seed, workdir, iteration, ctx))
            refresh_batch_norm(ema, self.latent_dim, standing, p.batch_size, grid_seed + 1)
            if start < total or checkpoint_path is None:
                # the finished state, so that a resumed run whose training had finished skips it
                checkpoint_path = self._save_checkpoint(workdir, total, ema, optimisers, sampler, ctx, fingerprint,
                                                        extra_state())
            selection = None
            if monitor is not None:
                selection = monitor.report(total)
                if monitor.select == "best-fd" and monitor.best is not None and monitor.best["iteration"] != total:
                    ema.load_state_dict(monitor.best["weights"])
                    refresh_batch_norm(ema, self.latent_dim, standing, p.batch_size, grid_seed + 1)
            if self.image_grids and grid_every and not rank:
                grids.append(self._grid(ema, present, grid_seed, workdir, total, ctx))
        finally:
            threads.__exit__(None, None, None)
            if progress is not None:
                progress.close()
        return GanResult(sampler=ema, iterations=max(start, total), losses=last_losses, grids=grids,
                         checkpoint=checkpoint_path, resumed_from=resumed_from, balanced=balanced,
                         selection=selection, ada_p=None if ada is None else ada.p, budget=budget,
                         distributed={"world_size": world, "rows_per_rank": share} if world > 1 else None)

    # ------------------------------------------------------- extension points
    def _augmentation(self, ctx: StepContext, discriminator: nn.Module) -> tuple[nn.Module, AdaptiveAugment | None]:
        """The discriminator the objective sees (`discriminator`, the DDP one under torchrun, wrapped by
        DiffAugment/ADA when asked) and ADA's controller."""
        p = self.params
        if not p.diff_augment and p.ada is None:
            return discriminator, None
        if not self.image_grids or self.encode is None:
            what = "diff_augment" if p.diff_augment else "ada"
            raise DataError(f"{self._where(ctx)}: {what} augments images and needs the generator's encode (dataset "
                            f"units back to network units); this generator has "
                            f"{'no images' if not self.image_grids else 'no encode'}")
        ops = build_ops(p.diff_augment or DIFF_AUGMENT_OPS)
        wrapper = AugmentedDiscriminator(discriminator, ops, ctx.rng.torch, self.decode, self.encode)
        return wrapper, None if p.ada is None else AdaptiveAugment(p.ada, p.batch_size)

    def _sampling_labels(self, present: torch.Tensor, seed: int) -> torch.Tensor:
        """`present` as the generator samples with it: the classes themselves, or, with `condition`,
        4096 rows of the classes in turn with their conditions drawn (seeded by `seed`)."""
        if self.condition is None:
            return present
        draw = torch.Generator(device=present.device)
        draw.manual_seed(seed)
        return self.condition(present.repeat(max(1, 4096 // len(present))), draw)

    def _real_sign(self, losses: Mapping[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        if "real_sign" not in losses:
            raise PluginError(f"{self._where(ctx)}: ada needs the objective's discriminator_loss to return "
                              f"'real_sign' (the mean of sign(D(real))); {type(self.objective).__name__} does not")
        return losses["real_sign"]

    def _monitor(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext, seed: int) -> QualityMonitor | None:
        """The checkpoint quality monitor, when `monitor`/`select` ask for it and the step has a val split."""
        p = self.params
        val = ctx.val if ctx.val is not None and len(ctx.val) else None
        on = (p.monitor is True or p.select == "best-fd"
              or (p.monitor == "auto" and self.image_grids and val is not None))
        if not on:
            return None
        if val is None:
            raise DataError(f"{self._where(ctx)}: select: best-fd and monitor: true measure samples against the real "
                            f"val split, and this step has none; give the run a val split (split.val) or use "
                            f"select: last with monitor: auto")
        from setforge.dataset import Dataset
        from setforge.rng import Rng

        with torch.no_grad():
            rows = self.decode(x).float()
        train = Dataset(x=rows, y=y, classes=val.classes, modality=val.modality, features=val.features)
        val = val.to(ctx.device)
        kind = "cnn" if val.modality == "image" else "mlp"
        features = feature_network(train, val, Rng(ctx.rng.seed, ("gan-monitor-features",)).sk_seed(), ctx.device,
                                   ctx.cache, kind=kind)
        select = "last" if p.select == "last" else "best-fd"  # auto: best-fd, since the monitor is on
        return QualityMonitor(train, val, features, self.decode, self.latent_dim, seed, select,
                              p.collapse_coverage, p.monitor_samples, condition=self.condition)
