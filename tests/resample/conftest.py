"""Data for the resampler tests: long-tailed digits (images) and breast-cancer (tabular)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge import Dataset, StepContext


def long_tailed_digits(counts: tuple[int, ...] = (80, 50, 30, 20, 15, 12, 10, 8, 8, 7)) -> Dataset:
    """scikit-learn's digits as (N, 1, 8, 8) images in [0, 1], class c cut to counts[c] rows."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.int64)
    keep = torch.cat([(y == label).nonzero().flatten()[:count] for label, count in enumerate(counts)])
    return Dataset(x=x[keep], y=y[keep], classes=[str(c) for c in range(10)], modality="image")


def breast_cancer(minority: int = 40, majority: int = 160) -> Dataset:
    """scikit-learn's breast-cancer, standardised, malignant and benign cut to `minority` and `majority` rows."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    y = data.target
    keep = np.concatenate([np.flatnonzero(y == 0)[:minority], np.flatnonzero(y == 1)[:majority]])
    return Dataset(x=torch.tensor(x[keep], dtype=torch.float32), y=torch.tensor(y[keep]),
                   classes=list(data.target_names), modality="tabular")


@pytest.fixture(scope="session")
def digits_ds() -> Dataset:
    return long_tailed_digits()


@pytest.fixture(scope="session")
def cancer_ds() -> Dataset:
    return breast_cancer()


@pytest.fixture()
def ctx() -> StepContext:
    return StepContext.from_seed(0)


def flat(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """What imbalanced-learn sees: flattened float32 rows and int labels."""
    return ds.x.reshape(len(ds), -1).numpy(), ds.y.numpy()


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    # scikit-learn's OpenMP threads (k-means, neighbours) spin for seconds on a shared, loaded CPU.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "openmp"):
        yield
