"""Small components for the pipeline's tests, loaded as a local plugin file (``plugins: [this file]``).

Everything here is deterministic and tiny, so whole runs take well under a second of work.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from setforge import (Augmenter, Dataset, DataError, Evaluator, Event, FeatureInfo, Generator, Metrics, Preprocessor,
                      Resampler, Source, Splits, hookimpl)

#: Every event the observer below received, in order (kind, step, name).
EVENTS: list[tuple[str, int | None, str | None]] = []
#: (step position, rng seed, rng key) of every toy-record call.
RNG_SEEN: list[tuple[int, int, tuple]] = []
#: Rows each toy-mean generator was fitted on.
FITTED: list[int] = []


class Blobs(Source):
    """Three Gaussian blobs in 4 columns, with optional planted duplicates, NaN rows and groups."""

    name = "toy-blobs"
    modalities = ("tabular",)

    class Params(Source.Params):
        per_class: list[int] = Field([30, 20, 10], description="rows per class")
        duplicates: int = Field(0, ge=0, description="exact copies of the first rows appended")
        nan_rows: int = Field(0, ge=0, description="rows with a NaN appended (invalid)")
        group_size: int = Field(0, ge=0, description="rows per group (0: no groups)")
        own_split: bool = Field(False, description="give Splits(train, test) with a leaked copy")

    def _load(self, ctx):
        rng = np.random.default_rng(7)
        xs, ys = [], []
        for c, n in enumerate(self.params.per_class):
            xs.append(rng.normal(3.0 * c, 1.0, size=(n, 4)))
            ys.append(np.full(n, c))
        x, y = np.concatenate(xs), np.concatenate(ys)
        if self.params.duplicates:
            x = np.concatenate([x, x[: self.params.duplicates]])
            y = np.concatenate([y, y[: self.params.duplicates]])
        keep = np.ones(len(x), dtype=bool)
        if self.params.nan_rows:
            bad = np.full((self.params.nan_rows, 4), np.nan)
            x = np.concatenate([x, bad])
            y = np.concatenate([y, np.zeros(self.params.nan_rows, dtype=y.dtype)])
            keep = np.concatenate([keep, np.zeros(self.params.nan_rows, dtype=bool)])
            for row in np.flatnonzero(~keep):
                self._invalid(f"row {row}, column 0", "missing value")
        x, y = x[keep], y[keep]
        groups = None if not self.params.group_size else torch.arange(len(x)) // self.params.group_size
        features = FeatureInfo(names=("a", "b", "c", "d"), dtypes={"a": "float64"})
        ds = Dataset(x=torch.tensor(x, dtype=torch.float32), y=torch.tensor(y), classes=("c0", "c1", "c2"),
                     modality="tabular", groups=groups, features=features).to(ctx.device)
        if not self.params.own_split:
            return ds
        test_index = torch.arange(0, len(ds), 5)
        train_mask = torch.ones(len(ds), dtype=torch.bool)
        train_mask[test_index] = False
        train = ds[train_mask]
        # A copy of the first test row in train, with another label: a leak only x can reveal.
        leak = ds[test_index[:1]].replace(y=torch.tensor([1]), row_id=None)
        return Splits(train=Dataset.concat([train, leak]).replace(row_id=None),
                      test=ds[test_index].replace(row_id=None))


class Jitter(Augmenter):
    """Adds per-row uniform noise of size `amount`."""

    name = "toy-jitter"
    modalities = ("tabular", "image")

    class Params(Augmenter.Params):
        amount: float = Field(0.1, ge=0.0)

    def _make_params(self, x, y, generator):
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return {"delta": (torch.rand(shape, generator=generator, device=x.device) - 0.5) * 2 * self.params.amount}

    def _transform(self, x, y, params):
        out = x + params["delta"]
        return out.clamp(0, 1) if x.ndim == 4 else out


class Shift(Augmenter):
    """Adds a constant."""

    name = "toy-shift"
    modalities = ("tabular", "image")

    class Params(Augmenter.Params):
        by: float = Field(1.0)

    def _transform(self, x, y, params):
        return x + self.params.by


class Record(Augmenter):
    """Copies rows unchanged and records the step's Rng."""

    name = "toy-record"
    modalities = ("tabular", "image")

    def _make_params(self, x, y, generator):
        return {}

    def _transform(self, x, y, params):
        return x.clone()


class RecordingAugment(Record):
    """Records the step context's Rng when called by the host."""

    name = "toy-record-rng"

    def augment(self, ds, ctx, copies=1, rows=None):
        RNG_SEEN.append((ctx.step, ctx.rng.seed, ctx.rng.key))
        return super().augment(ds, ctx, copies=copies, rows=rows)


