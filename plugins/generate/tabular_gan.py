"""``tabular-gan``: CTGAN (Xu et al., 2019), class-conditional, on the shared GAN loop.

- **Representation** (`ModeSpecificNormaliser`): mode-specific normalisation of every continuous
  column (a variational Gaussian mixture per column) and one-hots of the categorical columns
  named by `FeatureInfo`.
- **Conditional vector, training-by-sampling**: each training row of a batch draws a class
  (uniformly when ``balanced``, else by frequency), a categorical column uniformly, a category of
  it with probability proportional to the log of its frequency within the class, then a real row
  of that class and category. Both networks see the one-hot class and the one-hot condition; the
  generator also pays the cross-entropy between its logits for the conditioned column and the
  condition. At sampling time the condition is drawn from the category's real frequency within
  the requested class, so generated rows follow the data's frequencies. Without categorical
  columns the condition is the class alone.
- **Networks**: the generator is CTGAN's (residual linear blocks with batch norm, ``tanh`` on each
  ``alpha``, Gumbel-softmax with temperature ``tau`` on each mode and category span; its Gumbel
  noise comes from extra latents through the normal CDF, so every draw comes from the step's
  generator); the critic is a PacGAN critic (``pac`` rows scored together; LeakyReLU 0.2 and
  dropout drawn from the step's generator), trained with WGAN-GP (gradient penalty per pack).
- **Decoding**: arg-max modes and categories back to the original columns, categories as codes,
  integer columns rounded, every column within its training range.

Training is the shared loop (`setforge.plugins.generate._gan_training`): Adam (CTGAN's betas
(0.5, 0.9) by default), steps (auto by default: `training_budget`) or epochs, EMA weights with
standing batch-norm statistics (taken with conditions drawn as at sampling time), checkpoints, ``--resume``, divergence checks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from setforge.components import Generator
from setforge.context import StepContext
from setforge.dataset import Dataset
from setforge.errors import DataError

from ._gan_training import refuse_untrained, note_sampled, BatchSampler, GanObjective, GanTrainer, GanTrainingParams, build_module
from ._tabular_encoding import ModeSpecificNormaliser, SpanLayout

__all__ = ["TabularGAN", "TrainingBySampling", "auto_pac"]

#: ``pac: auto``: CTGAN's pac of 10 when a training batch holds at least `AUTO_PAC_PACKS` packs of
#: it (CTGAN's own batch of 500 does), else an unpacked critic. Measured in
#: benchmarks/tabular_quality.py (300 epochs, 3 seeds): with fewer rows per batch, packing cost
#: TSTR on every set tried (wine, 120 rows a batch: pac 10, 5, 2 -> 0.39, pac 1 -> 0.55; breast
#: cancer, 390: pac 10 -> 0.53, 2 -> 0.70, 1 -> 0.76), while at 500 rows a batch (the mixed CSV)
#: pac 10 matched pac 1's TSTR with closer columns and correlations, in 0.6x the CPU time; the same
#: CSV cut into batches of 120 rows: pac 10 -> 0.52, pac 1 -> 0.63 (so it is the batch, not the
#: columns). Neither more rows per batch (500 drawn with replacement, as CTGAN does on small sets:
#: wine 0.28) nor EMA off (0.38) closed the gap at pac 10.
AUTO_PAC, AUTO_PAC_PACKS = 10, 50


def auto_pac(pac: int | str, batch_size: int, rows: int) -> int:
    """The critic's pac: `pac` as given, or for ``auto`` `AUTO_PAC` when a batch (``batch_size`` cut
    down to the `rows` there are) holds at least `AUTO_PAC_PACKS` packs of it, else 1."""
    if pac != "auto":
        return int(pac)
    return AUTO_PAC if min(batch_size, rows) >= AUTO_PAC * AUTO_PAC_PACKS else 1


# ------------------------------------------------------------------------ conditions
def _condition_tables(labels: np.ndarray, codes: np.ndarray, sizes: list[int], num_classes: int) -> np.ndarray:
    """Counts ``(C, J, K)`` of each category of each categorical column within each class."""
    longest = max(sizes, default=1)
    counts = np.zeros((num_classes, len(sizes), longest), dtype=np.int64)
    for j in range(len(sizes)):
        np.add.at(counts[:, j], (labels, codes[:, j]), 1)
    return counts


def _cumulative(weights: np.ndarray) -> np.ndarray:
    """Row-wise cumulative probabilities of non-negative `weights` (last axis); all-zero rows stay 0."""
    total = weights.sum(axis=-1, keepdims=True)
    return np.cumsum(np.divide(weights, total, out=np.zeros_like(weights, dtype=np.float64), where=total > 0), axis=-1)


class TrainingBySampling(BatchSampler):
    """CTGAN's training-by-sampling, within classes, batched.

    ``next()`` draws, for every row of a batch, a class (uniformly among present classes when
    `balanced`, else in proportion to its rows), a categorical column uniformly, a category with
    probability ``log(1 + count) / sum log(1 + count)`` over that column's categories within the
    class (``log_frequency``; else in proportion to the counts), then a row of that class and
    category uniformly. ``labels()`` gives the networks ``(B, 2)``: the class and the condition's
    index in the conditional vector. Without categorical columns it is a `BatchSampler` whose
    labels are ``(class, -1)``. The batch is cut down to a multiple of ``pac``.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, balanced: bool, rng: np.random.Generator, *,
                 codes: np.ndarray, sizes: list[int], num_classes: int, pac: int = 1, log_frequency: bool = True):
        super().__init__(labels, batch_size, balanced, rng)
        self.batch_size = (self.batch_size // pac) * pac
        if self.batch_size < pac:
            raise DataError(f"a batch of {min(batch_size, len(labels))} rows (params.batch_size {batch_size}, "
                            f"{len(labels)} training rows) holds no pack of pac={pac} rows; set params.batch_size "
                            f"to at least {pac}, or a smaller params.pac")
        self.labels_np = np.asarray(labels, dtype=np.int64)
        self.sizes = list(sizes)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        self._last = np.zeros((0, 2), dtype=np.int64)
        class_counts = np.bincount(self.labels_np, minlength=num_classes)
        self.class_cumulative = _cumulative((class_counts > 0).astype(np.float64) if balanced
                                            else class_counts.astype(np.float64))
        if not sizes:
            return
        n, longest = len(labels), max(sizes)
        counts = _condition_tables(self.labels_np, codes, sizes, num_classes)
        weights = np.log1p(counts) if log_frequency else counts.astype(np.float64)
        self.category_cumulative = _cumulative(weights)  # (C, J, K)
        # rows sorted by (column, class, category): a contiguous run per (c, j, k)
        key = self.labels_np[:, None] * longest + codes  # (N, J)
        self.order = np.concatenate([np.argsort(key[:, j], kind="stable") for j in range(len(sizes))])
        self.run_count = counts.transpose(1, 0, 2).reshape(-1)  # (J * C * K,) in (j, c, k) order
        per_column = counts.transpose(1, 0, 2).reshape(len(sizes), -1)  # (J, C * K)
        starts = np.cumsum(per_column, axis=1) - per_column + np.arange(len(sizes))[:, None] * n
        self.run_start = starts.reshape(-1)
        self.num_classes, self.longest = num_classes, longest

    def next(self) -> np.ndarray:
        if not self.sizes:
            rows = super().next()
            self._last = np.stack([self.labels_np[rows], np.full(len(rows), -1)], axis=1)
            return rows
        b = self.batch_size
        classes = (self.class_cumulative < self.rng.random(b)[:, None]).sum(axis=1)
        columns = self.rng.integers(len(self.sizes), size=b)
        cumulative = self.category_cumulative[classes, columns]  # (B, K)
        categories = (cumulative < self.rng.random(b)[:, None]).sum(axis=1)
        categories = np.minimum(categories, np.asarray(self.sizes)[columns] - 1)
        run = (columns * self.num_classes + classes) * self.longest + categories
        within = (self.rng.random(b) * self.run_count[run]).astype(np.int64)
        rows = self.order[self.run_start[run] + within]
        self._last = np.stack([classes, self.offsets[columns] + categories], axis=1)
        return rows

    def labels(self, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._last).to(y.device)


# -------------------------------------------------------------------------- networks
def _condition_vector(labels: torch.Tensor, num_classes: int, conditions: int) -> torch.Tensor:
    """One-hot class and one-hot condition (zeros for -1 or a class-only ``(B,)`` label)."""
    classes = labels if labels.ndim == 1 else labels[:, 0]
    parts = [nn.functional.one_hot(classes, num_classes)]
    if conditions:
        index = labels[:, 1] if labels.ndim == 2 else torch.full_like(classes, -1)
        parts.append(nn.functional.one_hot(index.clamp(min=0), conditions) * (index >= 0)[:, None])
    return torch.cat(parts, dim=1).float()


class _Residual(nn.Module):
    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.fc, self.bn = nn.Linear(inputs, outputs), nn.BatchNorm1d(outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.bn(self.fc(h))), h], dim=1)


