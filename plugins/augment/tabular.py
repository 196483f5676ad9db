"""Tabular augmenters: `FeatureNoise` and within-class `Mixup`.

Both read the column types from ``ds.features`` (`FeatureInfo`) and per-class statistics from the
step's input in ``_fit`` (``augment`` calls it; call ``fit(ds)`` before using one as an
``nn.Module``). Categorical columns hold codes and are never blurred or interpolated: they are kept
(the parent row's code) or, with ``categorical: resample``, drawn from the codes of the row's
class. Integer columns (an ``int``/``uint``/``bool`` original dtype in ``FeatureInfo.dtypes``, whole
numbers in the step's input) come out rounded and within the range of the step's input, so a new
row never holds 2.4 or -1 children. Used as an ``nn.Module`` without ``fit``, statistics come from
the batch itself and every column counts as numeric.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from setforge.components import Augmenter
from setforge.dataset import Dataset
from setforge.errors import DataError

from .._shared.columns import IntegerColumns
from ._ranges import uniform, value

__all__ = ["FeatureNoise", "Mixup"]

NoiseScale = value(0.0, 10.0)
Categorical = Literal["keep", "resample"]


def class_std(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, D)`` standard deviation of each column within each class (0 for classes of one row).

    Sums go through a one-hot matrix product rather than ``index_add_``, whose float atomics on
    a GPU would make the statistics, and so the rows, differ from run to run in the last bits.
    """
    member = torch.nn.functional.one_hot(y, num_classes).to(x.dtype).T  # (K, N)
    counts = member.sum(dim=1, keepdim=True)
    means = member @ x / counts.clamp(min=1)
    squares = member @ (x - means[y]).square()
    return (squares / (counts - 1).clamp(min=1)).sqrt()


def sample_gamma(shape: float, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` Gamma(`shape`, 1) draws from `generator` (Marsaglia and Tsang; rejection rounds, not rows,
    loop; a shape below 1 is boosted by ``U ** (1 / shape)``)."""
    boosted = shape < 1.0
    d = (shape + 1.0 if boosted else shape) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, device=device, dtype=torch.float64)
    pending = torch.arange(n, device=device)
    while pending.numel():
        z = torch.randn(pending.numel(), generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(pending.numel(), generator=generator, device=device, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        accept = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp(min=1e-300)))
        out[pending[accept]] = d * v[accept]
        pending = pending[~accept]
    if boosted:
        out *= torch.rand(n, generator=generator, device=device, dtype=torch.float64) ** (1.0 / shape)
    return out


def sample_beta(alpha: float, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` Beta(`alpha`, `alpha`) draws as float32 (two Gamma draws; 0.5 where both underflow)."""
    a = sample_gamma(alpha, n, generator, device)
    b = sample_gamma(alpha, n, generator, device)
    total = a + b
    return torch.where(total > 0, a / total.clamp(min=1e-300), 0.5).to(torch.float32)


class _Tabular(Augmenter):
    """Shared: column types and per-class statistics learnt in ``_fit``."""

    modalities = ("tabular",)
    streams = False  # the per-class statistics come from every row of the step's input

    def __init__(self, params=None):
        super().__init__(params)
        self.categorical: list[int] = []
        self.std: torch.Tensor | None = None
        self.code_tables: list[torch.Tensor] = []  # per categorical column: (K, M) cumulative class frequencies
        self.integer: IntegerColumns | None = None  # numeric columns of whole numbers with an integer dtype

    def _fit(self, ds: Dataset) -> None:
        self._check_modality(ds)
        self.categorical = [] if ds.features is None else ds.features.categorical_indices
        self.std = class_std(ds.x, ds.y, ds.num_classes)
        self.code_tables = []
        for column in self.categorical:
            name = ds.features.names[column]  # type: ignore[union-attr]
            size = max(len(ds.features.categorical[name]), int(ds.x[:, column].max().item()) + 1)  # type: ignore[union-attr]
            codes = ds.x[:, column].round().to(torch.int64)
            member = torch.nn.functional.one_hot(ds.y, ds.num_classes).to(torch.float32).T
            counts = member @ torch.nn.functional.one_hot(codes, size).to(torch.float32)  # (K, M)
            self.code_tables.append(counts.cumsum(dim=1) / counts.sum(dim=1, keepdim=True).clamp(min=1))
        self.integer = IntegerColumns(ds)

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise DataError(f"augment '{self.name}' works within classes and needs the labels: call it as "
                            f"aug(x, y) or through augment(ds, ctx)")
        # (an unlabelled row's -1 would index the last class's statistics, or fail inside torch)
        if len(y) and int(y.min().item()) < 0:
            raise DataError(f"augment '{self.name}' works within classes and takes class ids 0..K-1 as labels, got "
                            f"{int(y.min().item())}; leave unlabelled rows (label -1) out of the batch")
        return y

    def _draw_codes(self, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Per row, one code per categorical column drawn from the row's class (``categorical: resample``)."""
        codes = [torch.searchsorted(table[y], torch.rand(len(y), 1, generator=generator, device=y.device),
                                    right=True).clamp_(max=table.shape[1] - 1).squeeze(1)
                 for table in self.code_tables]
        return torch.stack(codes, dim=1).to(torch.float32) if codes else torch.zeros(len(y), 0, device=y.device)

    def _set_categorical(self, out: torch.Tensor, source: torch.Tensor, params) -> torch.Tensor:
        """Categorical columns kept from `source` (or the drawn codes); integer columns rounded into
        their range."""
        if self.categorical:
            columns = torch.tensor(self.categorical, device=out.device)
            kept = params["codes"] if "codes" in params else source[:, columns]
            out[:, columns] = kept.to(out.dtype)
        return out if self.integer is None else self.integer.snap(out)


class FeatureNoise(_Tabular):
    """Add Gaussian noise to numeric columns, scaled by each column's spread within the row's class.

    Row ``i`` of class ``k`` gets ``x + s_i * std_k * z`` with ``z`` standard normal per column and
    ``s_i`` drawn from `scale`. Categorical columns are kept or resampled from the class's codes.
    """

    name = "feature-noise"

    class Params(Augmenter.Params):
        """Noise scale and what happens to categorical columns."""

        scale: NoiseScale = Field(0.1, description="noise standard deviation as a fraction of the column's "
                                                   "within-class standard deviation")
        categorical: Categorical = Field("keep", description="categorical columns: keep the row's code, or "
                                                             "resample one from the codes of its class")

    def _make_params(self, x, y, generator):
        y = self._labels(y)
        # unfitted, the class spread is the whole batch's; it is a per-row param (each row's class's
        # spread) so that the rows stay independent when a chain cuts the batch into chunks
        std = self.std
        if std is None:
            std = class_std(x, y, int(y.max().item()) + 1) if len(y) else x.new_zeros(0, x.shape[1])
        if len(y) and int(y.max().item()) >= std.shape[0]:
            raise DataError(f"augment '{self.name}' was fitted on {std.shape[0]} classes and got label "
                            f"{int(y.max().item())}; fit it on data with every class")
        params = {"scale": uniform(self.params.scale, x.shape[0], generator, x.device),
                  "noise": torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype),
                  "spread": std[y].to(x.dtype)}
        if self.params.categorical == "resample" and self.categorical:
            params["codes"] = self._draw_codes(y, generator)
        return params

    def _transform(self, x, y, params):
        out = x + params["noise"] * params["scale"].to(x.dtype).view(-1, 1) * params["spread"]
        return self._set_categorical(out, x, params)


