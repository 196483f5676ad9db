"""CTGAN's data representation (Xu et al., 2019), fitted on the training rows and vectorised.

Each continuous column is modelled by a variational Gaussian mixture (scikit-learn's
`BayesianGaussianMixture`, Dirichlet-process prior, up to ``max_modes`` modes, modes weighing
below ``weight_threshold`` dropped), fitted on the column standardised. A value is encoded as the
one-hot of a mode drawn from its posterior over the kept modes and the scalar
``alpha = (z - mu_k) / (4 sigma_k)`` clipped to [-0.99, 0.99] ("mode-specific normalisation");
a categorical column (from `FeatureInfo.categorical`) as the one-hot of its code. Columns keep
their order: ``[alpha, modes...]`` for a continuous column, ``[categories...]`` for a categorical
one.

Decoding takes the arg-max mode and category, gives continuous values back in the column's
units, clips every column to the training rows' range (``bounds``) and rounds the columns whose
original dtype is an integer type (and whose training values are whole numbers) to integers.

The state is tensors and plain values only (`state_dict`), so a saved generator reloads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from setforge.dataset import FeatureInfo
from setforge.errors import DataError

from .._shared.columns import is_integer_dtype

__all__ = ["ModeSpecificNormaliser", "SpanLayout"]

_CLIP = 0.99


class SpanLayout:
    """Where the one-hot spans of an encoded row lie, as index tensors for batched work.

    ``softmax_index`` ``(S, K)``: the encoded positions of each span (padded by repeating its last
    position), ``softmax_mask`` ``(S, K)``: which entries are real; ``tanh_index``: the ``alpha``
    positions; ``permutation``: puts ``cat([tanh values, softmax values (row-major over the mask)])``
    back into encoded order.
    """

    def __init__(self, tanh_positions: list[int], spans: list[tuple[int, int]], width: int):
        self.width = width
        self.spans = list(spans)
        longest = max((w for _, w in spans), default=1)
        index = torch.zeros((len(spans), longest), dtype=torch.int64)
        mask = torch.zeros((len(spans), longest), dtype=torch.bool)
        for s, (start, w) in enumerate(spans):
            index[s, :w] = torch.arange(start, start + w)
            index[s, w:] = start + w - 1
            mask[s, :w] = True
        self.softmax_index, self.softmax_mask = index, mask
        self.tanh_index = torch.as_tensor(tanh_positions, dtype=torch.int64)
        order = torch.cat([self.tanh_index, index[mask]])
        self.permutation = torch.argsort(order)
        self.softmax_width = int(mask.sum())

    def to(self, device: torch.device | str) -> "SpanLayout":
        for name in ("softmax_index", "softmax_mask", "tanh_index", "permutation"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def activate(self, raw: torch.Tensor, noise: torch.Tensor, tau: float) -> torch.Tensor:
        """CTGAN's output activations, batched: ``tanh`` on each ``alpha``, a Gumbel-softmax with
        temperature `tau` over each span. `noise` ``(B, softmax_width)`` is standard normal (the
        generator's extra latents) and becomes Gumbel noise through the normal CDF."""
        uniform = torch.special.ndtr(noise).clamp(1e-6, 1.0 - 1e-6)
        gumbel = -torch.log(-torch.log(uniform))
        logits = raw[:, self.softmax_index]
        padded = torch.zeros_like(logits)
        padded[:, self.softmax_mask] = gumbel
        logits = ((logits + padded) / tau).masked_fill(~self.softmax_mask, -math.inf)
        soft = torch.softmax(logits, dim=-1)[:, self.softmax_mask]
        return torch.cat([torch.tanh(raw[:, self.tanh_index]), soft], dim=1)[:, self.permutation]

    def argmax(self, encoded: torch.Tensor) -> torch.Tensor:
        """The arg-max within every span: ``(B, S)`` offsets."""
        values = encoded[:, self.softmax_index].masked_fill(~self.softmax_mask, -math.inf)
        return values.argmax(dim=-1)


class ModeSpecificNormaliser:
    """Encodes tabular rows CTGAN's way and decodes them back; see the module docstring.

    ``fit(x, features, seed)`` on ``(N, D)`` rows in pipeline units; ``transform(x, rng)`` draws
    each continuous value's mode from its posterior with the numpy Generator `rng`;
    ``inverse(encoded)`` decodes a torch batch on any device.
    """

    def __init__(self, max_modes: int = 10, weight_threshold: float = 0.005):
        self.max_modes, self.weight_threshold = int(max_modes), float(weight_threshold)
        self.columns: list[dict[str, Any]] = []
        self._layout: SpanLayout | None = None
        self._device_tables: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, x: np.ndarray, features: FeatureInfo | None, seed: int) -> "ModeSpecificNormaliser":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import BayesianGaussianMixture

        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise DataError(f"mode-specific normalisation needs (N, D) rows with N >= 2, got shape {x.shape}")
        names = list(features.names) if features is not None else [f"x{i}" for i in range(x.shape[1])]
        categorical = dict(features.categorical) if features is not None else {}
        dtypes = dict(features.dtypes) if features is not None else {}
        self.columns = []
        for i, name in enumerate(names):
            values = x[:, i]
            lo, hi = float(values.min()), float(values.max())
            if name in categorical:
                k = len(categorical[name])
                codes = values.astype(np.int64)
                if (codes != values).any() or lo < 0 or hi >= k:
                    raise DataError(f"column {name!r} is categorical with {k} categories, so its codes must be "
                                    f"whole numbers in 0..{k - 1}; found values in [{lo:g}, {hi:g}]")
                self.columns.append({"name": name, "kind": "categorical", "categories": k,
                                     "counts": np.bincount(codes, minlength=k).tolist()})
                continue
            loc, scale = float(values.mean()), float(values.std())
            scale = scale if scale > 1e-12 else 1.0
            z = (values - loc) / scale
            distinct = len(np.unique(z))
            if distinct < 2:
                weights, means, stds = np.ones(1), np.array([float(z[0])]), np.array([1.0])
            else:
                mixture = BayesianGaussianMixture(
                    n_components=min(self.max_modes, distinct), weight_concentration_prior_type="dirichlet_process",
                    weight_concentration_prior=0.001, max_iter=100, n_init=1, random_state=seed + i)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    mixture.fit(z[:, None])
                kept = mixture.weights_ > self.weight_threshold
                if not kept.any():
                    kept = mixture.weights_ == mixture.weights_.max()
                weights = mixture.weights_[kept] / mixture.weights_[kept].sum()
                means = mixture.means_[kept, 0]
                stds = np.sqrt(mixture.covariances_[kept].reshape(-1))
            integer = is_integer_dtype(dtypes.get(name)) and bool((np.round(values) == values).all())
            self.columns.append({"name": name, "kind": "continuous", "loc": loc, "scale": scale,
                                 "weights": weights.tolist(), "means": means.tolist(),
                                 "stds": np.maximum(stds, 1e-6).tolist(), "low": lo, "high": hi,
                                 "integer": integer})
        self._build()
        return self

    def _build(self) -> None:
        tanh, spans, position = [], [], 0
        self.categorical_spans: list[int] = []  # indices into spans, one per categorical column
        for column in self.columns:
            if column["kind"] == "continuous":
                tanh.append(position)
                spans.append((position + 1, len(column["means"])))
                position += 1 + len(column["means"])
            else:
                self.categorical_spans.append(len(spans))
                spans.append((position, column["categories"]))
                position += column["categories"]
        self._layout = SpanLayout(tanh, spans, position)
        self._device_tables = {}

    # --------------------------------------------------------------- properties
    @property
    def layout(self) -> SpanLayout:
        return self._layout

    @property
    def width(self) -> int:
        """Columns of an encoded row."""
        return self._layout.width

    @property
    def category_sizes(self) -> list[int]:
        """Categories of each categorical column, in column order (the conditional vector's spans)."""
        return [c["categories"] for c in self.columns if c["kind"] == "categorical"]

    @property
    def categorical_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c["kind"] == "categorical"]

    @property
    def categorical_positions(self) -> torch.Tensor:
        """Encoded positions of the categorical one-hots, in conditional-vector order."""
        layout = self._layout
        return torch.cat([layout.softmax_index[s, layout.softmax_mask[s]] for s in self.categorical_spans]) \
            if self.categorical_spans else torch.zeros(0, dtype=torch.int64)

    # -------------------------------------------------------------- transform
    def transform(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Encode ``(N, D)`` rows to ``(N, width)`` float32, each value's mode drawn from its posterior."""
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((len(x), self.width), dtype=np.float32)
        position = 0
        for i, column in enumerate(self.columns):
            values = x[:, i]
            if column["kind"] == "categorical":
                out[np.arange(len(x)), position + values.astype(np.int64)] = 1.0
                position += column["categories"]
                continue
            z = (values - column["loc"]) / column["scale"]
            weights, means, stds = (np.asarray(column[k]) for k in ("weights", "means", "stds"))
            log_post = np.log(weights) - np.log(stds) - 0.5 * ((z[:, None] - means) / stds) ** 2
            post = np.exp(log_post - log_post.max(axis=1, keepdims=True)) + 1e-6
            cumulative = np.cumsum(post / post.sum(axis=1, keepdims=True), axis=1)
            mode = np.minimum((cumulative < rng.random(len(x))[:, None]).sum(axis=1), len(means) - 1)
            out[:, position] = np.clip((z - means[mode]) / (4.0 * stds[mode]), -_CLIP, _CLIP)
            out[np.arange(len(x)), position + 1 + mode] = 1.0
            position += 1 + len(means)
        return out

    # ---------------------------------------------------------------- inverse
    def _tables(self, device: torch.device) -> dict[str, Any]:
        key = str(device)
        if key not in self._device_tables:
            continuous = [c for c in self.columns if c["kind"] == "continuous"]
            longest = max((len(c["means"]) for c in continuous), default=1)
            means = torch.zeros((len(continuous), longest), dtype=torch.float64)
            stds = torch.ones((len(continuous), longest), dtype=torch.float64)
            for j, c in enumerate(continuous):
                means[j, :len(c["means"])] = torch.tensor(c["means"], dtype=torch.float64)
                stds[j, :len(c["stds"])] = torch.tensor(c["stds"], dtype=torch.float64)
            mode_spans = [s for s in range(len(self._layout.spans)) if s not in set(self.categorical_spans)]
            self._device_tables[key] = {
                "layout": SpanLayout(self._layout.tanh_index.tolist(), self._layout.spans, self.width).to(device),
                "continuous": torch.tensor([i for i, c in enumerate(self.columns) if c["kind"] == "continuous"],
                                           dtype=torch.int64, device=device),
                "categorical": torch.tensor(self.categorical_columns, dtype=torch.int64, device=device),
                "mode_spans": torch.tensor(mode_spans, dtype=torch.int64, device=device),
                "category_spans": torch.tensor(self.categorical_spans, dtype=torch.int64, device=device),
                "means": means.to(device), "stds": stds.to(device),
                "loc": torch.tensor([c["loc"] for c in continuous], dtype=torch.float64, device=device),
                "scale": torch.tensor([c["scale"] for c in continuous], dtype=torch.float64, device=device),
                "low": torch.tensor([c["low"] for c in continuous], dtype=torch.float64, device=device),
                "high": torch.tensor([c["high"] for c in continuous], dtype=torch.float64, device=device),
                "integer": torch.tensor([c["integer"] for c in continuous], dtype=torch.bool, device=device),
            }
        return self._device_tables[key]

    def inverse(self, encoded: torch.Tensor) -> torch.Tensor:
        """Decode ``(B, width)`` encoded rows to ``(B, D)`` float32 rows in the columns' units,
        within the training range, integer columns whole."""
        t = self._tables(encoded.device)
        layout = t["layout"]
        picks = layout.argmax(encoded)  # (B, S)
        out = torch.empty((len(encoded), len(self.columns)), dtype=torch.float64, device=encoded.device)
        if len(t["continuous"]):
            mode = picks[:, t["mode_spans"]]  # (B, Dc)
            rows = torch.arange(len(t["continuous"]), device=encoded.device)
            alpha = encoded[:, layout.tanh_index].double().clamp(-1.0, 1.0)
            z = alpha * 4.0 * t["stds"][rows, mode] + t["means"][rows, mode]
            value = (z * t["scale"] + t["loc"]).clamp(t["low"], t["high"])
            value = torch.where(t["integer"], value.round(), value)
            out[:, t["continuous"]] = value
        if len(t["categorical"]):
            out[:, t["categorical"]] = picks[:, t["category_spans"]].double()
        return out.float()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"max_modes": self.max_modes, "weight_threshold": self.weight_threshold,
                "columns": [dict(c) for c in self.columns]}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "ModeSpecificNormaliser":
        normaliser = cls(int(state["max_modes"]), float(state["weight_threshold"]))
        normaliser.columns = [dict(c) for c in state["columns"]]
        normaliser._build()
        return normaliser
