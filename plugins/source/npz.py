"""``npz``: a NumPy ``.npz`` file with arrays ``x`` and ``y`` (and optionally ``classes``, ``split``,
``groups``, ``columns``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from setforge.components import Source, SourceScan
from setforge.context import StepContext
from setforge.dataset import Dataset, FeatureInfo, Splits
from setforge.errors import DataError, InvalidDatasetError

from ._files import encode_groups, encode_labels, existing_path, number_text

__all__ = ["NpzSource"]

_SPLITS = ("train", "val", "test")
_MODALITY_BY_NDIM = {1: "text", 2: "tabular", 3: "audio", 4: "image"}
#: Float images may overshoot [0, 1] by rounding error; this much is clipped rather than rejected.
_IMAGE_TOLERANCE = 1e-5


class NpzSource(Source):
    """A NumPy .npz file: arrays x and y, optionally classes, split, groups and columns.

    ``x``: images ``(N, C, H, W)`` (``(N, H, W, C)`` is recognised when the last axis has 1, 3 or
    4 channels and the second does not; ``(N, H, W)`` with ``modality: image`` is one channel),
    uint8 (scaled by 1/255), uint16 (by 1/65535) or float in [0, 1]; tabular ``(N, D)``; audio
    ``(N, C, T)``; text a 1-D array of strings. With ``modality: auto`` the number of axes decides
    (4 image, 2 tabular, 3 audio, 1 of strings text).

    ``y``: ``(N,)`` integer labels or class names. ``classes`` (optional): the class names; integer
    labels then index into it and names must be in it, and a label outside it is an invalid row.
    Without it the classes are the distinct labels, sorted (numbers by value). An integer label
    of -1 marks an unlabelled row: such rows are held apart from train, val and test
    (`Splits.unlabelled`, for steps such as ``pseudo-label``); the run then splits the labelled
    rows (or uses the file's ``split`` for them).

    ``split`` (optional): ``(N,)`` strings ``train`` / ``val`` / ``test``; the file's own split,
    used instead of the run's. ``groups`` (optional): ``(N,)`` group ids (numbers or names) for
    ``split.group_by``. ``columns`` (optional, tabular): the column names. A ``features`` array (the
    JSON `FeatureInfo` that setforge's npz output writes) is read too, so a run folder's
    ``val.npz`` and ``test.npz`` load with their columns and categories.

    Invalid rows (NaN or infinite values, image values outside [0, 1], unknown labels, unknown
    split names) stop the run naming the row, or are dropped and counted with
    ``source.on_invalid: drop``. The file is read with ``allow_pickle=False``: object arrays are
    refused; save strings as a NumPy string array (``np.array(names, dtype=str)``).
    """

    name = "npz"
    modalities = ("image", "tabular", "audio", "text")
    streams = True

    class Params(Source.Params):
        """Where the file is and how to read it."""

        path: Path = Field(Path("data.npz"), description="the .npz file (relative to the run file's folder)")
        modality: Literal["auto", "image", "tabular", "audio", "text"] = Field(
            "auto", description="auto: from the number of axes of x (4 image, 2 tabular, 3 audio, 1 text)")

    @classmethod
    def make_testing_params(cls, folder: Path) -> dict[str, Any]:
        """A small fixture for the conformance kit: 24 tabular rows of 3 classes, with names."""
        rng = np.random.default_rng(0)
        path = Path(folder) / "kit.npz"
        np.savez(path, x=rng.normal(size=(24, 4)), y=np.repeat(np.arange(3), 8),
                 classes=np.array(["a", "b", "c"]), groups=np.arange(24) // 2)
        return {"path": str(path)}

    def _load(self, ctx: StepContext) -> Dataset | Splits:
        path = existing_path(self.params.path, "npz")
        arrays = _read(path)
        for key in ("x", "y"):
            if key not in arrays:
                raise DataError(f"npz {path.name}: no array {key!r}; the file holds {sorted(arrays)} "
                                f"(needed: x and y; optional: classes, split, groups, columns)")
        x, y = arrays["x"], arrays["y"]
        n = len(x) if x.ndim else 0
        if n == 0:
            raise DataError(f"npz {path.name}: x holds no rows (shape {x.shape})")
        for key in ("y", "split", "groups"):
            if key in arrays and (arrays[key].ndim != 1 or len(arrays[key]) != n):
                raise DataError(f"npz {path.name}: array {key!r} has shape {arrays[key].shape}, "
                                f"expected ({n},) to match x")
        modality = self._modality(x, path)
        bad: dict[int, tuple[str, str]] = {}  # row -> (place within the row, reason)
        x = self._values(x, modality, path, bad)
        # Integer label -1: an unlabelled row, held apart (Splits.unlabelled). It takes a valid label
        # while the class list is read, so the class list is that of the labelled rows: all of them,
        # also those whose x is invalid, as a streaming run's scan reads it before any x.
        unlabelled = (y == -1) if y.dtype.kind == "i" else np.zeros(n, dtype=bool)
        if unlabelled.all():
            raise DataError(f"npz {path.name}: every row is unlabelled (y = -1); label some rows")
        if unlabelled.any():
            y = np.where(unlabelled, 0 if "classes" in arrays else y[~unlabelled][0], y)
        label_bad: dict[int, tuple[str, str]] = {}
        codes, classes = self._labels(y, arrays.get("classes"), path, label_bad)
        for row, why in label_bad.items():
            bad.setdefault(row, why)
        part = self._split_names(arrays.get("split"), path, bad)
        groups = None if "groups" not in arrays else encode_groups(arrays["groups"])
        for row in sorted(bad):
            self._invalid(f"npz {path.name}: row {row}{bad[row][0]}", bad[row][1])
        keep = np.ones(n, dtype=bool)
        keep[list(bad)] = False
        if not keep.any():
            raise DataError(f"npz {path.name}: no valid rows ({n} rows, {len(bad)} invalid; dropped: {self.dropped})")
        features = None
        if modality == "tabular" and "features" in arrays:
            features = _written_features(arrays["features"], x.shape[1], path)
        elif modality == "tabular":
            features = self._features(arrays.get("columns"), arrays["x"].dtype, x.shape[1], path)

        def dataset(rows: np.ndarray, labelled: bool = True) -> Dataset:
            data = [x[i] for i in rows] if modality == "text" else torch.from_numpy(np.ascontiguousarray(x[rows]))
            labels = codes[rows] if labelled else np.zeros(len(rows), dtype=np.int64)
            try:
                return Dataset(x=data, y=torch.from_numpy(labels), classes=classes, modality=modality,
                               groups=None if groups is None else torch.from_numpy(groups[rows]), features=features)
            except InvalidDatasetError as error:  # the file's arrays do not make a dataset: bad data, not a bug
                raise DataError(f"npz {path.name}: {error}") from None

        pool = dataset(np.flatnonzero(keep & unlabelled), labelled=False) if unlabelled.any() else None
        keep &= ~unlabelled
        if part is None:
            if pool is None:
                return dataset(np.flatnonzero(keep))
            return Splits(train=dataset(np.flatnonzero(keep)), unlabelled=pool)  # the run carves val and test
        parts = {name: np.flatnonzero(keep & (part == name)) for name in _SPLITS}
        if not len(parts["train"]):
            raise DataError(f"npz {path.name}: the 'split' array names no (valid) train rows; "
                            f"give some rows split 'train', or remove the 'split' array to let the run split")
        return Splits(train=dataset(parts["train"]),
                      val=dataset(parts["val"]) if len(parts["val"]) else None,
                      test=dataset(parts["test"]) if len(parts["test"]) else None, unlabelled=pool)

    def _scan(self, ctx: StepContext) -> SourceScan:
        """Every array but ``x`` read and checked at once; ``x`` read a batch of rows at a time."""
        path = existing_path(self.params.path, "npz")
        arrays = _read(path, skip=("x",))
        rows = _Rows(path)
        y, n = arrays.get("y"), rows.shape[0] if rows.shape else 0
        if y is None or n == 0 or y.ndim != 1 or len(y) != n:
            raise DataError(f"npz {path.name}: streaming needs an x with rows and a y of one label per row "
                            f"(x {rows.shape}, y {None if y is None else y.shape})")
        for key in ("split", "groups"):
            if key in arrays and (arrays[key].ndim != 1 or len(arrays[key]) != n):
                raise DataError(f"npz {path.name}: array {key!r} has shape {arrays[key].shape}, expected ({n},) to match x")
        first = rows.read(0, 1)
        modality = self._modality(first, path)
        if modality == "text":
            raise DataError(f"npz {path.name}: text rows do not stream; set source.stream: false")
        shape = tuple(self._values(first, modality, path, {}).shape[1:])
        bad: dict[int, tuple[str, str]] = {}
        unlabelled = (y == -1) if y.dtype.kind == "i" else np.zeros(n, dtype=bool)
        if unlabelled.all():
            raise DataError(f"npz {path.name}: every row is unlabelled (y = -1); label some rows")
        if unlabelled.any():
            y = np.where(unlabelled, 0 if "classes" in arrays else y[~unlabelled][0], y)
        labels, classes = self._labels(y, arrays.get("classes"), path, bad)
        part = self._split_names(arrays.get("split"), path, bad)
        for row in sorted(bad):
            self._invalid(f"npz {path.name}: row {row}{bad[row][0]}", bad[row][1])
        labels[unlabelled], labels[list(bad)] = -1, -2
        features = None
        if modality == "tabular":
            features = (_written_features(arrays["features"], shape[0], path) if "features" in arrays
                        else self._features(arrays.get("columns"), rows.dtype, shape[0], path))

        def read(index: np.ndarray) -> Dataset:
            index = np.asarray(index, dtype=np.int64)
            found: dict[int, tuple[str, str]] = {}
            x = self._values(rows.read(int(index[0]), int(index[-1]) + 1)[index - index[0]], modality, path, found)
            for row in sorted(found):
                self._invalid(f"npz {path.name}: row {int(index[row])}{found[row][0]}", found[row][1])
            ok = ~np.isin(np.arange(len(index)), list(found))
            return Dataset(x=torch.from_numpy(np.ascontiguousarray(x[ok])), y=torch.from_numpy(labels[index[ok]]),
                           classes=classes, modality=modality, features=features, row_id=torch.from_numpy(index[ok]))

        groups = None if "groups" not in arrays else encode_groups(arrays["groups"])
        return SourceScan(labels, tuple(classes), modality, shape, read, part, groups, features)

    # ------------------------------------------------------------------ parts
    def _modality(self, x: np.ndarray, path: Path) -> str:
        if self.params.modality != "auto":
            return self.params.modality
        modality = _MODALITY_BY_NDIM.get(x.ndim)
        if modality is None or (modality == "text") != (x.dtype.kind in "US"):
            raise DataError(f"npz {path.name}: cannot tell the modality of x with shape {x.shape} and dtype "
                            f"{x.dtype} (4 axes image, 2 tabular, 3 audio, 1 axis of strings text); "
                            f"set source.params.modality")
        return modality

    def _values(self, x: np.ndarray, modality: str, path: Path, bad: dict[int, tuple[str, str]]) -> Any:
        """`x` as the modality's float32 layout (a list of str for text); invalid rows into `bad`."""
        if modality == "text":
            if x.ndim != 1 or x.dtype.kind not in "US":
                raise DataError(f"npz {path.name}: text x must be a 1-D array of strings, got {x.shape} {x.dtype}")
            return [number_text(s) for s in x.tolist()]
        if x.dtype.kind not in "biuf":
            raise DataError(f"npz {path.name}: x must be numeric for {modality} data, got dtype {x.dtype}")
        want = {"image": 4, "tabular": 2, "audio": 3}[modality]
        if modality == "image" and x.ndim == 3:
            x = x[:, None]
        elif modality == "image" and x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)  # channels last -> channels first
        elif modality == "tabular" and x.ndim > 2:
            x = x.reshape(len(x), -1)
        elif modality == "audio" and x.ndim == 2:
            x = x[:, None]
        if x.ndim != want:
            raise DataError(f"npz {path.name}: {modality} x must have {want} axes, got shape {x.shape}")
        if modality == "image" and x.dtype.kind in "iu" and x.dtype not in (np.uint8, np.uint16):
            raise DataError(f"npz {path.name}: image x of dtype {x.dtype}; give uint8 (0..255), uint16 "
                            f"(0..65535) or float in [0, 1]")
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(x.dtype) if modality == "image" else None
        values = x.astype(np.float32)
        if scale is not None:
            values /= np.float32(scale)
        flat = values.reshape(len(values), -1)
        finite = np.isfinite(flat)
        for row in np.flatnonzero(~finite.all(axis=1)):
            where = int(np.flatnonzero(~finite[row])[0])
            place = f"column {where}" if modality == "tabular" else f"value {where}"
            bad.setdefault(int(row), (f", {place}", "NaN or infinite value"))
        if modality == "image" and scale is None:
            safe = np.where(finite, flat, 0.5)
            outside = (safe < -_IMAGE_TOLERANCE) | (safe > 1 + _IMAGE_TOLERANCE)
            for row in np.flatnonzero(outside.any(axis=1)):
                bad.setdefault(int(row), (f" (values in [{safe[row].min():.4g}, {safe[row].max():.4g}])",
                                          "image values outside [0, 1] (float images lie in [0, 1]; "
                                          "save 0..255 images as uint8)"))
            np.clip(values, 0.0, 1.0, out=values, where=np.isfinite(values))
        return values

    def _labels(self, y: np.ndarray, classes_array: np.ndarray | None, path: Path,
                bad: dict[int, tuple[str, str]]) -> tuple[np.ndarray, list[str]]:
        classes = None if classes_array is None else [number_text(c) for c in classes_array.reshape(-1).tolist()]
        if y.dtype.kind == "f":
            missing = ~np.isfinite(y)
            fractional = np.isfinite(y) & (y != np.round(y))
            for row in np.flatnonzero(missing | fractional):
                bad.setdefault(int(row), (f" (label {y[row]})", "label is not an integer or a name"))
            y = np.where(missing | fractional, -1, y).astype(np.int64)
        if y.dtype.kind in "biu" and classes is not None:
            codes = y.astype(np.int64)
            unknown = (codes < 0) | (codes >= len(classes))
            for row in np.flatnonzero(unknown):
                bad.setdefault(int(row), (f" (label {codes[row]})", f"label outside the {len(classes)} classes"))
            if len(set(classes)) != len(classes):
                raise DataError(f"npz {path.name}: the 'classes' array names a class twice: {classes}")
            return np.where(unknown, 0, codes), classes
        if y.dtype.kind not in "biuUS":
            raise DataError(f"npz {path.name}: y must hold integer labels or class names, got dtype {y.dtype}")
        rows = [i for i in range(len(y)) if i not in bad]
        texts = [number_text(v) for v in y.tolist()]
        codes, classes, known = encode_labels([texts[i] for i in rows], classes)
        all_codes = np.zeros(len(y), dtype=np.int64)
        all_codes[rows] = np.where(known, codes, 0)
        for row, ok in zip(rows, known):
            if not ok:
                bad.setdefault(row, (f" (label {texts[row]!r})", f"label outside the class list {classes}"))
        return all_codes, classes

    def _split_names(self, split: np.ndarray | None, path: Path, bad: dict[int, tuple[str, str]]) -> np.ndarray | None:
        if split is None:
            return None
        names = np.array([number_text(s).strip().lower() for s in split.tolist()], dtype=object)
        for row in np.flatnonzero(~np.isin(names, _SPLITS)):
            bad.setdefault(int(row), (f" (split {names[row]!r})", f"split name not one of {list(_SPLITS)}"))
        return names

    @staticmethod
    def _features(columns: np.ndarray | None, dtype: np.dtype, width: int, path: Path) -> FeatureInfo:
        if columns is None:
            names = [f"x{i}" for i in range(width)]
        else:
            names = [number_text(c) for c in columns.reshape(-1).tolist()]
            if len(names) != width:
                raise DataError(f"npz {path.name}: 'columns' names {len(names)} columns, x has {width}")
        return FeatureInfo(names=names, dtypes={name: str(dtype) for name in names})


def _written_features(array: np.ndarray, width: int, path: Path) -> FeatureInfo:
    """The `FeatureInfo` that setforge's npz output stores as JSON (a run folder's val.npz, test.npz)."""
    try:
        features = FeatureInfo.from_dict(json.loads(str(array.item())))
    except (ValueError, KeyError, TypeError, DataError) as error:
        raise DataError(f"npz {path.name}: the 'features' array is not setforge's feature JSON: {error}") from None
    if len(features.names) != width:
        raise DataError(f"npz {path.name}: 'features' names {len(features.names)} columns, x has {width}")
    return features


class _Rows:
    """The rows of the ``x.npy`` member of an .npz, read a range at a time going forward (reopened
    to go back), so that no more than a batch of them is ever in memory."""

    def __init__(self, path: Path):
        self.path = path
        self._open()

    def _open(self) -> None:
        try:
            self.archive = zipfile.ZipFile(self.path)
            self.file = self.archive.open("x.npy")
            version = np.lib.format.read_magic(self.file)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            self.shape, fortran, self.dtype = header(self.file)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise DataError(f"npz {self.path.name}: cannot read x a batch at a time: {error}") from None
        if fortran or self.dtype.hasobject:
            raise DataError(f"npz {self.path.name}: x is saved in Fortran order or as objects, which does not stream; "
                            f"save np.ascontiguousarray(x) (strings: set source.stream: false)")
        self.start, self.row_bytes = self.file.tell(), self.dtype.itemsize * int(np.prod(self.shape[1:]))

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo..hi-1`` of x."""
        offset = self.start + lo * self.row_bytes
        if self.file.tell() > offset:
            self.archive.close()
            self._open()
        self.file.seek(offset)
        data = self.file.read((hi - lo) * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(hi - lo, *self.shape[1:])


def _read(path: Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of the file (but those named in `skip`), read without unpickling."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if not magic.startswith(b"PK") and magic != b"\x93NUMPY":
        raise DataError(f"npz {path.name}: cannot be read as a .npz file (it is not a zip archive); "
                        f"write it with np.savez(path, x=x, y=y)")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise DataError(f"npz {path.name}: holds a single array (.npy); save x and y together with "
                            f"np.savez(path, x=x, y=y)")
        with data:
            return {key: data[key] for key in data.files if key not in skip}
    except DataError:
        raise
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise DataError(f"npz {path.name}: holds an object array, which is not read (allow_pickle is off); "
                            f"save strings as a string array, e.g. np.array(names, dtype=str)") from None
        raise DataError(f"npz {path.name}: cannot be read: {error}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"npz {path.name}: cannot be read as a .npz file: {error}") from None
