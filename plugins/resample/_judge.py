"""A classifier trained on the real rows of a step's input, for steps that judge rows by it
(``quality-gate`` rejects off-class rows, ``pseudo-label`` labels a pool).

The real rows are divided per class into a training part and an early-stopping part
(``val_share`` of each class, at least one row left to train on); with ``balance`` the training
part is over-sampled by repetition to the largest class first, so a rare class is not judged by a
model that hardly saw it. Randomness only from the step's `Rng`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from setforge.components import Resampler
from setforge.dataset import Dataset
from setforge.errors import DataError
from setforge.rng import Rng

from .._shared.classifiers import Classifier, train_classifier

__all__ = ["JudgeParams", "train_judge"]


class JudgeParams(Resampler.Params):
    """The judging classifier (mixed into a step's Params)."""

    model: Literal["auto", "logistic-regression", "mlp", "cnn"] = Field(
        "auto", description="the classifier trained on the real rows (auto: cnn for images, mlp otherwise)")
    epochs: int = Field(100, ge=1, le=10_000, description="most training epochs")
    patience: int = Field(10, ge=1, le=1000, description="epochs without a lower val loss before stopping")
    batch_size: int = Field(128, ge=1, le=65_536, description="rows per training batch")
    lr: float | None = Field(None, gt=0.0, le=10.0, description="Adam learning rate (default per model)")
    hidden: int = Field(128, ge=1, le=65_536, description="hidden units (mlp, cnn)")
    val_share: float = Field(0.15, ge=0.0, lt=1.0, description="share of each class's real rows held out for "
                                                               "early stopping (0: fixed epochs)")
    balance: bool = Field(True, description="over-sample the real training rows to equal classes before training")


def train_judge(real: Dataset, params: Any, rng: Rng, device: Any) -> Classifier:
    """The judging classifier of `params` (`JudgeParams` fields) trained on the `real` rows."""
    if len(real) == 0:
        raise DataError("there are no real rows to train the judging classifier on")
    kind = params.model if params.model != "auto" else ("cnn" if real.modality == "image" else "mlp")
    generator = rng.spawn("split").torch
    y = real.y
    train_rows, val_rows = [], []
    for c in range(real.num_classes):
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator, device=generator.device).to(y.device)]
        n_val = min(int(len(members) * params.val_share), max(len(members) - 1, 0))
        val_rows.append(members[:n_val])
        train_rows.append(members[n_val:])
    if params.balance:
        largest = max(len(rows) for rows in train_rows)
        train_rows = [rows[torch.arange(largest, device=rows.device) % len(rows)] if len(rows) else rows
                      for rows in train_rows]
    train_index, val_index = torch.cat(train_rows), torch.cat(val_rows)
    val = real[val_index] if len(val_index) else None
    return train_classifier(kind, real[train_index], val, rng.spawn("model"), device, epochs=params.epochs,
                            patience=params.patience, batch_size=params.batch_size, lr=params.lr,
                            hidden=params.hidden)
