"""Helpers shared by the file sources (npz, csv, image-folder): paths, labels, groups."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from setforge.dataset import sort_class_names
from setforge.errors import ConfigError, DataError

__all__ = ["existing_path", "encode_labels", "encode_groups", "number_text"]


def existing_path(path: Path, kind: str, want_dir: bool = False) -> Path:
    """`path` itself when it exists (a folder when `want_dir`), else a `ConfigError` at its place.

    The run-file layer resolves relative paths against the run file's folder; a component built
    directly (tests, notebooks) resolves them against the current folder.
    """
    path = Path(path).expanduser()
    place = "source.params.path"
    if not path.exists():
        raise ConfigError(problems=[(place, f"{kind}: {str(path)!r} does not exist")])
    if want_dir and not path.is_dir():
        raise ConfigError(problems=[(place, f"{kind}: {str(path)!r} is a file; give the folder that holds "
                                            f"the class folders")])
    if not want_dir and path.is_dir():
        raise ConfigError(problems=[(place, f"{kind}: {str(path)!r} is a folder, not a file")])
    return path


def number_text(value: object) -> str:
    """A label or category value as the text that names it: integral numbers without ``.0``."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"the bytes {bytes(value[:40])!r} are not UTF-8 text ({error.reason} at byte "
                            f"{error.start}); store text as str, or as bytes in UTF-8") from None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


def encode_labels(values: Sequence[str], classes: Sequence[str] | None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Label texts -> ``(codes, classes, known)``.

    With `classes` given, a label outside it is unknown (``known`` False, code -1); without,
    the classes are the distinct labels, sorted (`sort_class_names`).
    """
    if classes is None:
        classes = sort_class_names(values)
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise DataError(f"the class list names a class twice: {classes}")
    index = {name: i for i, name in enumerate(classes)}
    codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))
    return codes, classes, codes >= 0


def encode_groups(values: Sequence[object]) -> np.ndarray:
    """Group ids (numbers or names) -> int64 codes, one per distinct group in sorted order."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    texts = [number_text(v) for v in array.tolist()]
    order = {name: i for i, name in enumerate(sort_class_names(texts))}
    return np.fromiter((order[t] for t in texts), dtype=np.int64, count=len(texts))
