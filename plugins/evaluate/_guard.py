"""The built-in provider of ``setforge_score_generated``: the host's guard on generate steps asks
how recognisable the generated rows are to a classifier trained on the real training rows (the
CAS machinery of ``cas``), next to the same classifier on the real val rows."""

from __future__ import annotations

from typing import Any

import torch

from setforge.dataset import Dataset

from .._shared.classifiers import train_classifier

__all__ = ["score_generated"]


def _balanced(predicted: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> tuple[float, dict[int, float]]:
    per_class = {}
    for c in classes:
        rows = labels == c
        if bool(rows.any()):
            per_class[c] = float((predicted[rows] == c).double().mean())
    return (sum(per_class.values()) / len(per_class) if per_class else float("nan")), per_class


def score_generated(real: Dataset, generated: Dataset, val: Dataset, rng: Any, device: Any,
                    model: str = "auto") -> dict[str, Any]:
    """Class agreement of `generated` rows and recall of real `val` rows, both averaged over the
    classes that were generated (so a long-tailed val does not weigh the largest class most).

    The classifier (``cnn`` for images, ``mlp`` otherwise with ``model: auto``) trains on `real`
    with early stopping on `val`; its val recall is therefore slightly optimistic, which makes the
    guard stricter, never laxer.
    """
    kind = model if model != "auto" else ("cnn" if real.modality == "image" else "mlp")
    classifier = train_classifier(kind, real, val if len(val) else None, rng, device)
    generated_classes = sorted(int(c) for c in torch.unique(generated.y).tolist())
    fake_pred = classifier.predict(generated.x.to(device)).cpu()
    val_pred = classifier.predict(val.x.to(device)).cpu()
    fake_score, fake_by_class = _balanced(fake_pred, generated.y.cpu(), generated_classes)
    val_classes = [c for c in generated_classes if bool((val.y.cpu() == c).any())]
    ref_score, ref_by_class = _balanced(val_pred, val.y.cpu(), val_classes)
    names = list(generated.classes)
    return {"generated": fake_score, "reference": ref_score, "model": kind,
            "n_generated": len(generated), "n_reference": int(sum(int((val.y == c).sum()) for c in val_classes)),
            "by_class": {names[c]: {"generated": fake_by_class.get(c), "reference": ref_by_class.get(c)}
                         for c in generated_classes}}
