"""The ``webdataset`` output format: tar shards that the `webdataset` package reads as they are
(plugin ``builtin-output``, through ``setforge_register_formats``).

Each split is written as ``<split>-000000.tar``, ``<split>-000001.tar``, ... of at most
``output.shard_rows`` rows each (at least one shard, empty for an empty split). One sample a row,
its members next to each other in this order, under the key ``<split>-NNNNNN`` (the row's
position in the split, six digits or more; webdataset's ``__key__``):

- ``KEY.cls``: the class index as decimal text (``3``);
- ``KEY.json``: ``{"class": name, "origin": "real" | "augmented" | ..., "step", "parent",
  "row_id"}`` and ``"group"`` when the data has groups (UTF-8, sorted keys);
- the row's data: ``KEY.png`` for images with 1, 3 or 4 channels (8-bit grayscale, RGB or RGBA,
  values rounded to multiples of 1/255 as in ``image-folder``), ``KEY.npy`` (a float32 array in
  NumPy's ``.npy`` format, no pickles) for tabular rows ``(D,)``, audio ``(C, T)`` and images
  with other channel counts ``(C, H, W)``, ``KEY.txt`` (UTF-8) for text.

``<split>.manifest.json`` beside the shards holds what a sample cannot: the class list (classes
with no rows too), the modality, the row shape, whether rows have groups, the features of tabular data and the shard
list.
Members are written in row order with a fixed mtime (0), owner (0/0, no names) and mode (0644) in
ustar format, so the shards are byte for byte the same for the same data.

Under torchrun a streaming run's ranks write one split together (``shard=(rank, world_size)``,
docs/scaling.md): a rank's shard ``k`` is shard number ``k * world_size + rank``, and a row's key
is its shard's number times ``shard_rows`` plus its place in the shard (in one process, its
position in the split; across ranks, unique, with gaps after each rank's last shard). Rank 0
writes the manifest (`join_webdataset`) once every rank has closed its writer.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from setforge.dataset import Dataset, FeatureInfo, Origin
from setforge.errors import DataError

from .files import _IMAGE_MODES, _dataset, _read_manifest, _write_manifest, pixels_uint8

__all__ = ["write_webdataset", "read_webdataset", "payload_extension", "WebDatasetWriter", "join_webdataset"]

_ORIGIN_LABELS = [o.label for o in Origin]
_SHARD = re.compile(r"^(train|val|test)-\d{6,}\.tar$")


def payload_extension(ds: Dataset) -> str:
    """The member extension that holds a row of `ds`: ``png``, ``npy`` or ``txt``."""
    if ds.modality == "text":
        return "txt"
    if ds.modality == "image" and ds.shape[0] in _IMAGE_MODES:
        return "png"
    return "npy"


def _payloads(ds: Dataset, extension: str) -> list[bytes]:
    """The data member of every row of `ds` (on the CPU)."""
    if extension == "txt":
        return [str(text).encode("utf-8") for text in ds.x]
    if extension == "npy":
        out = []
        for row in ds.x.detach().contiguous().numpy():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(row, dtype=np.float32), allow_pickle=False)
            out.append(buffer.getvalue())
        return out
    from PIL import Image

    out = []
    for image in pixels_uint8(ds):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image[:, :, 0] if image.shape[2] == 1 else image)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


class WebDatasetWriter:
    """Writes one split as shards, a batch of rows at a time (``add``), so that a streaming run never
    holds more than a batch; ``close`` writes the manifest and returns every file written.
    `like` is any dataset of the split's kind (an empty one will do): its classes, modality, row
    shape, features and whether rows have groups go to the manifest. With `shard` ``(rank,
    world_size)`` (one of several ranks) it writes its own shards only: no manifest (rank 0 joins
    them, `join_webdataset`), and no shard at all when it got no rows, except on rank 0."""

    def __init__(self, folder: Path, split: str, like: Dataset, shard_rows: int = 50_000, width: int = 6,
                 shard: tuple[int, int] | None = None):
        self.folder, self.split, self.like, self.shard_rows, self.width = Path(folder), split, like, shard_rows, width
        self.shard, (self.rank, self.world) = shard, shard or (0, 1)
        self.extension = payload_extension(like)
        self.rows, self.written, self.tar, self.in_shard = 0, [], None, 0

    def add(self, ds: Dataset) -> None:
        """Append the rows of `ds` to the split, starting a new shard every ``shard_rows`` rows."""
        ds, done = ds.to("cpu"), 0
        while done < len(ds):
            if self.tar is None:
                self._open()
            piece = ds[done:done + self.shard_rows - self.in_shard]
            grouped = self.like.groups is not None
            classes = list(piece.classes)
            columns = {name: getattr(piece, name).tolist() for name in ("y", "origin", "step", "parent", "row_id")}
            # (a batch of generated rows in a grouped split has no groups: its rows belong to no group, -1)
            groups = piece.groups.tolist() if piece.groups is not None else [-1] * len(piece) if grouped else None
            for i, payload in enumerate(_payloads(piece, self.extension)):
                key, label = f"{self.split}-{self.first + self.in_shard + i:0{self.width}d}", columns["y"][i]
                meta = {"class": classes[label], "origin": _ORIGIN_LABELS[columns["origin"][i]],
                        "step": columns["step"][i], "parent": columns["parent"][i], "row_id": columns["row_id"][i]}
                if groups is not None:
                    meta["group"] = groups[i]
                _add(self.tar, f"{key}.cls", str(label).encode("ascii"))
                _add(self.tar, f"{key}.json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"))
                _add(self.tar, f"{key}.{self.extension}", payload)
            done, self.rows, self.in_shard = done + len(piece), self.rows + len(piece), self.in_shard + len(piece)
            if self.in_shard == self.shard_rows:
                self._finish_shard()

    def _open(self) -> None:
        number = len(self.written) * self.world + self.rank
        self.path, self.first = self.folder / f"{self.split}-{number:06d}.tar", number * self.shard_rows
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.tar, self.in_shard = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT), 0

    def _finish_shard(self) -> None:
        self.tar.close()
        os.replace(self.tmp, self.path)
        self.written.append(self.path)
        self.tar = None

    def close(self) -> list[Path]:
        """Finish the last shard (an empty one for an empty split) and write the manifest."""
        if self.tar is not None or not self.written and self.rank == 0:
            if self.tar is None:
                self._open()
            self._finish_shard()
        if self.shard is not None:
            return list(self.written)
        return [*self.written, *join_webdataset(self.folder, self.split, self.like, self.written, self.rows)]


def join_webdataset(folder: Path, split: str, like: Dataset, shards: list[Any], rows: int) -> list[Path]:
    """Write the manifest of a split of `rows` rows in `shards` (paths or names in `folder`, in
    reading order); `like` as in `WebDatasetWriter`. Returns the manifest's path."""
    manifest = {"format": "webdataset", "classes": list(like.classes), "modality": like.modality,
                "shape": list(like.shape), "payload": payload_extension(like), "rows": rows,
                "groups": like.groups is not None, "shards": [Path(p).name for p in shards],
                "features": like.features.to_dict() if like.features is not None else None}
    return [_write_manifest(Path(folder), split, manifest)]


