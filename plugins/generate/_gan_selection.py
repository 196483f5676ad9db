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
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from setforge.dataset import Dataset

__all__ = ["QualityMonitor", "feature_network", "PRDC_K"]

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
        present = sorted(set(train.y.tolist()) & set(self.labels.tolist()))
        self.train_features = {c: self._embed(train.x[train.y == c]) for c in present}
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
            fake = features[self.labels == c]
            if len(real) > PRDC_K and len(fake) > PRDC_K:
                scores = prdc(real, fake, k=PRDC_K)
                by_class[str(self.classes[c])] = {"coverage": round(float(scores["coverage"]), 6),
                                                  "recall": round(float(scores["recall"]), 6)}
        point = {"iteration": int(iteration), "fd": round(float(fd), 6), "by_class": by_class}
        self.curve.append(point)
        if self.best is None or fd < self.best["fd"]:
            self.best = {"iteration": int(iteration), "fd": float(fd),
                         "weights": {k: v.detach().clone() for k, v in ema.state_dict().items()}}
        return point

    def collapsed(self, chosen: int) -> list[str]:
        """Warnings naming each class whose coverage is below the threshold at the `chosen`
        iteration (the weights kept), or fell below it during training after having been above."""
        warnings = []
        at = {point["iteration"]: point for point in self.curve}
        for name in self.curve[-1]["by_class"] if self.curve else []:
            history = [(p["iteration"], p["by_class"][name]["coverage"]) for p in self.curve if name in p["by_class"]]
            kept = at.get(chosen, {}).get("by_class", {}).get(name)
            threshold = f"PRDC coverage, k={PRDC_K}; threshold collapse_coverage={self.collapse_coverage:g}"
            if kept is not None and kept["coverage"] < self.collapse_coverage:
                warnings.append(f"class '{name}' looks collapsed at iteration {chosen} (the weights kept): its "
                                f"samples cover {kept['coverage']:.2f} of its real rows ({threshold})")
                continue
            was_good = False
            for iteration, coverage in history:
                if coverage >= self.collapse_coverage:
                    was_good = True
                elif was_good:
                    warnings.append(f"class '{name}' collapsed at iteration {iteration} during training: its "
                                    f"samples covered {coverage:.2f} of its real rows ({threshold}); the weights "
                                    f"kept (iteration {chosen}) do not")
                    break
        return warnings

    def report(self, final_iteration: int) -> dict[str, Any]:
        chosen = self.best["iteration"] if self.select == "best-fd" and self.best is not None else final_iteration
        return {"select": self.select, "chosen_iteration": int(chosen), "curve": list(self.curve),
                "warnings": self.collapsed(int(chosen))}

    # checkpoints: the curve and the best weights travel with the loop's state
    def state(self) -> dict[str, Any]:
        return {"curve": list(self.curve), "best": self.best}

    def load_state(self, state: dict[str, Any]) -> None:
        self.curve = list(state["curve"])
        self.best = state["best"]
