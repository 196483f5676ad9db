"""``ctgan``: the conditional tabular GAN of Xu et al. (2019), from the ``ctgan`` package.

The class label is one more discrete column of the table CTGAN learns, and rows for a label are
sampled with CTGAN's conditional vector set to that label (``sample(n, condition_column,
condition_value)``). CTGAN's conditioning raises the label's probability but does not guarantee
it, so rows whose generated label differs are drawn again (up to ``max_redraws`` times) before the
remaining ones keep the requested label.

Randomness: ctgan draws from numpy's and torch's global generators; every fit and sample runs
inside ctgan's own ``set_random_state`` context, seeded from the step's `Rng`, which restores the
global state afterwards, so a run is reproducible on the CPU and the host's RNG is untouched.

Saving: a checkpoint holds tensors and plain values only (setforge loads with
``weights_only=True``): the generator's weights, CTGAN's params, the training table and the seed
the data transformer was fitted with. Loading fits the transformer again from those (it is a
deterministic function of table and seed) and puts the weights back, so no pickled code is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from setforge import Generator, PluginError, StepContext
from setforge.dataset import Dataset

__all__ = ["CtganGenerator", "LABEL_COLUMN"]

LABEL_COLUMN = "__setforge_label__"


def _seeded(seed: int):
    """ctgan's context manager that seeds numpy's and torch's global RNG and restores them after."""
    from ctgan.synthesizers.base import set_random_states

    return set_random_states((np.random.RandomState(seed), torch.Generator().manual_seed(seed)), lambda state: None)


