"""``tfidf-logistic-regression``: a text downstream model for setforge's ``utility`` evaluator.

Contributed through the entry-point group ``setforge.models`` (see setforge's
docs/evaluators.md, "Contributed models"): ``utility: {model: tfidf-logistic-regression}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from setforge import DataError, Dataset, Rng

__all__ = ["TfidfLogisticRegression"]


class TfidfLogisticRegression:
    """TF-IDF of word uni- and bigrams (sublinear tf) and a multinomial logistic regression (scikit-learn).

    Fitted on the training texts only; the val split is not needed (the regularisation is fixed,
    ``C = 1``). ``epochs`` from utility's params caps the solver's iterations (at least 100), and
    the solver's seed comes from the evaluator's `Rng`.
    """

    modalities = ("text",)

    def __init__(self, options: dict[str, Any] | None = None):
        self.max_iter = max(100, int((options or {}).get("epochs", 100)))
        self.pipeline = None

    def fit(self, train: Dataset, val: Dataset | None, rng: Rng, device: Any = "cpu") -> "TfidfLogisticRegression":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if train.modality != "text":
            raise DataError(f"tfidf-logistic-regression takes text, got {train.modality}")
        labels = train.y.cpu().numpy()
        self.classes = np.unique(labels)
        self.pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                                      LogisticRegression(max_iter=self.max_iter, random_state=rng.sk_seed()))
        if len(self.classes) == 1:  # one class: every prediction is it
            self.only = int(self.classes[0])
            return self
        self.only = None
        self.pipeline.fit(list(train.x), labels)
        return self

    def predict(self, ds: Dataset) -> torch.Tensor:
        if self.pipeline is None:
            raise DataError("tfidf-logistic-regression: predict() before fit()")
        if self.only is not None:
            return torch.full((len(ds),), self.only, dtype=torch.int64)
        return torch.as_tensor(self.pipeline.predict(list(ds.x)), dtype=torch.int64)

    def predict_proba(self, ds: Dataset) -> torch.Tensor:
        """``(N, K)`` probabilities over the data's K classes (0 for a class training lacked), so
        ``utility``'s calibration scores (ECE, Brier) measure this model rather than one-hot labels."""
        if self.pipeline is None:
            raise DataError("tfidf-logistic-regression: predict_proba() before fit()")
        out = torch.zeros(len(ds), ds.num_classes, dtype=torch.float32)
        if self.only is not None:
            out[:, self.only] = 1.0
            return out
        probabilities = torch.as_tensor(self.pipeline.predict_proba(list(ds.x)), dtype=torch.float32)
        out[:, torch.as_tensor(self.pipeline.classes_, dtype=torch.int64)] = probabilities
        return out
