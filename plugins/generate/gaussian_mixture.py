"""``gaussian-mixture``: one Gaussian mixture per class, the number of components chosen by BIC.

The honest baseline every GAN must beat: rows are flattened (images) and standardised with the
step input's column statistics, projected onto the first ``pca`` principal components of all rows
(one space shared by the classes; by default only rows of more than 256 values, onto 256), and each class gets a scikit-learn
``GaussianMixture`` (``full`` or ``diag`` covariance) with 1 to ``max_components`` components,
the count with the lowest Bayesian information criterion kept. Sampling draws a component by its
weight and a Gaussian row from it (in torch, from the step's generator), maps it back (inverse
PCA, un-standardise), clips images to [0, 1] and snaps categorical tabular columns to their
nearest category code. Fitting is seeded from the step's `Rng`; the fitted state is tensors only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field

from setforge.components import Generator
from setforge.context import StepContext
from setforge.dataset import Dataset

from .._shared.columns import IntegerColumns
from ._gan_training import refuse_untrained

__all__ = ["GaussianMixtureGenerator"]

AUTO_COLUMNS = 256  # pca: auto keeps every column up to this many, else this many principal components


class GaussianMixtureGenerator(Generator):
    """Per-class Gaussian mixture (full or diagonal covariance, components by BIC), optionally in a PCA space."""

    name = "gaussian-mixture"
    modalities = ("image", "tabular")
    testing_params: ClassVar[Mapping[str, Any]] = {"max_components": 2}

    class Params(Generator.Params):
        """The mixture per class and the space it is fitted in."""

        covariance: Literal["full", "diag"] = Field("full", description="covariance of each component: 'full' or "
                                                                        "'diag' (diagonal)")
        max_components: int = Field(5, ge=1, le=100, description="most components per class; the count from 1 to "
                                                                  "this with the lowest BIC is kept")
        pca: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
            "auto", description=f"fit in the space of this many principal components of the step's rows (shared by "
                                f"the classes); null: every column; auto: every column up to {AUTO_COLUMNS} columns, "
                                f"else {AUTO_COLUMNS} components (a full covariance of a 32x32 RGB row alone is 38 MB)")
        reg_covar: float = Field(1e-3, gt=0.0, description="added to the covariance diagonal (in standardised units) "
                                                          "for stability")
        max_iter: int = Field(200, ge=1, le=100_000, description="most EM iterations per fit")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self._state: dict[str, Any] = {}

    # ----------------------------------------------------------------------- fit
    def _fit(self, ds: Dataset, ctx: StepContext) -> None:
        from sklearn.mixture import GaussianMixture

        p = self.params
        flat = ds.x.reshape(len(ds), -1).to(torch.float64)
        mean = flat.mean(0)
        std = flat.std(0, unbiased=False)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        z = (flat - mean) / std
        basis = None
        components = (AUTO_COLUMNS if z.shape[1] > AUTO_COLUMNS else None) if p.pca == "auto" else p.pca
        if components is not None:
            keep = min(components, z.shape[1], max(1, len(z) - 1))
            # right singular vectors of the centred rows: the principal axes, largest variance first
            _, _, vh = torch.linalg.svd(z - z.mean(0), full_matrices=False)
            basis = vh[:keep]
            z = z @ basis.T
        z_np = z.cpu().numpy()
        labels = ds.y.cpu().numpy()
        dim = z.shape[1]
        present = sorted(set(labels.tolist()))
        fitted: dict[int, tuple[Any, int]] = {}
        for c in present:
            rows = z_np[labels == c]
            if len(rows) == 1:  # scikit-learn fits 2 rows or more: one row is one component, reg_covar wide
                fitted[c] = (_one_row(rows[0], p.covariance, p.reg_covar), 1)
                continue
            best, best_bic = None, math.inf
            for k in range(1, min(p.max_components, len(rows)) + 1):
                model = GaussianMixture(k, covariance_type=p.covariance, reg_covar=p.reg_covar, max_iter=p.max_iter,
                                        random_state=ctx.rng.spawn(f"class-{c}").sk_seed())
                model.fit(rows)
                bic = model.bic(rows)
                if bic < best_bic:
                    best, best_bic = model, bic
            fitted[c] = (best, best.n_components)
        most = max(k for _, k in fitted.values())
        classes = len(ds.classes)
        weights = torch.zeros(classes, most, dtype=torch.float64)
        means = torch.zeros(classes, most, dim, dtype=torch.float64)
        scales = torch.zeros((classes, most, dim, dim) if p.covariance == "full" else (classes, most, dim),
                             dtype=torch.float64)
        for c, (model, k) in fitted.items():
            weights[c, :k] = torch.as_tensor(model.weights_)
            means[c, :k] = torch.as_tensor(model.means_)
            cov = torch.as_tensor(model.covariances_)
            scales[c, :k] = torch.linalg.cholesky(cov) if p.covariance == "full" else cov.sqrt()
        device = ctx.device
        categorical = {} if ds.features is None else {
            str(i): len(ds.features.categorical[ds.features.names[i]]) for i in ds.features.categorical_indices}
        self._state = {
            "covariance": p.covariance, "trained_classes": present, "categorical": categorical,
            "integer": IntegerColumns(ds).state(),  # counts stay whole and within their range
            "components": {str(c): int(k) for c, (_, k) in fitted.items()},
            "weights": weights.to(device), "means": means.to(torch.float32).to(device),
            "scales": scales.to(torch.float32).to(device), "mean": mean.to(torch.float32).to(device),
            "std": std.to(torch.float32).to(device),
            "basis": None if basis is None else basis.to(torch.float32).to(device),
        }

    @property
    def components(self) -> dict[str, int]:
        """Components kept per class (by BIC), keyed by class name."""
        return {self.classes[int(c)]: k for c, k in self._state.get("components", {}).items()}

    # -------------------------------------------------------------------- sample
    def _sample(self, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        s = self._state
        refuse_untrained(self, labels, s["trained_classes"])
        device = ctx.device
        weights, means, scales = (s[k].to(device) for k in ("weights", "means", "scales"))
        component = torch.multinomial(weights[labels], 1, generator=ctx.rng.torch).squeeze(1)
        centre = means[labels, component]
        noise = torch.randn(centre.shape, generator=ctx.rng.torch, device=device)
        if s["covariance"] == "full":
            # one (D, D) Cholesky factor per (class, component) drawn, never one per row: at 32x32 RGB a
            # factor is 38 MB, so gathering one per row would take 38 MB x rows
            z = centre
            pairs = labels * weights.shape[1] + component
            for pair in torch.unique(pairs).tolist():
                rows = (pairs == pair).nonzero().squeeze(1)
                z[rows] += noise[rows] @ scales[pair // weights.shape[1], pair % weights.shape[1]].T
        else:
            z = centre + scales[labels, component] * noise
        if s["basis"] is not None:
            z = z @ s["basis"].to(device)
        flat = z * s["std"].to(device) + s["mean"].to(device)
        if self.modality == "image":
            return flat.clamp_(0.0, 1.0).reshape(len(labels), *self.row_shape).contiguous()
        for i, categories in s["categorical"].items():  # codes are never interpolated: snap to the nearest
            flat[:, int(i)] = flat[:, int(i)].round().clamp(0, categories - 1)
        flat = IntegerColumns.restore(s.get("integer")).snap(flat)
        return flat.reshape(len(labels), *self.row_shape).contiguous()

    # ---------------------------------------------------------------- save/load
    def _state_dict(self) -> dict[str, Any]:
        return dict(self._state)

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._state = {**state, "trained_classes": [int(c) for c in state["trained_classes"]]}


def _one_row(row: Any, covariance: str, reg_covar: float) -> Any:
    """A one-component mixture of a class of one row: the row as its mean, ``reg_covar`` as its
    variance in every direction (what scikit-learn adds to every covariance)."""
    import numpy as np
    from types import SimpleNamespace

    dim = len(row)
    spread = np.eye(dim)[None] * reg_covar if covariance == "full" else np.full((1, dim), reg_covar)
    return SimpleNamespace(weights_=np.ones(1), means_=np.asarray(row, dtype=np.float64)[None], covariances_=spread)