class _TabularGenerator(nn.Module):
    """``(z, labels) -> (B, width + conditions)``: activated encoded rows, then the raw logits of
    the categorical spans (for the conditional cross-entropy)."""

    def __init__(self, embedding_dim: int, num_classes: int, spans: list[tuple[int, int]], tanh: list[int],
                 width: int, categorical_positions: list[int], hidden: list[int], tau: float):
        super().__init__()
        self.embedding_dim, self.num_classes, self.tau = embedding_dim, num_classes, tau
        self.layout = SpanLayout(tanh, spans, width)
        self.conditions = len(categorical_positions)
        self.latent_dim = embedding_dim + self.layout.softmax_width  # the tail is Gumbel noise
        self.register_buffer("categorical_positions", torch.as_tensor(categorical_positions, dtype=torch.int64),
                             persistent=False)
        for name in ("softmax_index", "softmax_mask", "tanh_index", "permutation"):
            self.register_buffer(name, getattr(self.layout, name), persistent=False)
        layers: list[nn.Module] = []
        dim = embedding_dim + num_classes + self.conditions
        for h in hidden:
            layers.append(_Residual(dim, h))
            dim += h
        layers.append(nn.Linear(dim, width))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        for name in ("softmax_index", "softmax_mask", "tanh_index", "permutation"):
            setattr(self.layout, name, getattr(self, name))  # the buffers follow .to(device)
        condition = _condition_vector(labels, self.num_classes, self.conditions).to(z.dtype)
        raw = self.net(torch.cat([z[:, :self.embedding_dim], condition], dim=1)).float()
        activated = self.layout.activate(raw, z[:, self.embedding_dim:].float(), self.tau)
        return torch.cat([activated, raw[:, self.categorical_positions]], dim=1)