class OverToLargest(Resampler):
    """Duplicates random rows of each class up to the largest class (a tiny random over-sampler)."""

    name = "toy-over"
    modalities = ("tabular", "image")

    def expected_counts(self, counts, classes):
        return [max(counts)] * len(counts)

    def _resample(self, ds, ctx):
        counts = ds.class_counts()
        rng = ctx.rng.numpy
        new = []
        for c, n in enumerate(counts):
            members = np.flatnonzero(ds.y.cpu().numpy() == c)
            if n and n < max(counts):
                new.append(rng.choice(members, size=max(counts) - n, replace=True))
        index = torch.as_tensor(np.concatenate(new) if new else np.zeros(0, dtype=np.int64), device=ds.device)
        return torch.arange(len(ds), device=ds.device), ds.x[index], ds.y[index], index


class UnderToSmallest(Resampler):
    """Keeps the first rows of each class, as many as the smallest class has."""

    name = "toy-under"
    modalities = ("tabular", "image")

    def _resample(self, ds, ctx):
        smallest = min(n for n in ds.class_counts() if n)
        keep = torch.cat([(ds.y == c).nonzero().flatten()[:smallest] for c in range(ds.num_classes)])
        empty = ds.x[:0]
        return keep.sort().values, empty, ds.y[:0], ds.y[:0]


class Slow(Resampler):
    """Writes ``started`` into its workdir, then sleeps (for the kill test); keeps every row."""

    name = "toy-slow"
    modalities = ("tabular", "image")

    class Params(Resampler.Params):
        seconds: float = Field(60.0, ge=0.0)

    def _resample(self, ds, ctx):
        (ctx.ensure_workdir() / "started").write_text("yes")
        time.sleep(self.params.seconds)
        return torch.arange(len(ds)), ds.x[:0], ds.y[:0], ds.y[:0]


class Counter(Resampler):
    """Keeps every row and appends a line to `path` each time it runs (for the resume test)."""

    name = "toy-counter"
    modalities = ("tabular", "image")

    class Params(Resampler.Params):
        path: str = Field("", description="file to append to")

    def _resample(self, ds, ctx):
        with open(self.params.path, "a") as handle:
            handle.write("ran\n")
        return torch.arange(len(ds)), ds.x[:0], ds.y[:0], ds.y[:0]


class Fail(Resampler):
    """Raises a DataError when `fail` is true, else keeps every row."""

    name = "toy-fail"
    modalities = ("tabular", "image")

    class Params(Resampler.Params):
        fail: bool = Field(True)

    def _resample(self, ds, ctx):
        if self.params.fail:
            raise DataError("toy-fail was asked to fail")
        return torch.arange(len(ds)), ds.x[:0], ds.y[:0], ds.y[:0]


class Spoiler(Evaluator):
    """Modifies the test split in place (which the host must catch)."""

    name = "toy-spoil-test"
    modalities = ("tabular",)

    def _evaluate(self, ectx):
        ectx.test.x[0, 0] += 1.0
        return Metrics()


class ClassMean(Generator):
    """The class mean of the rows it was fitted on, plus a little noise."""

    name = "toy-mean"
    modalities = ("tabular", "image")

    def _fit(self, ds, ctx):
        FITTED.append(len(ds))
        # one training curve point: the rows it was fitted on (a replay on other rows differs)
        ctx.emit(Event("train_progress", step=ctx.step if ctx.step >= 0 else None, name=self.name,
                       data={"iteration": 1, "total": 1, "losses": {"rows": float(len(ds))}}))
        self.means = torch.stack([ds.x[ds.y == c].mean(0) if bool((ds.y == c).any()) else ds.x.mean(0)
                                  for c in range(ds.num_classes)])

    def _sample(self, labels, ctx):
        noise = 0.01 * torch.randn((len(labels), *self.row_shape), generator=ctx.rng.torch, device=ctx.device)
        out = self.means[labels] + noise
        return out.clamp(0, 1) if self.modality == "image" else out

    def _state_dict(self):
        return {"means": self.means}

    def _load_state_dict(self, state):
        self.means = state["means"]


class Scale(Preprocessor):
    """Divides every column by its training standard deviation (changes units)."""

    name = "toy-scale"
    modalities = ("tabular",)
    changes_units = True

    def _fit(self, train, ctx):
        self.std = train.x.std(0).clamp(min=1e-6)

    def _transform(self, ds):
        return ds.replace(x=ds.x / self.std.to(ds.device))

    def _inverse(self, ds):
        return ds.replace(x=ds.x * self.std.to(ds.device))

    def _state_dict(self):
        return {"std": self.std.cpu()}

    def _load_state_dict(self, state):
        self.std = state["std"]


@hookimpl
def setforge_register_sources():
    return [Blobs]


@hookimpl
def setforge_register_preprocessors():
    return [Scale]


@hookimpl
def setforge_register_augmenters():
    return [Jitter, Shift, Record, RecordingAugment]


@hookimpl
def setforge_register_resamplers():
    return [OverToLargest, UnderToSmallest, Slow, Counter, Fail]


@hookimpl
def setforge_register_generators():
    return [ClassMean]


@hookimpl
def setforge_register_evaluators():
    return [Spoiler]


@hookimpl
def setforge_on_event(event):
    EVENTS.append((event.kind, event.step, event.name))


TOYS_FILE = Path(__file__)
