"""Split leakage: rows of the training set (raw and optimised) that are copies of test rows.

A near-copy of a test row in the training set lets a model score well on the test row without
having learnt anything general, so every utility figure of the run is inflated. ``leakage``
counts exact and near duplicates shared between the training split and the test split, and draws
the closest pairs. ``split.drop_leaked: true`` uses the same definition (`Leakage.leaked_mask`) to
drop leaked training rows before any step.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from setforge import Dataset, EvalContext, Evaluator, Metrics, Origin

from .._shared.duplicates import CrossMatch, DistanceSpace, cross_match
from ._figures import pairs_figure, png_bytes
from ._stats import weighted_median

__all__ = ["Leakage"]


def _categorical(ds: Dataset) -> list[int]:
    return [] if ds.features is None else ds.features.categorical_indices


class Leakage(Evaluator):
    """Exact and near-duplicate rows shared between the training split (raw and optimised) and the test split.

    Two rows are near-duplicates when their root-mean-square difference per value is below
    ``threshold`` in the feature space (images: pixel values; tabular: numeric columns
    standardized on raw train and test together, categorical columns equal). Measures, for
    ``raw`` (the training split before any step) and ``optimised`` (after the steps), each
    ``raw/X`` against ``optimised/X``: ``exact_train_rows`` and ``near_train_rows`` (training rows
    with a copy in test, of all training rows), ``exact_test_rows``, ``near_test_rows`` and their
    ``_test_share`` (test rows with a copy in training, of all test rows), ``near_same_label``
    (leaked test rows whose closest training copy has the same label), ``nearest_median`` and
    ``nearest_min`` (each test row's distance to its nearest training row); and
    ``optimised/near_by_origin/<origin>`` (leaked rows of each origin, of that origin's rows).
    Figures: the closest pairs (``closest-pairs``, and ``closest-pairs-optimised`` when the
    optimised set differs) and a histogram of nearest distances with the threshold.
    """

    name = "leakage"
    modalities = ("image", "tabular", "audio")

    class Params(Evaluator.Params):
        """What counts as a copy, and how much to draw."""

        threshold: float = Field(0.05, gt=0.0, le=10.0, description="RMS difference per value below which two rows "
                                                                   "are near-duplicates")
        space: Literal["auto", "raw", "standardized"] = Field(
            "auto", description="raw values, standardized numeric columns, or auto (standardized for tabular, raw "
                                "otherwise)")
        near: bool = Field(True, description="look for near-duplicates as well as exact copies")
        pairs: int = Field(8, ge=0, le=64, description="closest pairs drawn in the figures (0: no figures)")

    # ---------------------------------------------------------------------------- host-facing
    def space_for(self, train: Dataset, test: Dataset) -> DistanceSpace | None:
        """The feature space distances are measured in, fitted on `train` and `test` together."""
        if not self.params.near:
            return None
        x = torch.cat([train.x.reshape(len(train), -1), test.x.reshape(len(test), -1).to(train.device)])
        return DistanceSpace.fit(x, train.modality, self.params.space, _categorical(train))

    def match(self, train: Dataset, test: Dataset, space: DistanceSpace | None = None,
              device: Any = None) -> CrossMatch:
        """Each row of `train` against `test` (exact copies, nearest test row, near-duplicates)."""
        device = train.device if device is None else torch.device(device)
        train, test = train.to(device), test.to(device)
        space = space if space is not None else self.space_for(train, test)
        return cross_match(train.x, test.x, threshold=self.params.threshold, space=space, near=self.params.near)

    def leaked_mask(self, train: Dataset, test: Dataset, device: Any = None) -> torch.Tensor:
        """``(len(train),)`` bool: training rows that are exact (or, with ``near``, near) copies of a
        test row. What ``split.drop_leaked`` drops."""
        self._check_modality(train)
        match = self.match(train, test, device=device)
        return (match.near if self.params.near else match.exact).to(train.device)

    # ------------------------------------------------------------------------------ evaluate
    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        test = ectx.test
        if test is None or len(test) == 0:
            metrics.skip("raw", "there is no test split to leak into")
            return metrics
        device = ectx.device
        raw, optimised, test = ectx.raw_train.to(device), ectx.train.to(device), test.to(device)
        space = self.space_for(raw, test)
        same = optimised is raw or (len(optimised) == len(raw) and optimised.fingerprint() == raw.fingerprint())
        raw_result = self._measure(metrics, "raw", raw, test, space)
        opt_result = raw_result if same else self._measure(metrics, "optimised", optimised, test, space)
        if same:
            self._copy(metrics, "raw", "optimised")
        self._by_origin(metrics, optimised, opt_result[0])
        if self.params.pairs:
            figure = _pairs_png(raw, test, raw_result[1], raw_result[2], self.params.pairs, space)
            metrics.figure("closest-pairs", figure)
            if not same:
                metrics.figure("closest-pairs-optimised",
                               _pairs_png(optimised, test, opt_result[1], opt_result[2], self.params.pairs, space))
            if self.params.near:
                metrics.figure("nearest-distances", _histogram_png(raw_result[1], self.params.threshold))
        return metrics

    def _measure(self, metrics: Metrics, part: str, train: Dataset, test: Dataset,
                 space: DistanceSpace | None) -> tuple[CrossMatch, torch.Tensor, torch.Tensor]:
        """Record one training set's leakage; returns (train->test match, test nearest distance, index)."""
        p = self.params
        forward = cross_match(train.x, test.x, threshold=p.threshold, space=space, near=p.near)
        backward = cross_match(test.x, train.x, threshold=p.threshold, space=space, near=p.near)
        n_train, n_test = len(train), len(test)
        kinds = [("exact", forward.exact, backward.exact)]
        if p.near:
            kinds.append(("near", forward.near, backward.near))
        for kind, train_rows, test_rows in kinds:
            metrics.add(f"{part}/{kind}_train_rows", int(train_rows.sum()), n_train, better="lower")
            metrics.add(f"{part}/{kind}_test_rows", int(test_rows.sum()), n_test, better="lower")
            metrics.add(f"{part}/{kind}_test_share", float(test_rows.float().mean()) if n_test else 0.0, n_test,
                        better="lower")
        leaked = backward.near if p.near else backward.exact
        nearest = backward.index if p.near else backward.exact_index
        if int(leaked.sum()):
            same_label = test.y[leaked] == train.y[nearest[leaked]]
            metrics.add(f"{part}/near_same_label" if p.near else f"{part}/exact_same_label",
                        int(same_label.sum()), int(leaked.sum()))
        if p.near and n_train:
            metrics.add(f"{part}/nearest_median", float(weighted_median(backward.distance)), n_test)
            metrics.add(f"{part}/nearest_min", float(backward.distance.min()), n_test)
        else:
            metrics.skip(f"{part}/nearest_median", "near-duplicate search is off (near: false)" if not p.near
                         else "the training set is empty")
        return forward, backward.distance, nearest

    def _by_origin(self, metrics: Metrics, train: Dataset, forward: CrossMatch) -> None:
        leaked = forward.near if self.params.near else forward.exact
        kind = "near" if self.params.near else "exact"
        for origin in Origin:
            rows = train.origin == int(origin)
            if bool(rows.any()):
                metrics.add(f"optimised/{kind}_by_origin/{origin.label}", int((leaked & rows).sum()), int(rows.sum()),
                            better="lower")

    @staticmethod
    def _copy(metrics: Metrics, source: str, target: str) -> None:
        for scope, values in list(metrics.measures.items()):
            for path, measure in list(values.items()):
                if path.startswith(source + "/"):
                    values[target + path[len(source):]] = measure


# ------------------------------------------------------------------------------- figures
def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default()


def _pairs_png(train: Dataset, test: Dataset, distance: torch.Tensor, index: torch.Tensor, pairs: int,
               space: DistanceSpace | None) -> bytes:
    """The `pairs` test rows closest to the training set: each training row above its test row,
    captioned with their distance (tabular rows as colour strips of standardized values)."""
    valid = (index >= 0) & torch.isfinite(distance)
    candidates = valid.nonzero().flatten()
    order = candidates[torch.argsort(distance[candidates], stable=True)][:pairs]
    top, bottom = train.x[index[order]], test.x[order]
    if train.modality != "image":
        # Strips show standardized values; `embed` divides by sqrt(D) so distances are RMS, undo that.
        width = 1 if space is None else max(int(space.numeric.numel()), 1)
        if space is not None:
            top, bottom = space.embed(top) * width ** 0.5, space.embed(bottom) * width ** 0.5
    captions = [f"d={float(distance[t]):.3f}" for t in order.tolist()]
    return pairs_figure(top, bottom, captions, train.modality)


def _histogram_png(distance: torch.Tensor, threshold: float, bins: int = 40) -> bytes:
    """Histogram of each test row's distance to its nearest training row, the threshold in red."""
    from PIL import Image, ImageDraw

    font = _font()
    values = distance[torch.isfinite(distance)].float().cpu()
    width, height, margin = 480, 220, 30
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 4), "test rows by distance to the nearest training row", fill="black", font=font)
    if values.numel() == 0:
        draw.text((margin, 40), "no distances", fill="black", font=font)
        return png_bytes(canvas)
    top = float(torch.quantile(values, 0.99)) if values.numel() > 1 else float(values.max())
    top = max(top, threshold, 1e-6) * 1.05
    counts = torch.histc(values.clamp(max=top), bins=bins, min=0.0, max=top)
    plot_w, plot_h = width - 2 * margin, height - 2 * margin
    bar_w = plot_w / bins
    peak = max(float(counts.max()), 1.0)
    for b, count in enumerate(counts.tolist()):
        h = plot_h * count / peak
        x0 = margin + b * bar_w
        draw.rectangle([x0, height - margin - h, x0 + bar_w - 1, height - margin], fill=(70, 110, 170))
    draw.line([margin, height - margin, width - margin, height - margin], fill="black")
    x = margin + plot_w * min(threshold / top, 1.0)
    draw.line([x, margin, x, height - margin], fill=(200, 30, 30), width=2)
    draw.text((x + 3, margin), f"threshold {threshold:g}", fill=(200, 30, 30), font=font)
    draw.text((margin, height - margin + 4), "0", fill="black", font=font)
    draw.text((width - margin - 60, height - margin + 4), f"{top:.3g}", fill="black", font=font)
    draw.text((width - margin - 90, margin - 12), f"max count {int(peak)}", fill="black", font=font)
    return png_bytes(canvas)
