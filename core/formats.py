"""How the data files of a run folder are written and read back, one entry per ``output.format``.

A `Format` has a name, ``write(folder, split, ds, shard_rows=...)`` that writes one split
(``train``, ``val`` or ``test``) of a run into `folder` and returns the files it wrote, and
``read(folder, split)`` that gives it back as a `Dataset`. The pipeline inverts unit-changing
preprocessors before it calls a writer, so data files hold data in its original units. `FORMATS`
holds the core's own (``npz``); plugins add more through ``setforge_register_formats`` (the
other built-in formats come from plugin ``builtin-output``), and `get_format`
finds a name in both.

``npz`` (the default): the training split as ``train-00000.npz``, ``train-00001.npz``, ... (shards
of ``shard_rows`` rows), the real parts as ``val.npz`` and ``test.npz``. Each file holds ``x``,
``y``, ``origin`` (as strings: ``real``, ``augmented``, ``resampled``, ``generated``), ``step``,
``parent``, ``classes``, and besides ``row_id``, ``modality``, ``features`` (JSON, tabular only)
and ``groups`` (when the data has groups). The files are written byte for byte the same for the
same data (fixed zip timestamps, fixed key order), so two runs can be compared by hashing them.

"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Mapping
import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import MODALITIES, Dataset, FeatureInfo, Origin
from .errors import DataError

__all__ = ["Format", "FORMATS", "get_format", "write_npz_file", "read_npz_file", "dataset_to_arrays",
           "dataset_from_arrays", "dataset_state", "dataset_from_state", "SPLITS"]

SPLITS = ("train", "val", "test")
_ORIGIN_LABELS = np.array([o.label for o in Origin])
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date zip can store: no wall clock in the files


@dataclass(frozen=True)
class Format:
    """One ``output.format``: a writer and a reader for the splits of a run folder, and a check
    (``check(ds)`` raises a `DataError` for data it cannot write) that the pipeline runs before
    any step, so that hours of work are not lost to a format that does not fit the data.

    ``stream(folder, split, like, shard_rows)`` (None: the format cannot stream) opens a writer of
    one split for a streaming run: ``add(ds)`` appends a batch of rows, ``close()`` finishes and
    returns the files written; `like` is a dataset of the split's kind (classes, modality, shape).

    Under torchrun every rank of a streaming run writes its own batches into the one folder
    (docs/scaling.md): ``stream`` is then called with ``shard=(rank, world_size)`` as well, and
    the writer must give its files names no other rank gives (the core's writers number their
    shards ``k * world_size + rank``), write no file that describes the whole split, and write
    nothing when it got no rows, except on rank 0. When every rank has closed its writer, rank 0
    calls ``join(folder, split, like, shards, rows)`` (None: nothing to join) with every rank's
    files (`shards`: names in `folder`, sorted) and the split's row count, to write what describes
    the whole split (a manifest); it returns the files it wrote.

    ``modalities``: the data it writes (default: every modality). ``setforge validate`` refuses
    ``output.format`` when the run file's source gives one modality outside them, and a run when
    the loaded data's modality is outside them, before ``check`` and any step."""

    name: str
    write: Callable[..., list[Path]]
    read: Callable[[Path, str], Dataset]
    check: Callable[[Dataset], None] = lambda ds: None
    stream: Callable[..., Any] | None = None
    join: Callable[..., list[Path]] | None = None
    modalities: tuple[str, ...] = MODALITIES

    def modality_problem(self, given: tuple[str, ...], source: str, formats: Mapping[str, "Format"]) -> str:
        """Why this format cannot write the data `source` gives when that is one modality (`given`)
        it does not write, naming the `formats` that write it; ``""`` when it can, or may."""
        if len(given) != 1 or given[0] in self.modalities:
            return ""
        fit = [repr(name) for name, fmt in formats.items() if given[0] in fmt.modalities]
        return (f"format {self.name!r} writes {' and '.join(self.modalities)} data, and source '{source}' gives "
                f"{given[0]} data; formats that write {given[0]} data: {', '.join(fit) or 'none installed'}")

    def check_data(self, ds: Dataset, source: str, formats: Mapping[str, "Format"]) -> None:
        """What the pipeline runs before any step: a `DataError` at ``output.format`` when `ds`'s
        modality is not one this format writes (naming the `formats` that write it), then ``check(ds)``."""
        if problem := self.modality_problem((ds.modality,), source, formats):
            raise DataError(f"output.format: {problem}")
        self.check(ds)