def write_webdataset(folder: Path, split: str, ds: Dataset, *, shard_rows: int = 50_000, **_: Any) -> list[Path]:
    """Write `ds` as ``<folder>/<split>-NNNNNN.tar`` shards plus ``<split>.manifest.json``."""
    writer = WebDatasetWriter(folder, split, ds, shard_rows, width=max(6, len(str(max(len(ds) - 1, 0)))))
    writer.add(ds)
    return writer.close()


def _samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """The samples of one shard in order: (key, {extension: bytes}), members grouped by key as webdataset does."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, dot, extension = member.name.partition(".")
                if not member.isfile() or not dot or "/" in member.name:
                    raise DataError(f"{path}: member {member.name!r} is not a KEY.EXT file")
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                if extension in samples[-1][1]:
                    raise DataError(f"{path}: sample {key!r} has two {extension!r} members")
                samples[-1][1][extension] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    return samples


def _decode(data: bytes, extension: str, shape: tuple[int, ...], where: str) -> Any:
    try:
        if extension == "txt":
            return data.decode("utf-8")
        if extension == "npy":
            array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
            if array.dtype != np.float32:
                raise ValueError(f"dtype {array.dtype}, expected float32")
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                array = np.asarray(image.convert(_IMAGE_MODES[shape[0]]), dtype=np.float32) / 255.0
            array = array[None] if shape[0] == 1 else array.transpose(2, 0, 1)
    except (OSError, ValueError) as error:
        raise DataError(f"{where}: cannot decode: {error}") from None
    if tuple(array.shape) != shape:
        raise DataError(f"{where}: shape {tuple(array.shape)}, the manifest says {shape}")
    return array


def read_webdataset(folder: Path, split: str) -> Dataset:
    """A split written by `write_webdataset`, in its row order, with its provenance."""
    folder = Path(folder)
    manifest = _read_manifest(folder, split, "webdataset")
    extension, shape, classes = manifest["payload"], tuple(manifest["shape"]), manifest["classes"]
    rows: list[Any] = []
    columns: dict[str, list[Any]] = {"y": [], "origin": [], "step": [], "parent": [], "row_id": [], "groups": []}
    for name in manifest["shards"]:
        if not _SHARD.match(name) or not name.startswith(f"{split}-"):
            raise DataError(f"{folder}: {split}.manifest.json names {name!r}, not a {split}-NNNNNN.tar shard")
        for key, sample in _samples(folder / name):
            where = f"{folder / name}: sample {key!r}"
            if sorted(sample) != sorted(("cls", "json", extension)):
                raise DataError(f"{where}: members {sorted(sample)}, expected cls, json and {extension}")
            try:
                label, meta = int(sample["cls"]), json.loads(sample["json"].decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                raise DataError(f"{where}: {error}") from None
            missing = [k for k in ("class", "origin", "step", "parent", "row_id") if k not in meta]
            if missing or not all(isinstance(meta[k], int) for k in ("step", "parent", "row_id")):
                raise DataError(f"{where}: the json needs class, origin and integer step, parent, row_id; "
                                f"got {sorted(meta)}")
            if not 0 <= label < len(classes) or meta.get("class") != classes[label]:
                raise DataError(f"{where}: cls {label} and class {meta.get('class')!r} do not match the classes {classes}")
            rows.append(_decode(sample[extension], extension, shape, where))
            columns["y"].append(label)
            for column in ("origin", "step", "parent", "row_id"):
                columns[column].append(meta[column])
            if "group" in meta:
                columns["groups"].append(meta["group"])
    if len(rows) != manifest["rows"]:
        raise DataError(f"{folder}: the {split} shards hold {len(rows)} rows, the manifest says {manifest['rows']}")
    groups = columns.pop("groups")
    if manifest.get("groups") and len(groups) != len(rows) or groups and not manifest.get("groups"):
        raise DataError(f"{folder}: {len(groups)} of the {len(rows)} {split} samples have a group, "
                        f"the manifest says {'all' if manifest.get('groups') else 'none'}")
    if manifest.get("groups"):
        columns["groups"] = groups
    x: Any = rows if extension == "txt" else torch.from_numpy(
        np.stack(rows) if rows else np.zeros((0, *shape), dtype=np.float32))
    features = FeatureInfo.from_dict(manifest["features"]) if manifest.get("features") else None
    return _dataset(x, columns["y"], {"classes": classes, **columns}, manifest["modality"], f"{folder}/{split}-*.tar",
                    features=features)
