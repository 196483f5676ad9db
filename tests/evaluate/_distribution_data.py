"""Real data with planted new rows for the distribution-metric tests (digits and breast-cancer)."""

from __future__ import annotations

import functools

import torch

from setforge import Dataset, EvalContext, Origin


@functools.lru_cache(maxsize=None)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    return x, torch.tensor(bunch.target, dtype=torch.int64)


@functools.lru_cache(maxsize=None)
def _breast_cancer() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return torch.tensor(bunch.data, dtype=torch.float32), torch.tensor(bunch.target, dtype=torch.int64)


def real_split(name: str, seed: int = 0, train_share: float = 0.6) -> tuple[Dataset, Dataset]:
    """(train, test) of real rows of `name` ("digits" or "breast-cancer"), shuffled with `seed`."""
    if name == "digits":
        x, y = _digits()
        classes, modality = tuple(str(c) for c in range(10)), "image"
    else:
        x, y = _breast_cancer()
        classes, modality = ("malignant", "benign"), "tabular"
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(train_share * len(x))
    make = lambda index: Dataset(x=x[index], y=y[index], classes=classes, modality=modality)  # noqa: E731
    return make(perm[:cut]), make(perm[cut:])


def derived(train: Dataset, x: torch.Tensor, rows: torch.Tensor, origin: Origin) -> Dataset:
    """New rows `x` of `origin` grown from real rows `rows` of `train` (labels and parents from them)."""
    n = len(rows)
    parent = rows if origin != Origin.GENERATED else torch.full((n,), -1)
    return Dataset(x=x, y=train.y[rows], classes=train.classes, modality=train.modality,
                   origin=torch.full((n,), int(origin)), step=torch.zeros(n, dtype=torch.int64),
                   parent=parent, row_id=torch.full((n,), -1), features=train.features)


def noisy_copies(train: Dataset, rows: torch.Tensor, scale: float, origin: Origin, seed: int = 1) -> Dataset:
    """Copies of `rows` with Gaussian noise of `scale` (in units of each column's std for tabular data)."""
    generator = torch.Generator().manual_seed(seed)
    x = train.x[rows]
    unit = x.std(dim=0, keepdim=True) if train.modality == "tabular" else torch.ones_like(x[:1])
    noisy = x + scale * unit * torch.randn(x.shape, generator=generator)
    if train.modality == "image":
        noisy = noisy.clamp(0, 1)
    return derived(train, noisy, rows, origin)


def context(train: Dataset, new: list[Dataset], test: Dataset | None = None, seed: int = 0) -> EvalContext:
    """An EvalContext whose optimised set is `train` plus the `new` rows."""
    return EvalContext.from_seed(seed, train, train=Dataset.concat([train, *new]), test=test)


def flipped(train: Dataset, rows: torch.Tensor) -> Dataset:
    """Augmented rows: horizontal flips of image `rows`."""
    return derived(train, train.x[rows].flip(-1), rows, Origin.AUGMENTED)
