"""``quality-gate``: drop derived rows that do not look like their class, or that copy a real row."""

from __future__ import annotations

import json
from typing import Any, Literal

import torch
from pydantic import Field

from setforge import Dataset, Origin, Resampler, StepContext

from .._shared.duplicates import DistanceSpace, cross_match
from ..evaluate._figures import pairs_figure
from ._judge import JudgeParams, train_judge

__all__ = ["QualityGate"]

REASONS = ("near-copy", "off-class")
_ORIGINS = {o.label: o for o in Origin if o != Origin.REAL}


class QualityGate(Resampler):
    """Drop generated or augmented rows that a classifier trained on the real rows puts in another class, and near-copies of a real row.

    A classifier (``model``; trained on the step input's real rows, balanced by repetition, early
    stopping on ``val_share`` of them) gives each checked row (``origins``, by default generated
    and augmented) a probability for its own label; a row is **off-class** when that probability
    is below ``threshold`` and another class is more probable. A row is a **near-copy** when the
    root-mean-square difference per value to its nearest real row (the shared exact k-NN, in the
    ``deduplicate`` step's feature space) is below ``copy_threshold``; near-copies are counted
    first, so a row has one reason. Real rows are never dropped.

    ``report_details()`` (in ``report.json`` under the step, with a one-line summary) counts the
    rejections per class and reason; ``report_figures()`` shows up to ``examples`` rejected rows
    per reason above their nearest real row (captioned with the reason, the label and the
    classifier's class and probability). Inside a run the same counts go to ``rejected.json`` in
    the step's folder.
    """

    name = "quality-gate"
    modalities = ("image", "tabular", "audio")
    testing_params = {"epochs": 3, "patience": 2, "model": "logistic-regression"}

    class Params(JudgeParams):
        """What is checked and when a row is rejected."""

        threshold: float = Field(0.5, ge=0.0, le=1.0, description="off-class: the classifier's probability of the "
                                                                  "row's own label below which it is rejected")
        copy_threshold: float = Field(0.05, ge=0.0, le=10.0, description="near-copy: RMS difference per value to "
                                                                         "the nearest real row below which it is "
                                                                         "rejected (0: off)")
        origins: list[Literal["augmented", "resampled", "generated"]] = Field(
            ["augmented", "generated"], min_length=1, description="which derived rows are checked")
        space: Literal["auto", "raw", "standardized"] = Field(
            "auto", description="near-copy distances: raw values, standardized numeric columns (fitted on the real "
                                "rows), or auto (standardized for tabular data, raw otherwise)")
        examples: int = Field(8, ge=0, le=64, description="rejected rows per reason shown in the report's figure")

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.rejected: dict[str, Any] = {}
        self._figures: dict[str, bytes] = {}

    def report_details(self) -> dict[str, Any]:
        return self.rejected

    def report_figures(self) -> dict[str, bytes]:
        return self._figures

    def _resample(self, ds: Dataset, ctx: StepContext):
        params = self.params
        is_real = ds.origin == int(Origin.REAL)
        checked = torch.isin(ds.origin, torch.tensor([int(_ORIGINS[o]) for o in params.origins], device=ds.device))
        rows = checked.nonzero().flatten()
        real = ds[is_real]
        reason = torch.full((len(rows),), -1, dtype=torch.int64, device=ds.device)  # index into REASONS
        nearest = torch.full((len(rows),), -1, dtype=torch.int64, device=ds.device)
        own = torch.ones(len(rows), device=ds.device)
        predicted = torch.full((len(rows),), -1, dtype=torch.int64, device=ds.device)
        if len(rows) and len(real):
            x = ds.x[rows]
            categorical = [] if ds.features is None else ds.features.categorical_indices
            space = DistanceSpace.fit(real.x, ds.modality, params.space, categorical=categorical)
            match = cross_match(x, real.x, threshold=params.copy_threshold, space=space)
            nearest = match.index
            if params.copy_threshold > 0:
                reason[match.near] = REASONS.index("near-copy")
            model = train_judge(real, params, ctx.rng.spawn("judge"), ctx.device)
            probs = model.predict_proba(x.to(ctx.device)).to(ds.device)
            labels = ds.y[rows]
            own = probs.gather(1, labels[:, None]).squeeze(1)
            predicted = probs.argmax(dim=1)
            off = (own < params.threshold) & (predicted != labels)
            reason[(reason < 0) & off] = REASONS.index("off-class")
        drop = torch.zeros(len(ds), dtype=torch.bool, device=ds.device)
        drop[rows[reason >= 0]] = True
        self._record(ds, rows, reason, checked, ctx)
        self._figures = self._examples(ds, rows, reason, nearest, real, own, predicted)
        kept = (~drop).nonzero().flatten()
        empty = ds.x[:0]
        return kept, empty, ds.y[:0], torch.zeros(0, dtype=torch.int64, device=ds.device)

    def _record(self, ds: Dataset, rows: torch.Tensor, reason: torch.Tensor, checked: torch.Tensor,
                ctx: StepContext) -> None:
        """Rejections per class and reason (``rejected``; ``rejected.json`` in the step's folder)."""
        labels = ds.y[rows]
        checked_by_class = torch.bincount(ds.y[checked], minlength=ds.num_classes).tolist()
        by_reason = {name: torch.bincount(labels[reason == r], minlength=ds.num_classes).tolist()
                     for r, name in enumerate(REASONS)}
        total = {name: sum(counts) for name, counts in by_reason.items()}
        rejected = sum(total.values())
        self.rejected = {
            "checked": int(len(rows)), "rejected": rejected,
            "by_reason": total,
            "by_class": {name: {"checked": checked_by_class[c], **{r: by_reason[r][c] for r in REASONS}}
                         for c, name in enumerate(ds.classes)},
            "summary": (f"rejected {rejected} of {len(rows)} checked rows ("
                        + ", ".join(f"{r} {total[r]}" for r in REASONS) + ")"),
        }
        if ctx.workdir is not None:
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            (ctx.workdir / "rejected.json").write_text(json.dumps(self.rejected, indent=2, sort_keys=True) + "\n",
                                                       encoding="utf-8")

    def _examples(self, ds: Dataset, rows: torch.Tensor, reason: torch.Tensor, nearest: torch.Tensor,
                  real: Dataset, own: torch.Tensor, predicted: torch.Tensor) -> dict[str, bytes]:
        """A figure per reason: rejected rows above their nearest real row."""
        figures: dict[str, bytes] = {}
        if self.params.examples == 0 or len(real) == 0:
            return figures
        for r, name in enumerate(REASONS):
            picked = (reason == r).nonzero().flatten()[: self.params.examples]
            if picked.numel() == 0:
                continue
            top, bottom = ds.x[rows[picked]], real.x[nearest[picked].clamp(min=0)]
            if ds.modality == "tabular":  # strips of standardised values
                mean, std = real.x.mean(0), real.x.std(0, unbiased=False).clamp(min=1e-8)
                top, bottom = (top - mean) / std, (bottom - mean) / std
            captions = []
            for j in picked.tolist():
                label = ds.classes[int(ds.y[rows[j]])]
                if name == "off-class":
                    captions.append(f"{label}->{ds.classes[int(predicted[j])]} p={float(own[j]):.2f}")
                else:
                    captions.append(f"copy of {real.classes[int(real.y[nearest[j]])]}")
            figures[f"rejected-{name}"] = pairs_figure(top, bottom, captions,
                                                       "image" if ds.modality == "image" else "tabular")
        return figures
