"""Checkpoint selection and collapse detection for the shared GAN loop.

At every checkpoint (and at the end) `QualityMonitor` samples the EMA generator with fixed
latents (a sub-generator of its own, so training's randomness is untouched) and measures, in a
trained feature space (the penultimate layer of the shared ``cnn`` classifier trained on the
step's real training rows, early-stopped on the real val split; trained once per run and kept in
the run's cache as plain tensors, so a resumed run reuses it):

- ``fd``: the Fréchet distance of the samples (labels in the val split's class proportions) to
  the real val split. ``select: best-fd`` keeps the EMA weights of the checkpoint with the lowest;
  ``select: last`` keeps the last weights and still reports the curve.
- per class, PRDC ``coverage`` and ``recall`` (k = 5) of that class's samples against the class's
  real training rows: a class whose coverage falls below ``collapse_coverage`` has collapsed (its
  samples sit on a few real rows), which the step's report names as a warning with the iteration.
  A class PRDC cannot measure (at most k real training rows or samples, or no val rows to draw
  its labels from) is ``unchecked``, with the reason, and a warning says so.

`collapse_warnings` writes the warnings from the report alone (plain values), for the classes a
step generates: the generator is fitted on every class, and a class it is not asked for is no
concern of the step's rows (`note_sampled` in ``_gan_training`` narrows them as rows are sampled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from setforge.dataset import Dataset

__all__ = ["QualityMonitor", "collapse_warnings", "feature_network", "PRDC_K"]

#: Nearest neighbours of PRDC's balls (the paper's 5).
PRDC_K = 5


def feature_network(train: Dataset, val: Dataset | None, seed: int, device: torch.device, cache: Any,
                    epochs: int = 100, kind: str = "cnn") -> nn.Module:
    """The shared classifier of `kind` (``cnn`` for images) trained on `train` (early-stopped on
    `val`), from the run's `cache` when it holds one for this data (stored as plain tensors)."""
    from setforge.context import Cache
    from setforge.plugins._shared.classifiers import cached_classifier, train_classifier

    key = Cache.key("setforge-gan-monitor", kind, train.fingerprint(), None if val is None else val.fingerprint(),
                    epochs, seed)
    return cached_classifier(cache, key, lambda: train_classifier(kind, train, val, seed, device, epochs=epochs),
                             device)


