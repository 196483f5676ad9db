"""``pseudo-label``: label the source's unlabelled rows with a classifier trained on the labelled
training rows, keeping only confident predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from setforge import Dataset, Origin, Resampler, StepContext

from ._judge import JudgeParams, train_judge

__all__ = ["PseudoLabel"]


class PseudoLabel(Resampler):
    """Add the source's unlabelled rows that a classifier trained on the labelled rows labels confidently, in rounds.

    Each round trains the classifier (``model``; balanced by repetition, early stopping on
    ``val_share`` of the rows) on the step input's real rows plus the rows pseudo-labelled so far,
    predicts every unlabelled row still in the pool (``StepContext.unlabelled``, which sources fill
    from npz ``y = -1`` rows or ``sklearn-digits``' ``labelled_share``), and accepts a row for its
    predicted class when the probability is at least ``threshold`` (``class_thresholds`` overrides
    it per class name). With ``views: K`` the prediction must also hold on K noisy views of the
    row (Gaussian noise of ``view_noise`` standard deviation, images kept in [0, 1]). At most
    ``max_per_class`` rows per class are accepted in all, the most confident first. Accepted rows
    get the origin ``pseudo-labelled`` (parent -1). ``report_details()`` counts the rows accepted
    per round and class. Without unlabelled rows the step changes nothing and says so.
    """

    name = "pseudo-label"
    modalities = ("image", "tabular", "audio")
    testing_params = {"epochs": 3, "patience": 2, "model": "logistic-regression"}
    new_origin = Origin.PSEUDO_LABELLED

    class Params(JudgeParams):
        """Confidence, caps, views and rounds."""

        threshold: float = Field(0.9, gt=0.0, le=1.0, description="least predicted-class probability to accept a row")
        class_thresholds: dict[str, float] = Field(default_factory=dict, description="per-class thresholds by class "
                                                                                      "name (override threshold)")
        max_per_class: int | None = Field(None, ge=1, description="most rows accepted per class over all rounds")
        views: int = Field(0, ge=0, le=64, description="noisy views whose prediction must agree (0: no check)")
        view_noise: float = Field(0.05, ge=0.0, le=10.0, description="std of the Gaussian noise of each view")
        rounds: int = Field(1, ge=1, le=20, description="label, retrain on labelled + accepted rows, label again")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.accepted: dict[str, Any] = {}
        self._accepted_groups: torch.Tensor | None = None

    def resample(self, ds: Dataset, ctx: StepContext) -> Dataset:
        """As every resampler, and the accepted rows keep the groups of their unlabelled rows (the
        host gives a new row its parent's group, and these have no parent)."""
        self._accepted_groups = None
        out = super().resample(ds, ctx)
        accepted = self._accepted_groups
        if out.groups is not None and accepted is not None and len(accepted):
            groups = out.groups.clone()
            groups[len(out) - len(accepted):] = accepted.to(groups.device)  # (new rows come after the kept ones)
            out = out.replace(groups=groups)
        return out

    def report_details(self) -> dict[str, Any]:
        return self.accepted

    def _thresholds(self, ds: Dataset) -> torch.Tensor:
        unknown = sorted(set(self.params.class_thresholds) - set(ds.classes))
        if unknown:
            from setforge import DataError

            raise DataError(f"pseudo-label: class_thresholds names unknown classes {unknown}; the classes are "
                            f"{list(ds.classes)}")
        return torch.tensor([self.params.class_thresholds.get(c, self.params.threshold) for c in ds.classes],
                            device=ds.device)

    def _resample(self, ds: Dataset, ctx: StepContext):
        params = self.params
        pool = ctx.unlabelled
        everything = torch.arange(len(ds), device=ds.device)
        none = (ds.x[:0], ds.y[:0], torch.zeros(0, dtype=torch.int64, device=ds.device))
        if pool is None or len(pool) == 0:
            self.accepted = {"pool": 0, "accepted": 0, "rounds": [],
                             "summary": "no unlabelled rows in the source: nothing to pseudo-label"}
            return (everything, *none)
        pool = pool.to(ds.device)
        thresholds = self._thresholds(ds)
        cap = torch.full((ds.num_classes,), params.max_per_class or len(pool), device=ds.device)
        taken = torch.zeros(len(pool), dtype=torch.bool, device=ds.device)
        # rows already in the step's input (an earlier pseudo-label step accepted them) are not added twice
        present = torch.as_tensor(np.isin(pool.row_keys(with_label=False), ds.row_keys(with_label=False)),
                                  device=ds.device)
        labels = torch.full((len(pool),), -1, dtype=torch.int64, device=ds.device)
        labelled = ds[ds.origin == int(Origin.REAL)]
        rounds = []
        for r in range(params.rounds):
            fit_on = labelled
            if bool(taken.any()):
                fit_on = Dataset.concat([labelled, pool[taken].replace(y=labels[taken])])
            rng = ctx.rng.spawn(r)
            model = train_judge(fit_on, params, rng.spawn("judge"), ctx.device)
            rest = (~taken & ~present).nonzero().flatten()
            if rest.numel() == 0:
                break
            probs = model.predict_proba(pool.x[rest].to(ctx.device)).to(ds.device)
            confidence, predicted = probs.max(dim=1)
            ok = confidence >= thresholds[predicted]
            for v in range(params.views):
                noise = torch.randn(pool.x[rest].shape, generator=rng.spawn(f"view-{v}").torch,
                                    device=rng.device).to(ds.device) * params.view_noise
                view = pool.x[rest] + noise
                if ds.modality == "image":
                    view = view.clamp(0.0, 1.0)
                ok &= model.predict(view.to(ctx.device)).to(ds.device) == predicted
            added = torch.zeros(ds.num_classes, dtype=torch.int64)
            for c in range(ds.num_classes):
                room = int(cap[c]) - int((labels[taken] == c).sum())
                rows = (ok & (predicted == c)).nonzero().flatten()
                if room <= 0 or rows.numel() == 0:
                    continue
                rows = rows[torch.argsort(confidence[rows], descending=True, stable=True)][:room]
                taken[rest[rows]] = True
                labels[rest[rows]] = c
                added[c] = rows.numel()
            rounds.append({ds.classes[c]: int(n) for c, n in enumerate(added.tolist())})
            if int(added.sum()) == 0:
                break
        chosen = taken.nonzero().flatten()
        counts = torch.bincount(labels[chosen], minlength=ds.num_classes).tolist()
        already = int(present.sum())
        self.accepted = {
            "pool": len(pool), "accepted": int(chosen.numel()), "already_in": already, "rounds": rounds,
            "by_class": {name: counts[c] for c, name in enumerate(ds.classes)},
            "summary": f"pseudo-labelled {int(chosen.numel())} of {len(pool)} unlabelled rows in {len(rounds)} round(s)"
                       + (f" ({already} already in the step's input)" if already else ""),
        }
        self._accepted_groups = None if pool.groups is None else pool.groups[chosen]
        return everything, pool.x[chosen], labels[chosen], torch.full_like(chosen, -1)
