"""The ``image-folder`` and ``csv`` output formats (plugin ``builtin-output``, through ``setforge_register_formats``).

``image-folder``: PNG files in ``<split>/<class>/NNNNNN.png`` (``NNNNNN`` the row's position in
the split); 1-channel images are grayscale, 3-channel RGB, 4-channel RGBA, 8 bits per channel
(values are rounded to multiples of 1/255, so images read from 8-bit files come back exactly;
16-bit grayscale comes back rounded to 8 bits).
Class names become folder names through `class_folders`: nothing that could leave the run folder
(``../x``, ``/abs``, separators), no odd characters, no two classes in one folder.

``csv``: ``<split>.csv`` in the original columns (``FeatureInfo.names``, or ``x0``, ``x1``, ... for
data without features, then the label column, named ``FeatureInfo.label`` or ``label``):
categorical codes as their category text, ``int64`` columns as rounded integers, other numbers in
float32's shortest form, labels as class names.
The pipeline inverts unit-changing preprocessors before writing, so values keep their units.

Both write ``<split>.manifest.json`` beside the data: the class list (and folders), the
features (null for data without them), and each row's ``origin``, ``step``, ``parent``,
``row_id`` and ``groups``, so that `setforge.load` gives back the same `Dataset`. Every file is
byte for byte the same for the same data.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from setforge.dataset import Dataset, FeatureInfo, Origin
from setforge.errors import DataError

__all__ = ["class_folders", "check_image_folder", "write_image_folder", "read_image_folder", "check_csv", "write_csv",
           "read_csv", "pixels_uint8", "MANIFEST"]

#: ``MANIFEST.format(split=...)``: the file beside a split's data that holds what the data files cannot.
MANIFEST = "{split}.manifest.json"
_ORIGIN_BY_LABEL = {o.label: int(o) for o in Origin}
_ORIGIN_LABELS = [o.label for o in Origin]
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"{port}{i}" for port in ("com", "lpt") for i in "0123456789¹²³")}
_MAX_FOLDER = 100
_UNLABELLED = "unlabelled"  # the image-folder source's default folder of unlabelled images
_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_PROVENANCE_KEYS = ("classes", "origin", "step", "parent", "row_id")
#: What each format's reader takes from ``<split>.manifest.json``, checked before it is read.
_MANIFEST_KEYS = {"image-folder": (*_PROVENANCE_KEYS, "channels", "size", "files", "y"),
                  "csv": (*_PROVENANCE_KEYS, "features", "label"),
                  "webdataset": ("classes", "modality", "shape", "payload", "rows", "shards")}


# ---------------------------------------------------------------------------- shared
def class_folders(classes: Sequence[str]) -> list[str]:
    """A safe, distinct folder name for each class name, in class order.

    Letters, digits, ``_``, ``-``, ``.`` and spaces are kept (Unicode letters too, with their
    combining marks, NFC); any other run of characters (``/``, ``\\``, ``:``, control characters)
    becomes ``_``; leading and trailing dots and spaces go, so ``..`` and ``../x`` cannot climb out
    of the split folder; empty results become ``_``; Windows device names (``con``, ``nul.txt``,
    ``com¹``...) get a ``_`` after the name, and so does ``unlabelled`` (so that the image-folder
    source reads that class back as a class); long names are cut to 100 characters (and 200 bytes
    of UTF-8). Names equal after this (ignoring case, for case-insensitive file systems) get
    ``-2``, ``-3``... in class order.
    """
    folders: list[str] = []
    taken: set[str] = set()
    for name in classes:
        text = unicodedata.normalize("NFC", str(name))
        # marks stay with the letters they belong to (Devanagari's vowel signs, Hebrew's points)
        text = re.sub("\0+", "_", "".join(c if c.isalnum() or c in "_.- " or unicodedata.category(c)[0] == "M"
                                          else "\0" for c in text))
        text = _cut(text.strip(". "), _MAX_FOLDER).strip(". ") or "_"
        stem, dot, rest = text.partition(".")
        if stem.lower() in _WINDOWS_RESERVED:  # reserved with any extension too: CON.txt is CON
            text = f"{stem}_{dot}{rest}"
        elif text == _UNLABELLED:  # the image-folder source would read it back as unlabelled images
            text += "_"
        candidate, n = text, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{_cut(text, _MAX_FOLDER - 8)}-{n}"
        taken.add(candidate.lower())
        folders.append(candidate)
    return folders


def _cut(text: str, characters: int) -> str:
    """At most `characters` characters and twice as many bytes of UTF-8 (file systems allow 255
    bytes a name; a long name in CJK or emoji would pass a character limit alone)."""
    text = text[:characters]
    while len(text.encode("utf-8")) > 2 * characters:
        text = text[:-1]
    return text


def _provenance(ds: Dataset) -> dict[str, Any]:
    ds = ds.to("cpu")
    out: dict[str, Any] = {"origin": [_ORIGIN_LABELS[o] for o in ds.origin.tolist()], "step": ds.step.tolist(),
                           "parent": ds.parent.tolist(), "row_id": ds.row_id.tolist()}
    if ds.groups is not None:
        out["groups"] = ds.groups.tolist()
    return out


def pixels_uint8(ds: Dataset) -> np.ndarray:
    """The images of `ds` (on the CPU) as ``(N, H, W, C)`` uint8, rounded to the nearest 1/255."""
    return (ds.x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _write_text(path: Path, text: str) -> Path:
    """Write `text` so that the file appears under its name only when complete."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def _write_manifest(folder: Path, split: str, manifest: dict[str, Any]) -> Path:
    text = json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    return _write_text(folder / MANIFEST.format(split=split), text)


