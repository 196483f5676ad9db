"""Small, real components used by the core's tests (and written to temporary plugin packages)."""

from __future__ import annotations

import torch
from pydantic import Field

from setforge import Augmenter, Evaluator, Generator, Metrics, Origin, Preprocessor, Resampler

TOYS_SOURCE = '''
import torch
from pydantic import Field
from setforge import Augmenter, Evaluator, Generator, Metrics, hookimpl


class Brighten(Augmenter):
    """Adds a per-row random amount of brightness."""

    name = "toy-brighten"

    class Params(Augmenter.Params):
        amount: float = Field(0.2, ge=0.0, le=1.0)

    def _make_params(self, x, y, generator):
        return {"delta": torch.rand(x.shape[0], generator=generator, device=x.device) * self.params.amount}

    def _transform(self, x, y, params):
        return (x + params["delta"].view(-1, 1, 1, 1)).clamp(0, 1)


class ClassMean(Generator):
    """Samples the class mean plus noise."""

    name = "toy-class-mean"
    modalities = ("image", "tabular")

    class Params(Generator.Params):
        noise: float = Field(0.01, ge=0.0)

    def _fit(self, ds, ctx):
        self.means = torch.stack([ds.x[ds.y == c].mean(0) for c in range(ds.num_classes)])

    def _sample(self, labels, ctx):
        out = self.means[labels] + self.params.noise * torch.randn(
            (len(labels), *self.row_shape), generator=ctx.rng.torch, device=ctx.device)
        return out.clamp(0, 1) if self.modality == "image" else out

    def _state_dict(self):
        return {"means": self.means}

    def _load_state_dict(self, state):
        self.means = state["means"]


class RowCount(Evaluator):
    """Counts rows of the optimised training set."""

    name = "toy-row-count"

    def _evaluate(self, ectx):
        metrics = Metrics()
        metrics.add("rows", len(ectx.train), n=len(ectx.train))
        return metrics


@hookimpl
def setforge_register_augmenters():
    return [Brighten]


@hookimpl
def setforge_register_generators():
    return [ClassMean]


@hookimpl
def setforge_register_evaluators():
    return [RowCount]
'''

namespace: dict = {}
exec(compile(TOYS_SOURCE, "<toys>", "exec"), namespace)  # one definition serves the tests and the plugin files
Brighten = namespace["Brighten"]
ClassMean = namespace["ClassMean"]
RowCount = namespace["RowCount"]


class Duplicate(Resampler):
    """Adds one copy of every row of the last class."""

    name = "toy-duplicate"
    modalities = ("image", "tabular")

    def _resample(self, ds, ctx):
        rows = (ds.y == ds.num_classes - 1).nonzero().flatten()
        return torch.arange(len(ds), device=ds.device), ds.x[rows], ds.y[rows], rows


class Scale(Preprocessor):
    """Multiplies tabular values by a learnt factor (1 / max |x| on train)."""

    name = "toy-scale"
    modalities = ("tabular",)
    changes_units = True

    def _fit(self, train, ctx):
        self.factor = 1.0 / float(train.x.abs().max())

    def _transform(self, ds):
        return ds.replace(x=ds.x * self.factor)

    def _inverse(self, ds):
        return ds.replace(x=ds.x / self.factor)

    def _state_dict(self):
        return {"factor": self.factor}

    def _load_state_dict(self, state):
        self.factor = float(state["factor"])


class Leaky(Augmenter):
    """Breaks the contract: returns values outside [0, 1] and ignores its generator."""

    name = "toy-leaky"

    def _transform(self, x, y, params):
        return x * 3 + torch.rand(x.shape)


__all__ = ["Brighten", "ClassMean", "RowCount", "Duplicate", "Scale", "Leaky", "TOYS_SOURCE", "Field", "Origin"]
