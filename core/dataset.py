"""The data that flows through a run: `Dataset`, its provenance (`Origin`), `FeatureInfo`, `Splits`.

A `Dataset` is an immutable value. Steps return new ones; nothing is mutated in place. Images are
``(N, C, H, W)`` float32 in [0, 1], tabular rows ``(N, D)`` float32, audio ``(N, C, T)`` float32,
text a list of strings. Every row carries its provenance:

- ``origin``: an `Origin` code per row (REAL, AUGMENTED, RESAMPLED, GENERATED),
- ``step``: the pipeline position that made the row, -1 for real rows,
- ``parent``: for a derived row, the index in the raw training split of the real row it grew
  from; -1 for real rows and for rows with no parent (generated rows),
- ``row_id``: for a real row, its index in the split it was read into (the raw training split
  inside a run); -1 for derived rows. It lets steps that drop real rows keep ``parent`` right.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import DataError, InvalidDatasetError

__all__ = ["Origin", "FeatureInfo", "Dataset", "Splits", "MODALITIES", "sort_class_names"]

MODALITIES = ("image", "tabular", "audio", "text")
_NDIM = {"image": 4, "tabular": 2, "audio": 3}


class Origin(enum.IntEnum):
    """Where a row came from."""

    REAL = 0
    AUGMENTED = 1
    RESAMPLED = 2
    GENERATED = 3
    PSEUDO_LABELLED = 4  #: a real unlabelled row with a label a model gave it (the ``pseudo-label`` step)

    @property
    def label(self) -> str:
        """The name in reports and files: ``real``, ``augmented``, ..., ``pseudo-labelled``."""
        return self.name.lower().replace("_", "-")


#: A plain decimal number in ASCII digits: Python's float() also takes "1_000", " 7 ", "nan", "inf"
#: and full-width digits ("１２"), which as names are words, not numbers.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def sort_class_names(names: Iterable[str]) -> list[str]:
    """Distinct class (or category) names in the order setforge's sources number them: by value
    when every name is a plain decimal number ("2" before "10"), else as text. A source that finds
    its classes in folder names or label values orders them so, and gives the same class ids."""
    names = sorted(set(names))
    numbers = [float(n) if _NUMBER.fullmatch(n) else None for n in names]
    return [n for _, n in sorted(zip(numbers, names))] if names and None not in numbers else names


@dataclass(frozen=True)
class FeatureInfo:
    """Columns of a tabular dataset.

    ``names``: one name per column. ``categorical``: ``{column: categories}``; such a column holds
    float32 codes ``0..len(categories)-1`` in ``x`` and is never interpolated or blurred.
    ``dtypes``: the original dtype of each column (as a string, e.g. ``"int64"``), so writers can
    give values back in their own type. ``label``: the name of the label column in the original
    table (a CSV source sets it), so the ``csv`` output writes it under the same name; None: ``label``.
    """

    names: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dtypes: Mapping[str, str] = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "categorical", {str(k): tuple(str(c) for c in v) for k, v in self.categorical.items()})
        object.__setattr__(self, "dtypes", {str(k): str(v) for k, v in self.dtypes.items()})
        if len(set(self.names)) != len(self.names):
            raise InvalidDatasetError(f"FeatureInfo: column names must be unique, got {list(self.names)}")
        names = set(self.names)
        unknown = [c for c in list(self.categorical) + list(self.dtypes) if c not in names]
        if unknown:
            raise InvalidDatasetError(f"FeatureInfo: columns {sorted(set(unknown))} are not among names {list(self.names)}")
        if self.label is not None and self.label in self.names:
            raise InvalidDatasetError(f"FeatureInfo: the label column {self.label!r} is also a feature column")

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical columns, in column order."""
        return [i for i, name in enumerate(self.names) if name in self.categorical]

    @property
    def numeric_indices(self) -> list[int]:
        """Positions of the numeric (non-categorical) columns, in column order."""
        return [i for i, name in enumerate(self.names) if name not in self.categorical]

    def to_dict(self) -> dict[str, Any]:
        out = {"names": list(self.names), "categorical": {k: list(v) for k, v in self.categorical.items()},
               "dtypes": dict(self.dtypes)}
        if self.label is not None:
            out["label"] = self.label
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureInfo":
        return cls(names=tuple(data["names"]), categorical={k: tuple(v) for k, v in data.get("categorical", {}).items()},
                   dtypes=dict(data.get("dtypes", {})), label=data.get("label"))