def _read_manifest(folder: Path, split: str, fmt: str) -> dict[str, Any]:
    path = Path(folder) / MANIFEST.format(split=split)
    if not path.is_file():
        raise DataError(f"{folder}: no {path.name} (split {split!r} was not written in {fmt} format)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path} holds a JSON {type(manifest).__name__}, not a {fmt} manifest (an object)")
    if manifest.get("format") != fmt:
        raise DataError(f"{path}: written in {manifest.get('format')!r} format, not {fmt!r}")
    missing = [key for key in _MANIFEST_KEYS[fmt] if key not in manifest]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} (a {fmt} manifest holds {', '.join(_MANIFEST_KEYS[fmt])})")
    return manifest


def _dataset(x: Any, y: Sequence[int], manifest: dict[str, Any], modality: str, where: str,
             features: FeatureInfo | None = None) -> Dataset:
    unknown = sorted(set(manifest["origin"]) - set(_ORIGIN_BY_LABEL))
    if unknown:
        raise DataError(f"{where}: unknown origin values {unknown}; expected {sorted(_ORIGIN_BY_LABEL)}")
    long = lambda values: torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1))  # noqa: E731
    try:
        return Dataset(x=x, y=long(y), classes=tuple(manifest["classes"]), modality=modality,
                       origin=long([_ORIGIN_BY_LABEL[o] for o in manifest["origin"]]), step=long(manifest["step"]),
                       parent=long(manifest["parent"]), row_id=long(manifest["row_id"]),
                       groups=long(manifest["groups"]) if "groups" in manifest else None, features=features)
    except DataError as error:
        raise DataError(f"{where}: {error}") from None


# ---------------------------------------------------------------------- image-folder
def check_image_folder(ds: Dataset) -> None:
    """A `DataError` when `ds` cannot be written as an image folder (the pipeline asks before any step)."""
    if ds.modality != "image":
        raise DataError(f"output.format image-folder writes images, the data is {ds.modality}; "
                        f"use output.format npz{' or csv' if ds.modality == 'tabular' else ''}")
    channels = ds.shape[0]
    if channels not in _IMAGE_MODES:
        raise DataError(f"output.format image-folder writes 1, 3 or 4 channel images as PNG, the data has "
                        f"{channels}; use output.format npz")


def write_image_folder(folder: Path, split: str, ds: Dataset, **_: Any) -> list[Path]:
    """Write `ds` as ``<folder>/<split>/<class>/NNNNNN.png`` plus ``<split>.manifest.json``."""
    from PIL import Image

    folder = Path(folder)
    check_image_folder(ds)
    channels = ds.shape[0]
    ds = ds.to("cpu")
    names = class_folders(ds.classes)
    root = folder / split
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).mkdir(exist_ok=True)
    pixels = pixels_uint8(ds)
    width = max(6, len(str(max(len(ds) - 1, 0))))
    files: list[str] = []
    written: list[Path] = []
    for i, (image, label) in enumerate(zip(pixels, ds.y.tolist())):
        relative = f"{names[label]}/{i:0{width}d}.png"
        path = root / relative
        array = image[:, :, 0] if channels == 1 else image
        # Written in place: the run folder as a whole appears only when complete (<dir>.partial/ renamed).
        Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")  # L, RGB or RGBA by shape
        files.append(relative)
        written.append(path)
    manifest = {"format": "image-folder", "classes": list(ds.classes), "folders": names, "channels": channels,
                "size": list(ds.shape[1:]), "files": files, "y": ds.y.tolist(), **_provenance(ds)}
    written.append(_write_manifest(folder, split, manifest))
    return written


