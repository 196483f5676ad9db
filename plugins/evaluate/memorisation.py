"""``memorisation``: are new rows copies of the real training rows? Distance to closest record."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field

from setforge.components import Evaluator
from setforge.context import Metrics

from ._comparison import NEW, Group, comparison_groups, new_rows
from ._features import (FeatureParams, embed_rows, feature_params_problems, raw_space, real_rows,
                        resolve_feature_space)
from ._figures import pairs_figure
from .._shared.knn import knn

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
    parent by design: read their numbers as a check on the augmentation's strength.
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

        threshold = self._threshold(metrics, holdout_dcr, holdout_name)
        groups = comparison_groups(holdout_y, new.y, new.origin, real.classes, p.per_class)
        for group in groups:
            self._measure_group(metrics, group, new_dcr, holdout_dcr, threshold, holdout_name)
        if holdout_dcr is not None:
            self._measure_holdout(metrics, holdout_dcr, holdout_y, real.classes, threshold)
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

    def _threshold(self, metrics: Metrics, holdout_dcr: torch.Tensor | None, holdout_name: str) -> float | None:
        p = self.params
        if p.threshold is not None:
            metrics.add("threshold", p.threshold, 0)
            return p.threshold
        if holdout_dcr is None or holdout_dcr.numel() < p.min_rows:
            count = 0 if holdout_dcr is None else holdout_dcr.numel()
            metrics.skip("threshold", f"the near-copy cut-off is the {p.threshold_quantile:g} quantile of held-out "
                                      f"rows' DCR, and there are {count} held-out rows (need {p.min_rows}; give a "
                                      f"test or val split, or the param threshold)")
            return None
        value = float(torch.quantile(holdout_dcr, p.threshold_quantile))
        metrics.add("threshold", value, holdout_dcr.numel())
        return value

    def _measure_group(self, metrics: Metrics, group: Group, new_dcr: torch.Tensor, holdout_dcr: torch.Tensor | None,
                       threshold: float | None, holdout_name: str) -> None:
        p = self.params
        dcr = new_dcr[group.new_index]
        n = dcr.numel()
        if n < p.min_rows:
            metrics.skip(group.path, f"{n} {group.describe()}; memorisation reports a number only from at least "
                                     f"{p.min_rows} (param min_rows)")
            return
        median = float(dcr.median())
        metrics.add(f"{group.path}/dcr_median", median, n)
        metrics.add(f"{group.path}/dcr_mean", float(dcr.mean()), n, float(dcr.std()) if n > 1 else 0.0)
        if threshold is not None:
            metrics.add(f"{group.path}/near_copy_share", float((dcr <= threshold).double().mean()), n)
        else:
            metrics.skip(f"{group.path}/near_copy_share", "no near-copy cut-off (see the skip reason of 'threshold')")
        path = f"{group.path}/dcr_ratio"
        if holdout_dcr is None:
            metrics.skip(path, "no real held-out rows (test or val split) to compare distances with")
            return
        reference = holdout_dcr[group.real_index]
        where = "" if group.label is None else f" of class '{group.label}'"
        if reference.numel() < p.min_rows:
            metrics.skip(path, f"{reference.numel()} held-out {holdout_name} rows{where}; the ratio needs at least "
                               f"{p.min_rows} (param min_rows)")
            return
        reference_median = float(reference.median())
        if reference_median <= 0:
            metrics.skip(path, f"the held-out {holdout_name} rows{where} have median DCR 0: they duplicate training "
                               f"rows (split leakage), so no ratio can be formed")
            return
        metrics.add(path, median / reference_median, n)

    def _measure_holdout(self, metrics: Metrics, holdout_dcr: torch.Tensor, holdout_y: torch.Tensor,
                         classes: tuple[str, ...], threshold: float | None) -> None:
        p = self.params
        parts: list[tuple[str, torch.Tensor]] = [("holdout/overall", holdout_dcr)]
        if p.per_class:
            parts += [(f"holdout/by_class/{classes[c]}", holdout_dcr[holdout_y == c])
                      for c in torch.unique(holdout_y).tolist()]
        for path, dcr in parts:
            n = dcr.numel()
            if n < p.min_rows:
                metrics.skip(path, f"{n} held-out rows; memorisation reports a number only from at least "
                                   f"{p.min_rows} (param min_rows)")
                continue
            metrics.add(f"{path}/dcr_median", float(dcr.median()), n)
            metrics.add(f"{path}/dcr_mean", float(dcr.mean()), n, float(dcr.std()) if n > 1 else 0.0)
            if threshold is not None:
                metrics.add(f"{path}/near_copy_share", float((dcr <= threshold).double().mean()), n)

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
