"""The built-in provider of ``setforge_score_generated``: the host's guard on generate steps asks
how recognisable the generated rows are to a classifier trained on the real training rows (the
CAS machinery of ``cas``), next to the same classifier on the real val rows."""

from __future__ import annotations

from typing import Any

import torch

from setforge.dataset import Dataset

from .._shared.classifiers import train_classifier

__all__ = ["score_generated", "NO_VAL_ROWS"]


#: Why a generated class is left out of the comparison.
NO_VAL_ROWS = "no real val rows of this class: no reference to compare its generated rows with"


def score_generated(real: Dataset, generated: Dataset, val: Dataset, rng: Any, device: Any,
                    model: str = "auto") -> dict[str, Any]:
    """The share of the generated rows that a classifier trained on `real` assigns to their
    requested class (``generated``), against what real rows of the same classes in the same mix
    score (``reference``): the classifier's recall on the real `val` rows of each class, weighted
    by that class's share of the compared generated rows. Like with like: both numbers cover the same
    classes, weighted alike, so a generator whose rows are as recognisable as real ones scores a
    ratio of about 1, whatever its class mix and however the val split is balanced.

    Only the generated classes with real val rows are compared; one without (a class too small
    for the val split to get a row) has no reference, so its generated rows are left out of both
    numbers, and ``by_class`` lists it with ``left_out`` (the reason) and the share it scored.
    ``n_generated`` and ``n_reference`` count the compared rows; with no class to compare both
    numbers are NaN.

    The classifier (``cnn`` for images, ``mlp`` otherwise with ``model: auto``) trains on `real`
    with early stopping on `val`; its val recall is therefore slightly optimistic, which makes the
    guard stricter, never laxer.
    """
    kind = model if model != "auto" else ("cnn" if real.modality == "image" else "mlp")
    classifier = train_classifier(kind, real, val if len(val) else None, rng, device)
    labels, val_labels = generated.y.cpu(), val.y.cpu()
    agrees = classifier.predict(generated.x.to(device)).cpu() == labels
    val_agrees = classifier.predict(val.x.to(device)).cpu() == val_labels
    names = list(generated.classes)
    by_class: dict[str, dict[str, Any]] = {}
    hits = compared = n_reference = 0
    expected = 0.0  # the generated rows real rows of their classes would have got right
    for c in sorted(int(c) for c in torch.unique(labels).tolist()):
        rows, real_rows = labels == c, val_labels == c
        n, share = int(rows.sum()), float(agrees[rows].double().mean())
        if not bool(real_rows.any()):
            by_class[names[c]] = {"generated": share, "reference": None, "n_generated": n, "left_out": NO_VAL_ROWS}
            continue
        recall = float(val_agrees[real_rows].double().mean())
        by_class[names[c]] = {"generated": share, "reference": recall, "n_generated": n,
                              "n_reference": int(real_rows.sum())}
        hits, compared, n_reference = hits + int(agrees[rows].sum()), compared + n, n_reference + int(real_rows.sum())
        expected += n * recall
    return {"generated": hits / compared if compared else float("nan"),
            "reference": expected / compared if compared else float("nan"), "model": kind,
            "n_generated": compared, "n_reference": n_reference, "by_class": by_class,
            "left_out": {name: entry["left_out"] for name, entry in by_class.items() if "left_out" in entry}}
