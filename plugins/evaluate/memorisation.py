"""``memorisation``: are new rows copies of the real training rows? Distance to closest record."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Metrics

from ._comparison import NEW, Group, class_shares, class_weights, comparison_groups, new_rows, path_segment
from ._features import (FeatureParams, embed_rows, feature_params_problems, raw_space, real_rows,
                        resolve_feature_space)
from ._figures import pairs_figure
from .._shared.knn import knn
from ._stats import bootstrap_counts, bootstrap_summary, weighted_median, wilson_interval

if TYPE_CHECKING:
    from setforge.context import EvalContext
    from setforge.dataset import Dataset

__all__ = ["Memorisation"]


class Memorisation(Evaluator):
    """Memorisation: distance of new rows to their closest real training row, against held-out rows.

    DCR (distance to closest record) of each new row is its distance to the nearest real row of
    the raw training split, in the chosen feature space. The same distance for the real held-out
    rows (the test split, else val) is the yardstick: rows the model never saw are that far from
    the training rows by nature. Per group (origin and overall, per class): ``dcr_median``,
    ``dcr_mean`` (with std), ``dcr_ratio`` (median new DCR / median held-out DCR of the same
    class: well below 1 means closer to the training rows than fresh real data is) and
    ``near_copy_share`` (new rows with DCR at or below ``threshold``); ``holdout/...`` gives the
    held-out rows' own values and ``threshold`` the cut-off used. By default the cut-off is the
    ``threshold_quantile`` (1%) quantile of held-out DCRs, so a generator that does not copy has a
    near-copy share near 1%; planted copies sit at DCR 0. The closest pairs of each origin are kept
    as figures (new row above its closest real training row). Augmented rows are near their
    parent by design: read their numbers as a check on the augmentation's strength. An overall
    ``dcr_ratio`` is class-matched: its yardstick is the weighted median of the held-out DCRs,
    each class weighted by its share among the new rows; it is skipped when a class of the new
    rows has fewer than 2 held-out rows (which give no per-class ratio either). Groups (or
    yardsticks) of fewer than ``min_rows`` rows get bootstrap intervals (``median-bootstrap``,
    ``median-ratio-bootstrap``) and a Wilson interval for the share; every number names its
    estimator.
    """

    name = "memorisation"
    modalities = ("image", "tabular")
    testing_params: ClassVar[dict] = {"feature_space": "raw", "min_rows": 5, "figure_pairs": 4}

    check_params = classmethod(feature_params_problems)

    class Params(FeatureParams):
        """Memorisation params."""

        threshold: float | None = Field(None, ge=0, description="near-copy cut-off on DCR in the feature space; "
                                                                 "default: threshold_quantile of held-out DCRs")
        threshold_quantile: float = Field(0.01, ge=0, le=1, description="quantile of the held-out rows' DCR used "
                                                                        "as cut-off when threshold is not given")
        holdout: Literal["test", "val"] = Field("test", description="real rows never trained on, the yardstick "
                                                                    "(falls back to the other split when absent)")
        figure_pairs: int = Field(8, ge=0, le=64, description="closest pairs drawn per origin (0: no figures)")
        block_size: int = Field(2048, ge=1, description="rows per block of the blocked neighbour search")

    def _evaluate(self, ectx: "EvalContext") -> Metrics:
        p = self.params
        metrics = Metrics()
        new = new_rows(ectx.train)
        if len(new) == 0:
            metrics.skip(f"{NEW}/overall", "the optimised training set has no augmented, resampled or generated rows "
                                           "to check for copies")
            return metrics
        real = real_rows(ectx.raw_train)
        if len(real) == 0:
            metrics.skip(f"{NEW}/overall", "the raw training split has no real rows to measure distances to")
            return metrics
        space = resolve_feature_space(ectx, p, self.name)
        real_features = embed_rows(ectx, space, real)
        new_dcr, new_nearest = knn(embed_rows(ectx, space, new), real_features, 1, block_size=p.block_size)
        new_dcr, new_nearest = new_dcr[:, 0].double(), new_nearest[:, 0]

        holdout, holdout_name = self._holdout(ectx)
        if holdout is not None and len(holdout):
            holdout_dcr = knn(embed_rows(ectx, space, holdout), real_features, 1, block_size=p.block_size)[0][:, 0]
            holdout_dcr = holdout_dcr.double()
            holdout_y = holdout.y.to(new.y.device)
        else:
            holdout_dcr = None
            holdout_y = torch.zeros(0, dtype=torch.int64, device=new.y.device)

        threshold = self._threshold(metrics, ectx, holdout_dcr, holdout_name)
        groups = comparison_groups(holdout_y, new.y, new.origin, real.classes, p.per_class)
        for group in groups:
            self._measure_group(metrics, ectx, group, new_dcr, new.y, holdout_dcr, holdout_y, threshold, holdout_name,
                                real.classes)
        if holdout_dcr is not None:
            self._measure_holdout(metrics, ectx, holdout_dcr, holdout_y, real.classes, threshold)
        if p.figure_pairs:
            self._figures(metrics, ectx, new, real, new_dcr, new_nearest, groups)
        return metrics

    # ---------------------------------------------------------------------------------------
    def _holdout(self, ectx: "EvalContext") -> tuple["Dataset | None", str]:
        order = ("test", "val") if self.params.holdout == "test" else ("val", "test")
        for name in order:
            part = getattr(ectx, name)
            if part is not None and len(part):
                return part.to(ectx.device), name
        return None, ""

    def _threshold(self, metrics: Metrics, ectx: "EvalContext", holdout_dcr: torch.Tensor | None,
                   holdout_name: str) -> float | None:
        p = self.params
        if p.threshold is not None:
            metrics.add("threshold", p.threshold, 0)
            return p.threshold
        if holdout_dcr is None or holdout_dcr.numel() < p.min_rows:
            metrics.skip("threshold", f"the near-copy cut-off is the {p.threshold_quantile:g} quantile of held-out "
                                      f"rows' DCR, and {self._too_few_held_out(ectx, holdout_name)}")
            return None
        value = float(torch.quantile(holdout_dcr, p.threshold_quantile))
        metrics.add("threshold", value, holdout_dcr.numel())
        return value

    def _too_few_held_out(self, ectx: "EvalContext", holdout_name: str) -> str:
        """How many held-out rows there are against min_rows, and what gives the default cut-off
        enough of them for the split(s) this run has."""
        p = self.params
        if not holdout_name:
            return f"there are 0 held-out rows (need {p.min_rows}; give a test or val split, or the param threshold)"
        other = "val" if holdout_name == "test" else "test"
        rows = len(getattr(ectx, other) or ())
        switch = f"param holdout: {other} with its {rows} rows, " if rows >= p.min_rows else ""
        return (f"there are {len(getattr(ectx, holdout_name))} held-out {holdout_name} rows (need {p.min_rows}; "
                f"a larger {holdout_name} split via run-file key split.{holdout_name}, {switch}a lower param "
                f"min_rows, or the param threshold)")

    def _measure_group(self, metrics: Metrics, ectx: "EvalContext", group: Group, new_dcr: torch.Tensor,
                       new_y: torch.Tensor, holdout_dcr: torch.Tensor | None, holdout_y: torch.Tensor,
                       threshold: float | None, holdout_name: str, classes: tuple[str, ...]) -> None:
        p = self.params
        dcr = new_dcr[group.new_index]
        n = dcr.numel()
        small = n < p.min_rows
        if n < 2 or (small and not p.small_sample):
            least, why = (p.min_rows, " (param min_rows)") if n >= 2 else (2, "")
            metrics.skip(group.path, f"{n} {group.describe()}; memorisation reports a number only from at least "
                                     f"{least}{why}")
            return
        generator = ectx.rng.spawn(group.path).torch
        group_y = new_y.to(dcr.device)[group.new_index]
        matched = group.label is None and p.match_classes
        counts = (bootstrap_counts(n, p.bootstrap, generator, group_y if matched else None, dcr.device)
                  if small else None)
        self._dcr_numbers(metrics, group.path, dcr, threshold, counts)
        path = f"{group.path}/dcr_ratio"
        if holdout_dcr is None:
            metrics.skip(path, "no real held-out rows (test or val split) to compare distances with")
            return
        reference, reference_y = holdout_dcr[group.real_index], holdout_y[group.real_index]
        where = "" if group.label is None else f" of class '{group.label}'"
        weights, suffix = None, ""
        if matched:
            # The yardstick in the new rows' class mix: held-out rows of their classes, reweighted.
            # A class of fewer than 2 held-out rows has no per-class ratio, and its one row would
            # carry the class's whole share of the yardstick (and of every bootstrap resample).
            present, shares = class_shares(group_y)
            held = torch.bincount(reference_y, minlength=len(classes)).tolist()
            lacking = ", ".join(f"'{classes[c]}' ({held[c]})" for c in present.tolist() if held[c] < 2)
            if lacking:
                metrics.skip(path, f"the class-matched yardstick needs at least 2 held-out {holdout_name} rows of "
                                   f"each class of the {group.describe()}, as a per-class ratio does; held-out rows "
                                   f"of {lacking} (a larger {holdout_name} split gives them more; param "
                                   f"match_classes: false uses every held-out row as they are)")
                return
            keep = torch.isin(reference_y, present.to(reference_y.device))
            reference, reference_y = reference[keep], reference_y[keep]
            weights, suffix = class_weights(reference_y, shares.to(reference.device)), "-class-weighted"
        m = reference.numel()
        ratio_small = small or m < p.min_rows
        if m < 2 or (ratio_small and not p.small_sample):
            metrics.skip(path, f"{m} held-out {holdout_name} rows{where}; the ratio needs at least "
                               f"{p.min_rows if m >= 2 else 2}{' (param min_rows)' if m >= 2 else ''}")
            return
        reference_weights = torch.ones_like(reference) if weights is None else weights
        reference_median = float(weighted_median(reference, reference_weights))
        if reference_median <= 0:
            metrics.skip(path, f"the held-out {holdout_name} rows{where} have median DCR 0: they duplicate training "
                               f"rows (split leakage), so no ratio can be formed")
            return
        ratio = float(weighted_median(dcr)) / reference_median
        if not ratio_small:
            metrics.add(path, ratio, n, estimator=f"median-ratio{suffix}")
            return
        if counts is None:
            counts = bootstrap_counts(n, p.bootstrap, generator, group_y if matched else None, dcr.device)
        reference_counts = bootstrap_counts(m, p.bootstrap, generator, reference_y if matched else None, dcr.device)
        rounds = weighted_median(dcr, counts) / weighted_median(reference, reference_counts * reference_weights)
        e = bootstrap_summary(ratio, rounds, f"median-ratio-bootstrap{suffix}")
        metrics.add(path, e.value, n, e.std, e.estimator, e.interval)

    def _dcr_numbers(self, metrics: Metrics, path: str, dcr: torch.Tensor, threshold: float | None,
                     counts: torch.Tensor | None, skip_share: bool = True) -> None:
        """``dcr_median``, ``dcr_mean`` (std: the DCRs' spread) and ``near_copy_share`` of `dcr`; with
        bootstrap `counts` (fewer than min_rows rows) with bootstrap and Wilson intervals. Without a
        threshold the share is skipped with the reason (when `skip_share`)."""
        n = dcr.numel()
        median, mean, spread = float(weighted_median(dcr)), float(dcr.mean()), float(dcr.std())
        share = None if threshold is None else float((dcr <= threshold).double().mean())
        if counts is None:
            metrics.add(f"{path}/dcr_median", median, n, estimator="median")
            metrics.add(f"{path}/dcr_mean", mean, n, spread, estimator="mean")
            if share is not None:
                metrics.add(f"{path}/near_copy_share", share, n, estimator="share", better="lower")
        else:
            e = bootstrap_summary(median, weighted_median(dcr, counts), "median-bootstrap")
            metrics.add(f"{path}/dcr_median", median, n, e.std, e.estimator, e.interval)
            e = bootstrap_summary(mean, counts @ dcr / counts.sum(-1), "mean-bootstrap")
            metrics.add(f"{path}/dcr_mean", mean, n, spread, e.estimator, e.interval)
            if share is not None:
                metrics.add(f"{path}/near_copy_share", share, n, estimator="share-wilson",
                            interval=wilson_interval(share, n), better="lower")
        if share is None and skip_share:
            metrics.skip(f"{path}/near_copy_share", "no near-copy cut-off (see the skip reason of 'threshold')")

    def _measure_holdout(self, metrics: Metrics, ectx: "EvalContext", holdout_dcr: torch.Tensor,
                         holdout_y: torch.Tensor, classes: tuple[str, ...], threshold: float | None) -> None:
        p = self.params
        parts: list[tuple[str, torch.Tensor]] = [("holdout/overall", holdout_dcr)]
        if p.per_class:
            parts += [(f"holdout/by_class/{path_segment(classes[c])}", holdout_dcr[holdout_y == c])
                      for c in torch.unique(holdout_y).tolist()]
        for path, dcr in parts:
            n = dcr.numel()
            small = n < p.min_rows
            if n < 2 or (small and not p.small_sample):
                metrics.skip(path, f"{n} held-out rows; memorisation reports a number only from at least "
                                   f"{p.min_rows if n >= 2 else 2}{' (param min_rows)' if n >= 2 else ''}")
                continue
            counts = bootstrap_counts(n, p.bootstrap, ectx.rng.spawn(path).torch, None, dcr.device) if small else None
            # Without a cut-off there is no held-out share; that is reported once, at 'threshold'.
            self._dcr_numbers(metrics, path, dcr, threshold, counts, skip_share=False)

    def _figures(self, metrics: Metrics, ectx: "EvalContext", new: "Dataset", real: "Dataset",
                 new_dcr: torch.Tensor, new_nearest: torch.Tensor, groups: list[Group]) -> None:
        if new.modality == "image":
            show_new, show_real = new.x, real.x
        elif new.modality == "tabular":
            # Strips of values standardised with the training statistics, whatever the metric's space.
            space = raw_space(ectx.raw_train, torch.device(ectx.device), self.params.batch_size)
            show_new, show_real = space.embed(new.x), space.embed(real.x)
        else:
            return
        for group in groups:
            if group.label is not None or group.family == NEW:
                continue
            dcr = new_dcr[group.new_index]
            take = dcr.argsort(stable=True)[:self.params.figure_pairs]
            rows = group.new_index[take]
            partners = new_nearest[rows]
            captions = [f"DCR {float(d):.3g}" for d in dcr[take]]
            png = pairs_figure(show_new[rows], show_real[partners], captions, new.modality)
            metrics.figure(f"closest-pairs-{group.family}", png)