class Mixup(_Tabular):
    """Blend each row with another row of its class: ``lam x_i + (1 - lam) x_j``, labels kept.

    ``lam`` is drawn per row from Beta(alpha, alpha); the partner ``j`` is a random row of the same
    class in the batch with other values than row ``i`` (a row whose class holds no other values is
    left as it is). The new row's parent is
    the row with the larger weight. Categorical columns take the parent's code, or one resampled
    from the class's codes.
    """

    name = "mixup"
    rows_independent = False

    class Params(Augmenter.Params):
        """Mixing weights and categorical columns."""

        alpha: float = Field(1.0, gt=0.0, le=100.0, description="Beta(alpha, alpha) of the mixing weight; 1 is "
                                                                "uniform, small values stay near the parents")
        categorical: Categorical = Field("keep", description="categorical columns: the parent's code, or one "
                                                             "resampled from the codes of its class")

    def _make_params(self, x, y, generator):
        y = self._labels(y)
        n, device = len(y), y.device
        # Partner: a row of the same class with other values (a copy of the row, as the repeats of
        # an augment step's amount keys are, would mix into the row itself). Sort by class, then by
        # the first position of each row's values, so equal rows sit in one run; then step past the
        # row's own run by a random 0..count-run-1 places around its class's block (distinct rows:
        # 1..count-1 places from the row itself).
        arange = torch.arange(n, device=device)
        same = torch.unique(x.reshape(n, -1), dim=0, return_inverse=True)[1] if n else arange
        first = torch.full((n,), n, dtype=torch.int64, device=device).scatter_reduce_(0, same, arange, "amin")[same]
        order = torch.argsort(y * max(n, 1) + first, stable=True)
        counts = torch.bincount(y)
        starts = torch.cumsum(counts, 0) - counts
        sorted_y = y[order]
        block_start, block_size = starts[sorted_y], counts[sorted_y]
        _, run, run_counts = torch.unique_consecutive(sorted_y * max(n, 1) + first[order], return_inverse=True,
                                                      return_counts=True)
        run_size = run_counts[run]
        run_end = (torch.cumsum(run_counts, 0) - block_start[torch.cumsum(run_counts, 0) - 1])[run]
        hop = torch.floor(torch.rand(n, generator=generator, device=device)
                          * (block_size - run_size).clamp(min=0)).to(torch.int64)
        partner_sorted = torch.where(block_size > run_size, block_start + torch.remainder(run_end + hop, block_size),
                                     arange)  # a class of equal rows: each row left as it is
        partner = torch.empty_like(order)
        partner[order] = order[partner_sorted]
        weight = sample_beta(self.params.alpha, n, generator, device)
        parent = torch.where(weight >= 0.5, torch.arange(n, device=device), partner)
        params = {"partner": partner, "weight": weight, "parent": parent}
        if self.params.categorical == "resample" and self.categorical:
            params["codes"] = self._draw_codes(y, generator)
        return params

    def _transform(self, x, y, params):
        weight = params["weight"].to(x.dtype).view(-1, 1)
        out = torch.lerp(x[params["partner"]], x, weight)
        return self._set_categorical(out, x[params["parent"]], params)