class QualityMonitor:
    """FD to the val split and per-class PRDC at each checkpoint; keeps the best weights.

    `train` and `val` are datasets in dataset units (images in [0, 1]); `decode` maps the
    generator's output to those units. `samples` rows are drawn at each measurement, with class
    labels, or what `condition(labels, generator)` makes of them (see `GanTrainer`).
    """

    def __init__(self, train: Dataset, val: Dataset, features: nn.Module, decode: Any, latent_dim: int, seed: int,
                 select: str, collapse_coverage: float, samples: int = 1000, condition: Any = None):
        from setforge.plugins.evaluate._stats import moments

        self.features, self.decode, self.latent_dim, self.condition = features, decode, latent_dim, condition
        self.select, self.collapse_coverage = select, collapse_coverage
        self.classes = train.classes
        self.device = train.x.device
        self.val_moments = moments(self._embed(val.x).double())
        repeats = math.ceil(samples / max(1, len(val)))
        self.labels = val.y.repeat(repeats)[:max(samples, len(val))].to(self.device)
        # a class PRDC can measure: more than k real training rows and k samples (its labels drawn from val's)
        self.train_features: dict[int, torch.Tensor] = {}
        self.unchecked: dict[str, str] = {}  # {class: why PRDC cannot measure it}
        for c in sorted(set(train.y.tolist())):
            rows, drawn = int((train.y == c).sum()), int((self.labels == c).sum())
            need = f"PRDC coverage (k={PRDC_K}) needs more than {PRDC_K}"
            why = ("the val split has no rows of it, so the monitor draws no samples of it" if not drawn else
                   f"it has {rows} real training rows and {need}" if rows <= PRDC_K else
                   f"the monitor draws {drawn} samples of it (monitor_samples, in the val split's class "
                   f"proportions) and {need}" if drawn <= PRDC_K else None)
            if why is None:
                self.train_features[c] = self._embed(train.x[train.y == c])
            else:
                self.unchecked[str(self.classes[c])] = why
        self.seed = seed
        self.curve: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # {"iteration", "fd", "weights"}

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features.embed(x.to(self.device))

    @torch.no_grad()
    def measure(self, ema: nn.Module, iteration: int) -> dict[str, Any]:
        """Sample `ema` (in eval mode, its batch-norm statistics refreshed by the caller), measure, keep the best."""
        from setforge.plugins.evaluate._stats import frechet_distance, moments
        from setforge.plugins.evaluate.prdc import prdc

        draw = torch.Generator(device=self.device)
        draw.manual_seed(self.seed)  # the same latents at every checkpoint
        rows = []
        for start in range(0, len(self.labels), 512):
            labels = self.labels[start:start + 512]
            z = torch.randn(len(labels), self.latent_dim, generator=draw, device=self.device)
            inputs = labels if self.condition is None else self.condition(labels, draw)
            rows.append(self.decode(ema(z, inputs).float()))
        features = self._embed(torch.cat(rows))
        m = moments(features.double())
        fd = frechet_distance(m.mean, m.cov, self.val_moments.mean, self.val_moments.cov)
        by_class: dict[str, dict[str, float]] = {}
        for c, real in self.train_features.items():
            scores = prdc(real, features[self.labels == c], k=PRDC_K)
            by_class[str(self.classes[c])] = {"coverage": round(float(scores["coverage"]), 6),
                                              "recall": round(float(scores["recall"]), 6)}
        point = {"iteration": int(iteration), "fd": round(float(fd), 6), "by_class": by_class}
        self.curve.append(point)
        if self.best is None or fd < self.best["fd"]:
            self.best = {"iteration": int(iteration), "fd": float(fd),
                         "weights": {k: v.detach().clone() for k, v in ema.state_dict().items()}}
        return point

    def report(self, final_iteration: int) -> dict[str, Any]:
        """The selection report (plain values): ``select``, ``chosen_iteration``, ``curve``,
        ``collapse_coverage``, ``unchecked`` ({class: why PRDC cannot measure it}) and the
        ``warnings`` of every class (`collapse_warnings`)."""
        chosen = self.best["iteration"] if self.select == "best-fd" and self.best is not None else final_iteration
        report = {"select": self.select, "chosen_iteration": int(chosen), "curve": list(self.curve),
                  "collapse_coverage": self.collapse_coverage, "unchecked": dict(self.unchecked)}
        return {**report, "warnings": collapse_warnings(report)}

    # checkpoints: the curve and the best weights travel with the loop's state
    def state(self) -> dict[str, Any]:
        return {"curve": list(self.curve), "best": self.best}

    def load_state(self, state: dict[str, Any]) -> None:
        self.curve = list(state["curve"])
        self.best = state["best"]


def collapse_warnings(report: dict[str, Any], classes: Sequence[str] | None = None) -> list[str]:
    """Warnings from a monitor's `report` for the class names `classes` (None: every class the
    monitor saw), in that order: each class whose coverage is below ``collapse_coverage`` at the
    chosen iteration (the weights kept), or fell below it during training after having been
    above, and each class PRDC could not measure (``unchecked``), with the reason."""
    curve, chosen, floor = report["curve"], report["chosen_iteration"], report["collapse_coverage"]
    unchecked = report.get("unchecked", {})
    measured = [name for point in curve for name in point["by_class"]]
    names = list(dict.fromkeys([*measured, *unchecked])) if classes is None else classes
    threshold = f"PRDC coverage, k={PRDC_K}; threshold collapse_coverage={floor:g}"
    kept_at = next((p["by_class"] for p in curve if p["iteration"] == chosen), {})
    warnings = []
    for name in names:
        if name in unchecked:
            warnings.append(f"class '{name}' was not checked for collapse: {unchecked[name]}")
            continue
        kept = kept_at.get(name)
        if kept is not None and kept["coverage"] < floor:
            warnings.append(f"class '{name}' looks collapsed at iteration {chosen} (the weights kept): its "
                            f"samples cover {kept['coverage']:.2f} of its real rows ({threshold})")
            continue
        was_good = False
        for iteration, coverage in ((p["iteration"], p["by_class"][name]["coverage"]) for p in curve
                                    if name in p["by_class"]):
            if coverage >= floor:
                was_good = True
            elif was_good:
                warnings.append(f"class '{name}' collapsed at iteration {iteration} during training: its "
                                f"samples covered {coverage:.2f} of its real rows ({threshold}); the weights "
                                f"kept (iteration {chosen}) do not")
                break
    return warnings