class _PacCritic(nn.Module):
    """PacGAN critic: ``pac`` consecutive rows (each with its condition) scored together, ``(B / pac,)``."""

    def __init__(self, width: int, num_classes: int, conditions: int, hidden: list[int], pac: int, dropout: float):
        super().__init__()
        self.width, self.num_classes, self.conditions = width, num_classes, conditions
        self.pac, self.dropout = pac, dropout
        dim = pac * (width + num_classes + conditions)
        self.hidden = nn.ModuleList()
        for h in hidden:
            self.hidden.append(nn.Linear(dim, h))
            dim = h
        self.out = nn.Linear(dim, 1)

    def forward(self, rows: torch.Tensor, labels: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        if len(rows) % self.pac:
            raise ValueError(f"the critic scores packs of {self.pac} rows, got {len(rows)} rows")
        condition = _condition_vector(labels, self.num_classes, self.conditions).to(rows.dtype)
        h = torch.cat([rows[:, :self.width], condition], dim=1).reshape(len(rows) // self.pac, -1)
        for layer in self.hidden:
            h = nn.functional.leaky_relu(layer(h), 0.2)
            if self.training and self.dropout > 0 and noise is not None:
                keep = torch.rand(h.shape, generator=noise, device=h.device) >= self.dropout
                h = h * keep / (1.0 - self.dropout)
        return self.out(h).squeeze(1)


class _PacWassersteinGP(GanObjective):
    """WGAN-GP (Gulrajani et al., 2017) with the penalty per pack (CTGAN's), plus the generator's
    cross-entropy on the conditioned column. Dropout masks and interpolation weights come from
    `noise` (the step's generator)."""

    def __init__(self, width: int, sizes: list[int], pac: int, penalty: float, noise: torch.Generator,
                 device: torch.device):
        self.width, self.pac, self.penalty, self.noise = width, pac, penalty, noise
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) if sizes else np.zeros(1, np.int64)
        column_of = np.repeat(np.arange(len(sizes)), sizes) if sizes else np.zeros(0, np.int64)
        self.column_of = torch.as_tensor(column_of, dtype=torch.int64, device=device)
        self.conditions = int(offsets[-1])

    def discriminator_loss(self, discriminator, real, fake, real_labels, fake_labels):
        real_score = discriminator(real, real_labels, self.noise).float()
        fake_rows = fake[:, :self.width]
        fake_score = discriminator(fake_rows, fake_labels, self.noise).float()
        alpha = torch.rand((len(real) // self.pac, 1), generator=self.noise, device=real.device)
        alpha = alpha.repeat_interleave(self.pac, dim=0)
        mixed = (alpha * real.float() + (1.0 - alpha) * fake_rows.float()).requires_grad_(True)
        score = discriminator(mixed, real_labels, self.noise).float()
        gradient, = torch.autograd.grad(score.sum(), mixed, create_graph=True)
        norms = gradient.reshape(len(real) // self.pac, -1).norm(dim=1)
        penalty = self.penalty * ((norms - 1.0) ** 2).mean()
        distance = real_score.mean() - fake_score.mean()
        return {"discriminator": penalty - distance, "wasserstein": distance.detach(), "penalty": penalty.detach()}

    def generator_loss(self, discriminator, fake, labels):
        adversarial = -discriminator(fake[:, :self.width], labels, self.noise).float().mean()
        if not self.conditions or labels.ndim != 2:
            return {"generator": adversarial}
        condition = labels[:, 1]
        conditioned = condition >= 0
        logits = fake[:, self.width:].float()
        same_column = self.column_of[None, :] == self.column_of[condition.clamp(min=0)][:, None]
        normaliser = torch.logsumexp(logits.masked_fill(~same_column, float("-inf")), dim=1)
        picked = logits.gather(1, condition.clamp(min=0)[:, None]).squeeze(1)
        cross_entropy = ((normaliser - picked) * conditioned).sum() / len(fake)
        return {"generator": adversarial + cross_entropy, "cross_entropy": cross_entropy.detach()}


@torch.no_grad()
def _init_linear(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default linear init (uniform within 1/sqrt(fan_in)) from `generator`; batch norm at (1, 0)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            bound = 1.0 / sub.weight.shape[1] ** 0.5
            for param in (sub.weight, sub.bias):
                values = torch.rand(param.shape, generator=generator, device=generator.device) * (2 * bound) - bound
                param.copy_(values.to(param.device))
        elif isinstance(sub, nn.BatchNorm1d):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
            sub.reset_running_stats()


# ------------------------------------------------------------------------- generator
class TabularGAN(Generator):
    """CTGAN for tables: mode-specific normalisation, training-by-sampling, PacGAN critic with WGAN-GP; class-conditional."""

    name = "tabular-gan"
    modalities = ("tabular",)
    testing_data: ClassVar[Mapping[str, Any]] = {"categorical": "some"}
    testing_params: ClassVar[Mapping[str, Any]] = {"steps": 3, "batch_size": 20, "embedding_dim": 8,
                                                   "generator_dims": [16], "critic_dims": [16], "max_modes": 3}

    class Params(GanTrainingParams):
        """CTGAN's params (its defaults); the training ones are the shared loop's."""

        batch_size: int = Field(500, ge=2, le=65536, description="real rows per training batch (cut down to a "
                                                                 "multiple of pac and to the rows there are)")
        beta2: float = Field(0.9, ge=0.0, lt=1.0, description="Adam beta2 (0.9 in CTGAN)")
        embedding_dim: int = Field(128, ge=1, le=4096, description="size of the generator's latent input")
        generator_dims: list[int] = Field([256, 256], min_length=1, max_length=8,
                                          description="widths of the generator's residual blocks")
        critic_dims: list[int] = Field([256, 256], min_length=1, max_length=8,
                                       description="widths of the critic's hidden layers")
        pac: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
            "auto", description="rows the PacGAN critic scores together; auto: 10 (CTGAN's) when a batch holds at "
                                "least 50 packs of 10, else 1 (no packing)")
        dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout after each critic layer")
        gradient_penalty: float = Field(10.0, ge=0.0, description="WGAN-GP penalty weight (lambda)")
        tau: float = Field(0.2, gt=0.0, le=10.0, description="Gumbel-softmax temperature of the one-hot outputs")
        max_modes: int = Field(10, ge=1, le=100, description="most Gaussian modes per continuous column")
        mode_weight_threshold: float = Field(0.005, ge=0.0, lt=1.0,
                                             description="modes of a smaller mixture weight are dropped")
        log_frequency: bool = Field(True, description="draw training conditions by log frequency (CTGAN's "
                                                      "training-by-sampling); false: by frequency")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self._net: _TabularGenerator | None = None
        self._normaliser: ModeSpecificNormaliser | None = None
        self._architecture: dict[str, Any] = {}
        self._sampling_cumulative: torch.Tensor | None = None  # (C, J, K) real category frequencies per class
        self._trained_classes: list[int] = []
        self.result = None

    # ------------------------------------------------------------------ build
    @staticmethod
    def _build_generator(a: Mapping[str, Any], normaliser: ModeSpecificNormaliser,
                         device: torch.device | str) -> _TabularGenerator:
        layout = normaliser.layout
        return build_module(lambda: _TabularGenerator(
            int(a["embedding_dim"]), int(a["num_classes"]), layout.spans, layout.tanh_index.tolist(), layout.width,
            normaliser.categorical_positions.tolist(), [int(h) for h in a["generator_dims"]], float(a["tau"])), device)

    def _fit(self, ds: Dataset, ctx: StepContext) -> None:
        p = self.params
        pac = auto_pac(p.pac, p.batch_size, len(ds))
        if len(ds) < pac:
            raise DataError(f"generate '{self.name}': needs at least pac={pac} training rows, got {len(ds)}; "
                            f"lower pac")
        x = ds.x.detach().double().cpu().numpy()
        labels = ds.y.cpu().numpy()
        encoding_rng = ctx.rng.spawn("encoding")
        normaliser = ModeSpecificNormaliser(p.max_modes, p.mode_weight_threshold)
        normaliser.fit(x, ds.features, encoding_rng.sk_seed())
        encoded = torch.from_numpy(normaliser.transform(x, encoding_rng.numpy)).to(ctx.device)
        sizes = normaliser.category_sizes
        codes = x[:, normaliser.categorical_columns].astype(np.int64)
        num_classes = len(ds.classes)
        self._architecture = {"embedding_dim": p.embedding_dim, "num_classes": num_classes,
                              "generator_dims": list(p.generator_dims), "tau": p.tau}
        generator = self._build_generator(self._architecture, normaliser, ctx.device)
        critic = build_module(lambda: _PacCritic(normaliser.width, num_classes, sum(sizes), list(p.critic_dims),
                                                 pac, p.dropout), ctx.device)
        _init_linear(generator, ctx.rng.torch)
        _init_linear(critic, ctx.rng.torch)
        objective = _PacWassersteinGP(normaliser.width, sizes, pac, p.gradient_penalty, ctx.rng.torch, ctx.device)
        sampler = functools.partial(TrainingBySampling, codes=codes, sizes=sizes, num_classes=num_classes, pac=pac,
                                    log_frequency=p.log_frequency)
        # what sampling needs, known before training, so the quality monitor samples as `_sample` does
        self._normaliser = normaliser
        counts = _condition_tables(labels, codes, sizes, num_classes).astype(np.float64)
        self._sampling_cumulative = torch.from_numpy(_cumulative(counts))
        trainer = GanTrainer(generator, critic, objective, p, name=self.name, image_grids=False, make_sampler=sampler,
                             decode=lambda t: normaliser.inverse(t[:, :normaliser.width]),
                             condition=lambda classes, draw: torch.stack([classes, self._conditions(classes, draw)], 1))
        self.result = trainer.fit(encoded, ds.y, num_classes, ctx, data_fingerprint=ds.fingerprint())
        self.training_report = self.result.report(pac=pac)
        self._trained_classes = sorted(set(labels.tolist()))
        self._net = self.result.sampler
        # (the trainer's standing batch-norm statistics were taken with conditions drawn as `_sample`
        # draws them, through `condition`: nothing to refresh here)

    def _conditions(self, classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Condition indices for rows of `classes`: a categorical column uniformly, a category by its real
        frequency within the class; -1 without categorical columns."""
        sizes = self._normaliser.category_sizes
        if not sizes:
            return torch.full_like(classes, -1)
        device = classes.device
        cumulative = self._sampling_cumulative.to(device)
        columns = torch.randint(len(sizes), (len(classes),), generator=generator, device=device)
        u = torch.rand((len(classes), 1), generator=generator, device=device, dtype=torch.float64)
        categories = (cumulative[classes, columns] < u).sum(dim=1)
        size = torch.as_tensor(sizes, device=device)
        categories = torch.minimum(categories, size[columns] - 1)
        offsets = torch.cumsum(size, 0) - size
        return offsets[columns] + categories

    # ----------------------------------------------------------------- sample
    def _sample(self, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        refuse_untrained(self, labels, self._trained_classes)
        note_sampled(self, labels)
        net = self._net
        if next(net.parameters()).device != ctx.device:
            net = self._net = net.to(ctx.device)
        conditioned = torch.stack([labels, self._conditions(labels, ctx.rng.torch)], dim=1)
        z = torch.randn(len(labels), net.latent_dim, generator=ctx.rng.torch, device=ctx.device)
        encoded = net(z, conditioned)[:, :self._normaliser.width]
        return self._normaliser.inverse(encoded)

    # ------------------------------------------------------------------ state
    def _state_dict(self) -> dict[str, Any]:
        return {"architecture": dict(self._architecture), "trained_classes": list(self._trained_classes),
                "normaliser": self._normaliser.state_dict(), "sampling_cumulative": self._sampling_cumulative,
                "generator": {k: v.contiguous() for k, v in self._net.state_dict().items()}}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._normaliser = ModeSpecificNormaliser.from_state_dict(state["normaliser"])
        self._architecture = dict(state["architecture"])
        weights = state["generator"]
        device = next(iter(weights.values())).device
        generator = self._build_generator(self._architecture, self._normaliser, device)
        generator.load_state_dict(weights)
        self._net = generator.eval().requires_grad_(False)
        self._sampling_cumulative = state["sampling_cumulative"].cpu()
        self._trained_classes = [int(c) for c in state["trained_classes"]]