def _as_long(values: Any, n: int, name: str, default: int | None, device: torch.device) -> torch.Tensor:
    if values is None:
        return torch.full((n,), default, dtype=torch.int64, device=device)
    tensor = torch.as_tensor(values, device=device)
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.dtype.is_complex:
        raise InvalidDatasetError(f"Dataset.{name} must hold integers, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.int64)
    if tensor.shape != (n,):
        raise InvalidDatasetError(f"Dataset.{name} must have shape ({n},) to match x, got {tuple(tensor.shape)}")
    return tensor


@dataclass(frozen=True, eq=False)
class Dataset:
    """An immutable set of labelled rows with provenance.

    Build it with keywords; provenance defaults to "all real"::

        Dataset(x=images, y=labels, classes=("cat", "dog"), modality="image")

    Checks on construction (each failure is a `DataError` naming the field): ``x`` has the shape
    and dtype of its modality (images ``(N, C, H, W)`` float32 within [0, 1], tabular ``(N, D)``
    float32, audio ``(N, C, T)`` float32, text a list of str), no NaN or infinity, ``y`` is
    ``(N,)`` int64 with labels in ``range(len(classes))``, and every provenance field has length N.
    """

    x: Any
    y: torch.Tensor
    classes: tuple[str, ...]
    modality: str
    origin: torch.Tensor | None = None
    step: torch.Tensor | None = None
    parent: torch.Tensor | None = None
    row_id: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    features: FeatureInfo | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if self.modality not in MODALITIES:
            raise InvalidDatasetError(f"Dataset.modality must be one of {list(MODALITIES)}, got {self.modality!r}")
        classes = self.classes
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise InvalidDatasetError(f"Dataset.classes must be a sequence of class names, got {type(classes).__name__}")
        set_("classes", tuple(str(c) for c in classes))
        if len(set(self.classes)) != len(self.classes):
            raise InvalidDatasetError(f"Dataset.classes must be unique, got {list(self.classes)}")
        x = self.x
        if self.modality == "text":
            if not isinstance(x, (list, tuple)) or not all(isinstance(s, str) for s in x):
                raise InvalidDatasetError("Dataset.x for text must be a list of str")
            set_("x", list(x))
            device = torch.device("cpu")
        else:
            if not isinstance(x, torch.Tensor):
                raise InvalidDatasetError(f"Dataset.x for {self.modality} must be a torch.Tensor, got {type(x).__name__}")
            if x.dtype != torch.float32:
                raise InvalidDatasetError(f"Dataset.x for {self.modality} must be float32, got {x.dtype}")
            if x.ndim != _NDIM[self.modality]:
                shape = {"image": "(N, C, H, W)", "tabular": "(N, D)", "audio": "(N, C, T)"}[self.modality]
                raise InvalidDatasetError(f"Dataset.x for {self.modality} must have shape {shape}, got {tuple(x.shape)}")
            # A sum is finite exactly when no value is NaN or infinite, barring overflow; only then
            # (rarely) is the full (N, ...) mask built, so large data costs no extra copy.
            if x.numel() and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
                raise InvalidDatasetError(f"Dataset.x holds NaN or infinite values ({self.modality}, shape {tuple(x.shape)})")
            if self.modality == "image":
                if any(s == 0 for s in x.shape[1:]):
                    raise InvalidDatasetError(f"Dataset.x images must have non-zero channels and size, got {tuple(x.shape)}")
                if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
                    raise InvalidDatasetError(
                        f"Dataset.x images must lie in [0, 1], got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")
            device = x.device
        n = len(x)
        y = torch.as_tensor(self.y, device=device)
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise InvalidDatasetError(f"Dataset.y must hold integer labels, got dtype {y.dtype}")
        y = y.to(torch.int64)
        if y.shape != (n,):
            raise InvalidDatasetError(f"Dataset.y must have shape ({n},) to match x, got {tuple(y.shape)}")
        if n and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
            bad = y[(y < 0) | (y >= len(self.classes))][0].item()
            raise InvalidDatasetError(f"Dataset.y holds label {bad}, outside the {len(self.classes)} classes {list(self.classes)}")
        set_("y", y)
        origin = _as_long(self.origin, n, "origin", int(Origin.REAL), device)
        if n and (int(origin.min()) < 0 or int(origin.max()) > max(Origin)):
            raise InvalidDatasetError(f"Dataset.origin must hold Origin codes 0..{int(max(Origin))}")
        set_("origin", origin)
        set_("step", _as_long(self.step, n, "step", -1, device))
        set_("parent", _as_long(self.parent, n, "parent", -1, device))
        if self.row_id is None:
            row_id = torch.where(origin == int(Origin.REAL), torch.arange(n, device=device), -1)
        else:
            row_id = _as_long(self.row_id, n, "row_id", -1, device)
        set_("row_id", row_id)
        if self.groups is not None:
            set_("groups", _as_long(self.groups, n, "groups", None, device))
        if self.features is not None:
            if not isinstance(self.features, FeatureInfo):
                raise InvalidDatasetError(f"Dataset.features must be a FeatureInfo, got {type(self.features).__name__}")
            if self.modality != "tabular":
                raise InvalidDatasetError("Dataset.features is for tabular data only")
            if len(self.features.names) != x.shape[1]:
                raise InvalidDatasetError(f"Dataset.features names {len(self.features.names)} columns, x has {x.shape[1]}")

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        shape = f"{len(self)} texts" if self.modality == "text" else f"x={tuple(self.x.shape)}"
        counts = {o.label: int((self.origin == o).sum()) for o in Origin if int((self.origin == o).sum())}
        return f"Dataset({self.modality}, {shape}, classes={len(self.classes)}, origin={counts}, device={self.device})"

    @property
    def device(self) -> torch.device:
        return self.y.device

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one row of ``x`` (``(C, H, W)`` for images); ``()`` for text."""
        return () if self.modality == "text" else tuple(self.x.shape[1:])

    def replace(self, **changes: Any) -> "Dataset":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def class_counts(self, origin: Origin | None = None) -> list[int]:
        """Rows per class (of one origin, when given), in class order."""
        y = self.y if origin is None else self.y[self.origin == int(origin)]
        return torch.bincount(y, minlength=self.num_classes).tolist()

    def lineage(self) -> torch.Tensor:
        """For each row, the index of the real row it descends from (its own ``row_id`` for a real
        row, ``parent`` for a derived one); -1 where there is none."""
        return torch.where(self.origin == int(Origin.REAL), self.row_id, self.parent)

    # ------------------------------------------------------------ conversions
    def to(self, device: Any) -> "Dataset":
        """This dataset with every tensor on `device` (text stays on the CPU)."""
        device = torch.device(device)
        if device == self.device and (self.modality == "text" or self.x.device == device):
            return self
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        x = self.x if self.modality == "text" else self.x.to(device)
        if self.modality == "text":
            device = torch.device("cpu")
        return dataclasses.replace(self, x=x, y=move(self.y), origin=move(self.origin), step=move(self.step),
                                   parent=move(self.parent), row_id=move(self.row_id), groups=move(self.groups))

    def __getitem__(self, index: Any) -> "Dataset":
        """Rows by slice, integer index tensor/array/list or boolean mask; provenance goes along."""
        if isinstance(index, int):
            index = [index]
        if isinstance(index, slice):
            idx = torch.arange(len(self), device=self.device)[index]
        else:
            idx = torch.as_tensor(np.asarray(index) if isinstance(index, (list, tuple, np.ndarray)) else index,
                                  device=self.device)
            if idx.dtype == torch.bool:
                if idx.shape != (len(self),):
                    raise DataError(f"a boolean mask must have shape ({len(self)},), got {tuple(idx.shape)}")
                idx = idx.nonzero().flatten()
            elif idx.dtype.is_floating_point:
                raise DataError("rows are selected by integers or a boolean mask, not floats")
            idx = idx.to(torch.int64).flatten()
            if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
                raise DataError(f"row index out of range for a dataset of {len(self)} rows")
        x = [self.x[i] for i in idx.tolist()] if self.modality == "text" else self.x[idx]
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return dataclasses.replace(self, x=x, y=self.y[idx], origin=self.origin[idx], step=self.step[idx],
                                   parent=self.parent[idx], row_id=self.row_id[idx], groups=pick(self.groups))

    @staticmethod
    def concat(parts: Sequence["Dataset"]) -> "Dataset":
        """Rows of several datasets of one kind (same classes, modality, row shape and features),
        one after the other, keeping provenance; on the first part's device. When some parts have
        ``groups`` and others not (generated rows beside grouped real ones), the rows of those
        without belong to no group: ``-1``, as a resampled row without a parent."""
        parts = list(parts)
        if not parts:
            raise DataError("Dataset.concat needs at least one dataset")
        first = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            for what in ("classes", "modality", "shape", "features"):
                if getattr(part, what) != getattr(first, what):
                    raise DataError(f"Dataset.concat: part {i} has {what} {getattr(part, what)!r}, "
                                    f"part 0 has {getattr(first, what)!r}")
        if len(parts) == 1:
            return first
        device = first.device
        cat = lambda name: torch.cat([getattr(p, name).to(device) for p in parts])  # noqa: E731
        x = [s for p in parts for s in p.x] if first.modality == "text" else torch.cat([p.x.to(device) for p in parts])
        grouped = any(p.groups is not None for p in parts)
        groups = torch.cat([p.groups.to(device) if p.groups is not None else torch.full((len(p),), -1, dtype=torch.int64,
                            device=device) for p in parts]) if grouped else None
        return dataclasses.replace(first, x=x, y=cat("y"), origin=cat("origin"), step=cat("step"), parent=cat("parent"),
                                   row_id=cat("row_id"), groups=groups)

    def row_keys(self, with_label: bool = True) -> np.ndarray:
        """One opaque, comparable key per row: its exact content (and label). Two rows are exact
        duplicates when every value is equal (``0.0 == -0.0``), or for text the same string."""
        n = len(self)
        if self.modality == "text":
            keys = [hashlib.sha256(s.encode("utf-8") + (b"\0%d" % int(label) if with_label else b"")).digest()
                    for s, label in zip(self.x, self.y.tolist())]
            return np.frombuffer(b"".join(keys), dtype=np.dtype((np.void, 32))) if n else np.zeros(0, dtype="V32")
        x = (self.x.detach() + 0.0).cpu().reshape(n, -1).contiguous().numpy()  # + 0.0: -0.0 and 0.0 are one value
        parts = [x.view(np.uint8).reshape(n, -1)]
        if with_label:
            parts.append(self.y.cpu().numpy().astype("<i8").view(np.uint8).reshape(n, -1))
        rows = np.ascontiguousarray(np.concatenate(parts, axis=1))
        return rows.view(np.dtype((np.void, rows.shape[1]))).reshape(n)

    def fingerprint(self) -> str:
        """A SHA-256 of the content (x, y, classes, provenance): equal data, equal fingerprint."""
        digest = hashlib.sha256()
        # (features as sorted JSON: equal features, in whatever key order their dicts came, hash alike)
        digest.update(repr((self.modality, self.classes, self.shape, None if self.features is None else
                            json.dumps(self.features.to_dict(), sort_keys=True))).encode())
        if self.modality == "text":
            for s in self.x:
                digest.update(s.encode("utf-8") + b"\0")
        else:
            digest.update(self.x.detach().cpu().contiguous().numpy().tobytes())
        for name in ("y", "origin", "step", "parent", "row_id", "groups"):
            value = getattr(self, name)
            if value is not None:
                digest.update(name.encode() + value.cpu().numpy().tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Splits:
    """A source's own split: ``train`` and optionally ``val`` and ``test``, and the ``unlabelled``
    rows it holds.

    A missing ``val`` is carved from ``train`` by the host; a missing ``test`` is carved from
    ``train`` with the run file's ``split.test`` share. With neither (``train`` only, say beside
    ``unlabelled``), it brings no split of its own: ``train`` is split as a `Dataset` would be. ``unlabelled``: rows without a label (an
    npz ``y`` of -1), held apart from train, val and test: never split, de-duplicated or scored,
    preprocessed like the others and given to steps as ``StepContext.unlabelled`` (e.g. for the
    ``pseudo-label`` step). Their ``y`` carries no meaning (sources set 0).
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    unlabelled: Dataset | None = None

    def __post_init__(self) -> None:
        for name in ("train", "val", "test", "unlabelled"):
            part = getattr(self, name)
            if part is None:
                continue
            if not isinstance(part, Dataset):
                raise DataError(f"Splits.{name} must be a Dataset, got {type(part).__name__}")
            if name != "train" and (part.classes != self.train.classes or part.modality != self.train.modality
                                    or part.shape != self.train.shape):
                raise DataError(f"Splits.{name} must match train in classes, modality and row shape")