# --------------------------------------------------------------------------- arrays
def dataset_to_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    """The arrays of an npz file for `ds` (on the CPU), in the order they are written."""
    ds = ds.to("cpu")
    if ds.modality == "text":
        x = np.asarray(ds.x, dtype=np.str_) if len(ds) else np.zeros((0,), dtype="<U1")
    else:
        x = ds.x.detach().contiguous().numpy()
    arrays = {
        "x": x,
        "y": ds.y.numpy(),
        "origin": _ORIGIN_LABELS[ds.origin.numpy()] if len(ds) else np.zeros((0,), dtype="<U1"),
        "step": ds.step.numpy(),
        "parent": ds.parent.numpy(),
        "classes": np.asarray(ds.classes, dtype=np.str_),
        "row_id": ds.row_id.numpy(),
        "modality": np.asarray(ds.modality, dtype=np.str_),
    }
    if ds.features is not None:
        arrays["features"] = np.asarray(json.dumps(ds.features.to_dict(), sort_keys=True), dtype=np.str_)
    if ds.groups is not None:
        arrays["groups"] = ds.groups.numpy()
    return arrays


def dataset_from_arrays(arrays: Mapping[str, np.ndarray], where: str = "npz file") -> Dataset:
    """A `Dataset` from arrays written by `dataset_to_arrays` (or a plain npz with ``x``, ``y``)."""
    missing = [k for k in ("x", "y", "classes") if k not in arrays]
    if missing:
        raise DataError(f"{where}: missing arrays {missing}")
    classes = tuple(str(c) for c in np.asarray(arrays["classes"]).tolist())
    x_np = np.asarray(arrays["x"])
    if "modality" in arrays:
        modality = str(np.asarray(arrays["modality"]).item())
    else:
        modality = {4: "image", 2: "tabular", 3: "audio"}.get(x_np.ndim, "text")
    x: Any = [str(s) for s in x_np.tolist()] if modality == "text" else torch.from_numpy(np.ascontiguousarray(x_np))
    origin = None
    if "origin" in arrays:
        names = {o.label: int(o) for o in Origin}
        labels = np.asarray(arrays["origin"]).astype(str)
        unknown = sorted(set(labels.tolist()) - set(names))
        if unknown:
            raise DataError(f"{where}: unknown origin values {unknown}; expected {sorted(names)}")
        origin = torch.as_tensor(np.array([names[s] for s in labels.tolist()], dtype=np.int64))
    as_long = lambda key: torch.as_tensor(np.asarray(arrays[key], dtype=np.int64)) if key in arrays else None  # noqa: E731
    features = None
    if "features" in arrays:
        features = FeatureInfo.from_dict(json.loads(str(np.asarray(arrays["features"]).item())))
    try:
        return Dataset(x=x, y=as_long("y"), classes=classes, modality=modality, origin=origin, step=as_long("step"),
                       parent=as_long("parent"), row_id=as_long("row_id"), groups=as_long("groups"),
                       features=features)
    except DataError as error:
        raise DataError(f"{where}: {error}") from None