def read_image_folder(folder: Path, split: str) -> Dataset:
    """A split written by `write_image_folder`, in its row order, with its provenance."""
    from PIL import Image

    folder = Path(folder)
    manifest = _read_manifest(folder, split, "image-folder")
    channels, (height, width) = int(manifest["channels"]), manifest["size"]
    root = (folder / split).resolve()
    x = np.zeros((len(manifest["files"]), channels, height, width), dtype=np.float32)
    for i, relative in enumerate(manifest["files"]):
        path = (root / relative).resolve()
        if root not in path.parents:
            raise DataError(f"{folder}: {MANIFEST.format(split=split)} names {relative!r}, outside {split}/")
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert(_IMAGE_MODES[channels]), dtype=np.float32) / 255.0
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {path}: {error}") from None
        if array.shape[:2] != (height, width):
            raise DataError(f"{path}: {array.shape[1]}x{array.shape[0]} pixels, the manifest says {width}x{height}")
        x[i] = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return _dataset(torch.from_numpy(x), manifest["y"], manifest, "image", str(folder / split))


# ------------------------------------------------------------------------------- csv
def _float_text(value: np.float32) -> str:
    return str(np.float32(value))


def _csv_columns(ds: Dataset) -> tuple[FeatureInfo, str]:
    info = ds.features or FeatureInfo(names=[f"x{i}" for i in range(ds.shape[0])])
    return info, info.label or "label"


def check_csv(ds: Dataset) -> None:
    """A `DataError` when `ds` cannot be written as CSV (the pipeline asks before any step)."""
    if ds.modality != "tabular":
        raise DataError(f"output.format csv writes tabular data, the data is {ds.modality}; "
                        f"use output.format npz{' or image-folder' if ds.modality == 'image' else ''}")
    info, label = _csv_columns(ds)
    if label in info.names:
        raise DataError(f"output.format csv: a feature column is called {label!r}, the label column's name")


def write_csv(folder: Path, split: str, ds: Dataset, **_: Any) -> list[Path]:
    """Write `ds` as ``<folder>/<split>.csv`` in its original columns plus ``<split>.manifest.json``."""
    folder = Path(folder)
    check_csv(ds)
    ds = ds.to("cpu")
    info, label = _csv_columns(ds)
    x = ds.x.numpy()
    columns: list[list[str]] = []
    for j, name in enumerate(info.names):
        values = x[:, j]
        if name in info.categorical:
            # Codes are never interpolated; rounding and clipping only guard against a stray plugin.
            categories = np.asarray(info.categorical[name], dtype=object)
            codes = np.clip(np.rint(values), 0, len(categories) - 1).astype(np.int64)
            columns.append(categories[codes].tolist())
        elif info.dtypes.get(name, "float64").startswith(("int", "uint")):
            columns.append([str(v) for v in np.rint(values).astype(np.int64).tolist()])
        elif info.dtypes.get(name) == "bool":
            columns.append(["True" if v else "False" for v in (values >= 0.5).tolist()])
        else:
            columns.append([_float_text(v) for v in values])
    classes = list(ds.classes)
    columns.append([classes[c] for c in ds.y.tolist()])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*info.names, label])
    writer.writerows(zip(*columns))
    path = _write_text(folder / f"{split}.csv", buffer.getvalue())
    manifest = {"format": "csv", "classes": classes, "features": None if ds.features is None else info.to_dict(),
                "label": label, **_provenance(ds)}
    return [path, _write_manifest(folder, split, manifest)]


def read_csv(folder: Path, split: str) -> Dataset:
    """A split written by `write_csv`, in its row order, with its provenance."""
    folder = Path(folder)
    manifest = _read_manifest(folder, split, "csv")
    path = folder / f"{split}.csv"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, ValueError) as error:  # (ValueError: not UTF-8)
        raise DataError(f"cannot read {path}: {error}") from None
    header, rows = (rows or [[]])[0], rows[1:]
    # features null: the data had none, and its columns were written as x0, x1, ...
    features = None if manifest["features"] is None else FeatureInfo.from_dict(manifest["features"])
    info = features if features is not None else FeatureInfo(names=[f"x{i}" for i in range(max(len(header) - 1, 0))])
    expected = [*info.names, manifest["label"]]
    if header != expected:
        raise DataError(f"{path}: header {header}, the manifest says {expected}")
    codes = {name: {c: i for i, c in enumerate(cats)} for name, cats in info.categorical.items()}
    classes = {name: i for i, name in enumerate(manifest["classes"])}
    x = np.zeros((len(rows), len(info.names)), dtype=np.float32)
    y = np.zeros(len(rows), dtype=np.int64)
    for r, row in enumerate(rows):
        try:
            for j, name in enumerate(info.names):
                x[r, j] = codes[name][row[j]] if name in codes else (1.0 if row[j] == "True" else 0.0) \
                    if info.dtypes.get(name) == "bool" else float(row[j])
            y[r] = classes[row[-1]]
        except (KeyError, ValueError, IndexError) as error:
            raise DataError(f"{path}: line {r + 2}: cannot read {error}") from None
    return _dataset(torch.from_numpy(x), y, manifest, "tabular", str(path), features=features)
