"""Sources from scikit-learn's bundled datasets (no download): ``sklearn-digits``,
``sklearn-breast-cancer`` and ``sklearn-wine``."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from setforge.components import Source
from setforge.context import StepContext
from setforge.dataset import Dataset, FeatureInfo, Splits
from setforge.errors import DataError
from setforge.rng import Rng

__all__ = ["DigitsSource", "BreastCancerSource", "WineSource", "long_tail_counts"]


def long_tail_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """The exponential long-tail profile: ``n_c = floor(n_max * R ** (-c / (C - 1)))`` for class
    ``c`` (at least 1), so class 0 keeps ``n_max`` rows and the last class ``n_max / R``."""
    if num_classes < 2:
        return [int(n_max)] * num_classes
    return [max(1, int(np.floor(n_max * imbalance ** (-c / (num_classes - 1)) + 1e-9))) for c in range(num_classes)]


class DigitsSource(Source):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), optionally long-tailed.

    Images are ``(N, 1, 8, 8)`` float32 in [0, 1] (the 0..16 grey levels divided by 16); the
    classes are ``"0"`` .. ``"9"``. Without ``imbalance`` the source gives every row and the run's
    ``split`` divides them. With ``imbalance: R`` it gives the long-tailed benchmark protocol as
    its own split: first a balanced real test part (``test_share`` of the smallest class, the same
    number of rows from every class) is set aside, then the remaining rows are cut to the
    exponential profile ``n_c = floor(n_max * R ** (-c / 9))`` for class ``c``, where ``n_max`` is
    what the smallest class has left (class 0 is the largest, class 9 has ``n_max / R`` rows). The
    val part is carved from the long-tailed train part by the run's ``split.val``. Which rows are
    taken is fixed by ``protocol_seed``, not by the run seed, so runs with different seeds share
    one benchmark. With ``labelled_share`` below 1 only that share of each class's training rows
    keeps its label; the rest are the source's unlabelled rows (`Splits.unlabelled`), for the
    ``pseudo-label`` step (``imbalance: 1`` gives every class the same training rows).
    ``test_share``, ``protocol_seed`` and ``labelled_share`` are refused without ``imbalance``.
    """

    name = "sklearn-digits"
    modalities = ("image",)

    class Params(Source.Params):
        """The long-tailed protocol's knobs."""

        imbalance: float | None = Field(None, ge=1.0, le=1000.0,
                                        description="R: ratio of the largest to the smallest class in the "
                                                    "training part (none: all rows, split by the run)")
        test_share: float = Field(0.3, gt=0.0, lt=1.0,
                                  description="with imbalance: share of the smallest class set aside from every "
                                              "class as the balanced real test part")
        protocol_seed: int = Field(0, ge=0, lt=2**63,
                                   description="with imbalance: fixes which rows form the test and long-tailed parts")
        labelled_share: float = Field(1.0, gt=0.0, le=1.0,
                                      description="with imbalance: share of each class's training rows that keep "
                                                  "their label (at least 2); the rest become unlabelled rows")

        @model_validator(mode="after")
        def _protocol_keys_need_imbalance(self):
            # without imbalance every row is given as it is: these keys would be ignored without a word
            # (a labelled_share asked for would silently give every label)
            changed = [f"{key} {getattr(self, key)}" for key in ("test_share", "protocol_seed", "labelled_share")
                       if self.imbalance is None and getattr(self, key) != type(self).model_fields[key].default]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                raise ValueError(f"{', '.join(changed)} only {verb} with imbalance (the long-tailed protocol); "
                                 f"set imbalance (1 keeps the classes equal) or leave them out")
            return self

    def _load(self, ctx: StepContext) -> Dataset | Splits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1).clamp_(0.0, 1.0)
        y = torch.tensor(bunch.target, dtype=torch.int64)
        classes = tuple(str(c) for c in bunch.target_names)
        full = Dataset(x=x, y=y, classes=classes, modality="image").to(ctx.device)
        if self.params.imbalance is None:
            return full
        target = np.asarray(bunch.target)
        per_class = np.bincount(target, minlength=len(classes))
        n_test = int(np.floor(self.params.test_share * per_class.min()))
        n_max = int(per_class.min()) - n_test
        if n_test < 1 or n_max < 1:
            raise DataError(f"source '{self.name}': test_share {self.params.test_share} leaves no rows for "
                            f"{'the test part' if n_test < 1 else 'training'}; choose a share in (0.01, 0.99)")
        train_counts = long_tail_counts(n_max, len(classes), float(self.params.imbalance))
        rng = Rng(self.params.protocol_seed, ("sklearn-digits", "long-tail")).numpy
        test_rows, train_rows = [], []
        for c in range(len(classes)):
            rows = rng.permutation(np.flatnonzero(target == c))
            test_rows.append(rows[:n_test])
            train_rows.append(rows[n_test:n_test + train_counts[c]])
        test_index = np.sort(np.concatenate(test_rows))
        share = self.params.labelled_share
        labelled = [rows[:max(2, int(np.floor(share * len(rows) + 1e-9)))] for rows in train_rows]
        pool = np.sort(np.concatenate([rows[len(kept):] for rows, kept in zip(train_rows, labelled)]))
        train_index = np.sort(np.concatenate(labelled))
        unlabelled = None
        if len(pool):
            unlabelled = full[pool].replace(y=torch.zeros(len(pool), dtype=torch.int64, device=full.device),
                                            row_id=None)
        return Splits(train=full[train_index].replace(row_id=None), test=full[test_index].replace(row_id=None),
                      unlabelled=unlabelled)


class _TabularSource(Source):
    """Shared loading of a scikit-learn tabular dataset with its column names."""

    modalities = ("tabular",)
    _loader = ""

    def _load(self, ctx: StepContext) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, self._loader)()
        names = tuple(str(n) for n in bunch.feature_names)
        data = np.asarray(bunch.data)
        features = FeatureInfo(names=names, dtypes={n: str(data.dtype) for n in names})
        return Dataset(x=torch.tensor(data, dtype=torch.float32), y=torch.tensor(bunch.target, dtype=torch.int64),
                       classes=tuple(str(c) for c in bunch.target_names), modality="tabular",
                       features=features).to(ctx.device)


class BreastCancerSource(_TabularSource):
    """scikit-learn's breast-cancer data: 569 rows, 30 numeric columns, malignant (212) vs benign (357).

    Tabular ``(N, 30)`` float32 in original units, with a `FeatureInfo` naming the columns (all
    numeric, originally float64). The run's ``split`` divides the rows.
    """

    name = "sklearn-breast-cancer"
    _loader = "load_breast_cancer"


class WineSource(_TabularSource):
    """scikit-learn's wine data: 178 rows, 13 numeric columns, 3 cultivars (59, 71, 48 rows).

    Tabular ``(N, 13)`` float32 in original units, with a `FeatureInfo` naming the columns (all
    numeric, originally float64). The run's ``split`` divides the rows.
    """

    name = "sklearn-wine"
    _loader = "load_wine"