class CtganGenerator(Generator):
    """CTGAN (ctgan package): mode-specific normalisation and a conditional GAN for mixed tabular columns."""

    name = "ctgan"
    modalities = ("tabular",)
    testing_params = {"epochs": 1, "batch_size": 20, "embedding_dim": 8, "generator_dim": [16],
                      "discriminator_dim": [16], "max_redraws": 1}
    testing_data = {"categorical": "all"}  # discrete columns only: fast (no Gaussian mixtures) in the kit

    class Params(Generator.Params):
        """CTGAN's training params (names as in the ctgan package)."""

        epochs: int = Field(300, ge=1, le=100_000, description="training epochs")
        batch_size: int = Field(500, ge=2, le=1_000_000, description="rows per batch (a multiple of pac, even)")
        embedding_dim: int = Field(128, ge=1, le=4096, description="size of the generator's noise input")
        generator_dim: list[int] = Field([256, 256], min_length=1, description="the generator's residual layers")
        discriminator_dim: list[int] = Field([256, 256], min_length=1, description="the discriminator's layers")
        generator_lr: float = Field(2e-4, gt=0.0, le=1.0, description="generator Adam learning rate")
        discriminator_lr: float = Field(2e-4, gt=0.0, le=1.0, description="discriminator Adam learning rate")
        generator_decay: float = Field(1e-6, ge=0.0, le=1.0, description="generator weight decay")
        discriminator_decay: float = Field(1e-6, ge=0.0, le=1.0, description="discriminator weight decay")
        discriminator_steps: int = Field(1, ge=1, le=100, description="discriminator updates per generator update")
        pac: int = Field(10, ge=1, le=100, description="rows the discriminator judges together (PacGAN)")
        log_frequency: bool = Field(True, description="sample conditions by log frequency while training")
        max_redraws: int = Field(10, ge=0, le=1000, description="times rows of the wrong generated label are "
                                                                "drawn again")

        @field_validator("generator_dim", "discriminator_dim")
        @classmethod
        def _positive(cls, value: list[int]) -> list[int]:
            if any(v < 1 for v in value):
                raise ValueError(f"layer sizes must be >= 1, got {value}")
            return value

        @model_validator(mode="after")
        def _batches(self):
            if self.batch_size % 2 or self.batch_size % self.pac:
                raise ValueError(f"batch_size ({self.batch_size}) must be even and a multiple of pac ({self.pac})")
            return self

    # ------------------------------------------------------------------------ helpers
    def _frame(self, x: torch.Tensor, y: torch.Tensor):
        """The table CTGAN sees: numeric columns as floats, categorical codes and the label as ints."""
        import pandas as pd

        names, categorical = list(self.features.names), self.features.categorical
        values = x.detach().cpu().numpy()
        frame = pd.DataFrame({n: (values[:, i].round().astype(np.int64) if n in categorical else values[:, i])
                              for i, n in enumerate(names)})
        frame[LABEL_COLUMN] = y.detach().cpu().numpy().astype(np.int64)
        return frame, [n for n in names if n in categorical] + [LABEL_COLUMN]

    def _model(self, device: torch.device):
        from ctgan import CTGAN

        p = self.params
        model = CTGAN(embedding_dim=p.embedding_dim, generator_dim=tuple(p.generator_dim),
                      discriminator_dim=tuple(p.discriminator_dim), generator_lr=p.generator_lr,
                      generator_decay=p.generator_decay, discriminator_lr=p.discriminator_lr,
                      discriminator_decay=p.discriminator_decay, batch_size=p.batch_size,
                      discriminator_steps=p.discriminator_steps, log_frequency=p.log_frequency, epochs=p.epochs,
                      pac=p.pac, enable_gpu=device.type == "cuda", verbose=False)
        model.set_device(device)
        return model

    def _require_features(self, ds: Dataset) -> None:
        if ds.features is None:
            raise PluginError("generate 'ctgan' needs the columns' FeatureInfo (a tabular source sets it)")

    # ---------------------------------------------------------------------- contract
    def _fit(self, ds: Dataset, ctx: StepContext) -> None:
        self._require_features(ds)
        self.seed = ctx.rng.sk_seed()
        self.device = torch.device(ctx.device)
        frame, discrete = self._frame(ds.x, ds.y)
        self.train_x, self.train_y = ds.x.detach().cpu().clone(), ds.y.detach().cpu().clone()
        self.model = self._model(self.device)
        self.model.set_random_state(self.seed)
        self.model.fit(frame, discrete)

    def _sample(self, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        names = list(self.features.names)
        out = torch.empty((len(labels), len(names)), dtype=torch.float32)
        for c in labels.unique().tolist():
            where = (labels == c).nonzero().flatten().cpu()
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.rng.torch, device=ctx.rng.torch.device))
            self.model.set_random_state(seed)
            rows = self._rows_of_class(c, len(where))
            out[where] = torch.as_tensor(rows[names].to_numpy(dtype=np.float64), dtype=torch.float32)
        return out.to(ctx.device)

    def _rows_of_class(self, label: int, count: int):
        import pandas as pd

        kept, missing = [], count
        for _ in range(self.params.max_redraws + 1):
            rows = self.model.sample(missing, condition_column=LABEL_COLUMN, condition_value=label)
            good = rows[rows[LABEL_COLUMN] == label]
            kept.append(good)
            missing -= len(good)
            if missing <= 0:
                break
        if missing > 0:  # the rest keep the requested label (the conditioning vector asked for it): the last
            # draw's rows that came out with another one, not its good rows, which are kept already
            kept.append(rows[rows[LABEL_COLUMN] != label].iloc[:missing])
        return pd.concat(kept).iloc[:count]

    def _state_dict(self) -> dict[str, Any]:
        generator = self.model._generator  # noqa: SLF001 - ctgan keeps its trained network here
        return {"params": self.params.model_dump(mode="json", exclude={"checkpoint"}), "seed": self.seed,
                "train_x": self.train_x, "train_y": self.train_y,
                "features": self.features.to_dict(),
                "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items()}}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        from ctgan.data_sampler import DataSampler
        from ctgan.data_transformer import DataTransformer
        from ctgan.synthesizers.ctgan import Generator as CtganNetwork

        from setforge.dataset import FeatureInfo

        self.features = FeatureInfo.from_dict(state["features"])
        self.seed = int(state["seed"])
        self.train_x, self.train_y = state["train_x"], state["train_y"]
        device = torch.device(getattr(self, "device", "cpu"))
        self.model = self._model(device)
        frame, discrete = self._frame(self.train_x, self.train_y)
        model = self.model
        # What CTGAN.fit does before training, under the seed the fit ran with: the transformer is
        # a function of the table and that seed, so it comes back identical.
        with _seeded(self.seed):
            model._transformer = DataTransformer()  # noqa: SLF001
            model._transformer.fit(frame, discrete)  # noqa: SLF001
            transformed = model._transformer.transform(frame)  # noqa: SLF001
        model._data_sampler = DataSampler(transformed, model._transformer.output_info_list,  # noqa: SLF001
                                          model._log_frequency)  # noqa: SLF001
        network = CtganNetwork(model._embedding_dim + model._data_sampler.dim_cond_vec(),  # noqa: SLF001
                               model._generator_dim, model._transformer.output_dimensions)  # noqa: SLF001
        network.load_state_dict({k: torch.as_tensor(v) for k, v in state["generator"].items()})
        model._generator = network.to(model._device)  # noqa: SLF001