def write_npz_file(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` as an uncompressed ``.npz`` that is byte for byte the same for the same data.

    ``numpy.savez`` stamps each member with the wall clock; here every member gets a fixed date,
    and the file appears under its name only when complete.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
                info.external_attr = 0o644 << 16
                info.create_system = 3  # unix, whatever the platform, so the bytes do not depend on it
                with archive.open(info, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)
    except OSError as error:  # (a full disk mid-write names no file: this one, and no half file stays)
        tmp.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror or str(error), str(error.filename or tmp)) from error
    os.replace(tmp, path)
    return path


def read_npz_file(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # (EOFError: an empty file)
        raise DataError(f"cannot read {path}: {error}") from None


# ------------------------------------------------------------------------------- npz
def _write_npz(folder: Path, split: str, ds: Dataset, *, shard_rows: int = 50_000) -> list[Path]:
    folder = Path(folder)
    if split != "train":
        return [write_npz_file(folder / f"{split}.npz", dataset_to_arrays(ds))]
    shards = max(1, math.ceil(len(ds) / shard_rows))
    return [write_npz_file(folder / f"train-{i:05d}.npz", dataset_to_arrays(ds[i * shard_rows:(i + 1) * shard_rows]))
            for i in range(shards)]


class _NpzShards:
    """A streaming run's split as ``<split>-NNNNN.npz`` shards of ``shard_rows`` rows (one shard's rows in memory);
    under torchrun (`shard` ``(rank, world_size)``) a rank's shard ``k`` is number ``k * world_size + rank``."""

    def __init__(self, folder: Path, split: str, like: Dataset, shard_rows: int = 50_000,
                 shard: tuple[int, int] = (0, 1)):
        self.folder, self.split, self.like, self.shard_rows = Path(folder), split, like, shard_rows
        self.rank, self.world = shard
        self.held: list[Dataset] = []
        self.files: list[Path] = []

    def add(self, ds: Dataset) -> None:
        ds = ds.to("cpu")
        while len(ds):
            room = self.shard_rows - sum(map(len, self.held))
            self.held.append(ds[:room])
            ds = ds[room:]
            if room <= len(self.held[-1]):
                self._flush()

    def _flush(self) -> None:
        shard = Dataset.concat(self.held) if self.held else self.like[:0]
        number = len(self.files) * self.world + self.rank
        self.files.append(write_npz_file(self.folder / f"{self.split}-{number:05d}.npz", dataset_to_arrays(shard)))
        self.held = []

    def close(self) -> list[Path]:
        if self.held or not self.files and self.rank == 0:  # an empty split: one empty shard, rank 0's
            self._flush()
        return self.files


def _read_npz(folder: Path, split: str) -> Dataset:
    folder = Path(folder)
    # in number order, whatever the width: the writers pad to five digits, so shard 100000 has six
    numbered = [(int(p.stem[len(split) + 1:]), p) for p in folder.glob(f"{split}-*.npz")
                if re.fullmatch("[0-9]{5,}", p.stem[len(split) + 1:]) and p.is_file()]
    paths = [folder / f"{split}.npz"] if (folder / f"{split}.npz").is_file() else [p for _, p in sorted(numbered)]
    if not paths:
        expected = "train-00000.npz" if split == "train" else f"{split}.npz"
        raise DataError(f"{folder}: no {expected} (split {split!r} was not written in npz format)")
    return Dataset.concat([dataset_from_arrays(read_npz_file(p), where=str(p)) for p in paths])


#: The core's own formats; `Registry.formats` adds the plugins'.
FORMATS: dict[str, Format] = {"npz": Format("npz", _write_npz, _read_npz, stream=_NpzShards)}


def guarded(fmt: Format, guard: Callable[[str], Any]) -> Format:
    """`fmt` with every call, and its stream writers' ``add`` and ``close``, inside ``guard(action)``:
    the registry wraps a plugin's formats so that their failures name the plugin (exit 4), as a
    component's do, instead of ending the run with a traceback."""
    def wrap(function: Callable[..., Any] | None, action: str) -> Callable[..., Any] | None:
        if function is None:
            return None

        @functools.wraps(function)  # (the signature stays readable: a stream's shard= is looked for)
        def call(*args: Any, **kwargs: Any) -> Any:
            with guard(action):
                result = function(*args, **kwargs)
            return _GuardedWriter(result, guard) if action == "stream" else result
        return call
    return replace(fmt, **{f: wrap(getattr(fmt, f), f) for f in ("write", "read", "check", "stream", "join")})


class _GuardedWriter:
    """A plugin format's stream writer whose ``add`` and ``close`` run inside the registry's guard."""

    def __init__(self, writer: Any, guard: Callable[[str], Any]):
        self._writer, self._guard = writer, guard

    def add(self, ds: Dataset) -> Any:
        with self._guard("stream add"):
            return self._writer.add(ds)

    def close(self) -> Any:
        with self._guard("stream close"):
            return self._writer.close()


def get_format(name: str, registry: Any = None) -> Format:
    """The `Format` called `name`, the core's or a plugin's (`registry`, default: the installed
    plugins); an unknown name is a `DataError` listing the known ones."""
    if name in FORMATS:
        return FORMATS[name]
    if registry is None:
        from .registry import default_registry

        registry = default_registry()
    known = registry.formats()
    if name not in known:
        raise DataError(f"output format {name!r} has no writer here; known: {', '.join(sorted(known))} (a format from "
                        "a run file's plugins: pass a registry that loads them, setforge.Registry(local=[...]).load())")
    return known[name]


# ------------------------------------------------------------- in-run snapshots (resume)
def dataset_state(ds: Dataset) -> dict[str, Any]:
    """`ds` as plain tensors, lists and strings, for ``torch.save`` (loadable with weights_only)."""
    ds = ds.to("cpu")
    state: dict[str, Any] = {"x": list(ds.x) if ds.modality == "text" else ds.x, "classes": list(ds.classes),
                             "modality": ds.modality}
    for name in ("y", "origin", "step", "parent", "row_id", "groups"):
        state[name] = getattr(ds, name)
    state["features"] = None if ds.features is None else json.dumps(ds.features.to_dict(), sort_keys=True)
    return state


def dataset_from_state(state: Mapping[str, Any], device: Any = "cpu") -> Dataset:
    """The inverse of `dataset_state`."""
    features = state.get("features")
    ds = Dataset(x=state["x"], y=state["y"], classes=tuple(state["classes"]), modality=state["modality"],
                 origin=state["origin"], step=state["step"], parent=state["parent"], row_id=state["row_id"],
                 groups=state.get("groups"), features=None if features is None else FeatureInfo.from_dict(json.loads(features)))
    return ds.to(device)
