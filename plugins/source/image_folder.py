"""``image-folder``: one folder per class (optionally under ``train/``, ``val/``, ``test/``)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from setforge.components import Source, SourceScan
from setforge.context import StepContext
from setforge.dataset import Dataset, Splits, sort_class_names
from setforge.errors import DataError

from ._files import existing_path

__all__ = ["ImageFolderSource", "PixelRangeError", "read_image"]

_SPLITS = ("train", "val", "test")
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_TRANSPARENT = ("RGBA", "LA", "PA", "RGBa", "La")


def _files_below(folder: Path) -> list[Path]:
    """Every file below `folder`, symlinked sub-folders followed (`Path.rglob` skips them), each
    real folder once, so a link back up cannot loop. A broken link is listed too, so that it is
    reported as an unreadable file rather than left out without a word."""
    def unlisted(error: OSError) -> None:  # os.walk's default skips such a folder's files without a word
        raise DataError(f"image-folder: cannot list the folder {error.filename} ({error.strerror}); "
                        f"make it readable, or move it out of {folder}")

    found, seen = [], set()
    for here, folders, names in os.walk(folder, onerror=unlisted, followlinks=True):
        stat = os.stat(here)
        if (stat.st_dev, stat.st_ino) in seen:
            folders[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        found.extend(path for path in (Path(here) / name for name in names)
                     if path.is_file() or (path.is_symlink() and not path.exists()))
    return found


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


class PixelRangeError(ValueError):
    """A 32-bit integer or floating-point image whose values lie outside what they can mean (0..65535,
    or [0, 1]): refused as an invalid row, not clipped to white without a word."""


def read_image(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image file as float32 ``(channels, H, W)`` in [0, 1], at ``size = (H, W)``.

    Grayscale, palette, RGB, CMYK and 16-bit files are converted; transparent pixels (RGBA, LA,
    palette, grey or RGB with a transparency key) are composited on black, so a fully transparent
    pixel is black and a half transparent one is half as bright. Other sizes are resized with
    Pillow's bilinear filter, antialiased when shrinking; the aspect ratio is not kept. Raises
    whatever Pillow raises for an unreadable file, and `PixelRangeError` for a 32-bit integer image
    outside 0..65535 or a floating-point one outside [0, 1].
    """
    from PIL import Image

    height, width = size
    with Image.open(path) as image:
        image.load()
        if image.mode in _HIGH_DEPTH:
            values = np.asarray(image, dtype=np.float32)
            top = 1.0 if image.mode == "F" else 65535.0
            if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > top:
                raise PixelRangeError(f"mode {image.mode} pixels span {values.min():g}..{values.max():g}, outside "
                                      f"0..{top:g}; save 8- or 16-bit images, or floating-point values in [0, 1]")
            key = image.info.get("transparency")
            if isinstance(key, int) and not isinstance(key, bool):  # a 16-bit PNG's transparent grey level:
                values[np.asarray(image) == key] = 0.0  # composited on black, as for the 8-bit modes
            if image.mode.startswith("I"):  # 16-bit: Pillow scales a PGM of any maxval > 255 to 0..65535
                values = values / 65535.0  # (by the depth, not the content: a dark image stays dark)
            gray = Image.fromarray(np.clip(values, 0.0, 1.0).astype(np.float32))  # mode F
            if gray.size != (width, height):
                gray = gray.resize((width, height), Image.Resampling.BILINEAR)
            plane = np.clip(np.asarray(gray, dtype=np.float32), 0.0, 1.0)
            return np.repeat(plane[None], channels, axis=0)
        if image.mode in _TRANSPARENT or "transparency" in image.info:
            rgba = image.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            image = Image.alpha_composite(black, rgba)
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


class ImageFolderSource(Source):
    """Images in one folder per class (root/<class>/<file>), optionally under train/ val/ test/.

    The class folders' names are the class names, sorted (numbers by value). When the top folder
    holds a ``train/`` folder, the layout is ``root/train/<class>/...`` (and ``val/``, ``test/``
    when present): the folder's own split, used instead of the run's, and other top folders are
    ignored. Files directly in the top (or split) folder are ignored (a README, a labels file);
    files in sub-folders of a class folder belong to that class; hidden files and folders (a
    leading dot) are skipped.

    Every image becomes ``channels`` channels (1: luminance, 3: RGB; a grayscale image is
    repeated) at ``size`` (the most common size when unset, ties going to the larger), resized
    with an antialiased bilinear filter (aspect ratio not kept). Transparency is composited on
    black. 16-bit images keep their precision. EXIF orientation is not applied (like
    torchvision's ImageFolder). A file that Pillow cannot read (a corrupt PNG, a ``.txt``, a broken
    link), or a 32-bit or floating-point image outside its range, is an invalid row naming the
    file: the run stops, or drops and counts it with ``source.on_invalid: drop``.

    A folder named ``unlabelled`` (param ``unlabelled``; ``null`` makes it an ordinary class), at
    the top or inside ``train/``, ``val/`` or ``test/``, holds unlabelled images, not a class:
    they are held apart from train, val and test (`Splits.unlabelled`, for steps such as
    ``pseudo-label``), read and resized like the others.
    """

    name = "image-folder"
    modalities = ("image",)
    streams = True

    class Params(Source.Params):
        """Where the folders are and the channel count and size every image is brought to."""

        path: Path = Field(Path("images"), description="the top folder (relative to the run file's folder)")
        channels: Literal[1, 3] = Field(3, description="1 (grayscale) or 3 (RGB)")
        size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | Annotated[int, Field(ge=1)] | None = \
            Field(None, description="[height, width] (or one number for a square) every image is resized to; "
                                    "unset: the most common size")
        unlabelled: str | None = Field("unlabelled", min_length=1,
                                       description="the folder of unlabelled images (held apart from train/val/test "
                                                   "for pseudo-label), not a class; null: an ordinary class folder")

    @classmethod
    def make_testing_params(cls, folder: Path) -> dict[str, object]:
        """A small fixture for the conformance kit: 3 classes of 4 RGB and grayscale PNGs, 8x8."""
        from PIL import Image

        rng = np.random.default_rng(0)
        root = Path(folder) / "images"
        for c, name in enumerate(("a", "b", "c")):
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                shape = (8, 8, 3) if i % 2 else (8, 8)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i}.png")
        return {"path": str(root)}

    def _listing(self) -> tuple[Path, dict[str, dict[str, Path]], list[str], list[tuple[str, int, Path]],
                                list[tuple[int, int] | None], tuple[int, int]]:
        """The folder's layout, classes and files ``(split, label, file)``, each file's header size
        (None: unreadable, already reported) and the size every image is brought to."""
        root = existing_path(self.params.path, "image-folder", want_dir=True)
        layout = self._layout(root)
        pools = self._unlabelled_folders(root, layout)
        classes = sort_class_names(name for folders in layout.values() for name in folders)
        if not classes:
            beside = f" (besides the unlabelled folder {self.params.unlabelled!r})" if pools else ""
            raise DataError(f"image-folder {root}: no class folders{beside}; expected {root.name}/<class>/<image> "
                            f"or {root.name}/train/<class>/<image>")
        files: list[tuple[str, int, Path]] = []  # (split, label, file); split "unlabelled" for the pool
        folders_in_order = [(split, classes.index(name), folder) for split, folders in layout.items()
                            for name, folder in sorted(folders.items(), key=lambda item: classes.index(item[0]))]
        for split, label, folder in folders_in_order + [("unlabelled", 0, folder) for folder in pools]:
            found = sorted((p for p in _files_below(folder) if _visible(p, folder)),
                           key=lambda p: p.relative_to(folder).as_posix())
            files.extend((split, label, p) for p in found)
        if not any(split != "unlabelled" for split, _, _ in files):
            raise DataError(f"image-folder {root}: the class folders {classes} hold no files")

        # Pass 1: headers only, for the sizes (cheap: Pillow reads pixels lazily).
        from PIL import Image

        sizes: list[tuple[int, int] | None] = []
        for _, _, file in files:
            try:
                with Image.open(file) as image:
                    width, height = image.size
                sizes.append((height, width))
            except Exception as error:  # Pillow raises many error types for bad files
                sizes.append(None)
                self._invalid(self._where(root, file, error), "unreadable or not an image")
        return root, layout, classes, files, sizes, self._size(sizes, root)

    def _decode(self, root: Path, paths: list[Path | None], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Pass 2: `paths` decoded, converted and resized into one array, and which of them could be
        (a None path: a file whose header was unreadable)."""
        x = np.zeros((len(paths), self.params.channels, *size), dtype=np.float32)
        ok = np.array([file is not None for file in paths], dtype=bool)
        for i, file in enumerate(paths):
            if file is None:
                continue
            try:
                x[i] = read_image(file, self.params.channels, size)
            except PixelRangeError as error:
                ok[i] = False
                self._invalid(self._where(root, file, error), "pixel values out of range")
            except Exception as error:  # a header can be fine and the pixels truncated or corrupt
                ok[i] = False
                self._invalid(self._where(root, file, error), "unreadable or not an image")
        return x, ok

    def _scan(self, ctx: StepContext) -> SourceScan:
        """The files' labels and split from the listing and headers; pixels are read by batch."""
        root, layout, classes, files, sizes, size = listed = self._listing()
        self._listed = (listed, dict(self.dropped))  # for a load() that follows (stream: auto on small data)
        labels = np.array([-1 if split == "unlabelled" else label for split, label, _ in files], dtype=np.int64)
        labels[[s is None for s in sizes]] = -2

        def read(rows: np.ndarray) -> Dataset:
            rows = np.asarray(rows, dtype=np.int64)
            x, ok = self._decode(root, [files[i][2] for i in rows], size)
            return Dataset(x=torch.from_numpy(x[ok]), y=torch.from_numpy(labels[rows[ok]]), classes=classes,
                           modality="image", row_id=torch.from_numpy(rows[ok]))

        split = None if list(layout) == ["all"] else np.array([part for part, _, _ in files])
        return SourceScan(labels, tuple(classes), "image", (self.params.channels, *size), read, split)

    def _load(self, ctx: StepContext) -> Dataset | Splits:
        listed, dropped = self.__dict__.pop("_listed", (None, {}))
        self.dropped.update(dropped)
        root, layout, classes, files, sizes, size = listed or self._listing()
        x, keep = self._decode(root, [None if s is None else file for (_, _, file), s in zip(files, sizes)], size)
        if not keep.any():
            raise DataError(f"image-folder {root}: no readable images among {len(files)} files "
                            f"(dropped: {self.dropped})")
        labels = np.array([label for _, label, _ in files], dtype=np.int64)
        split_of = np.array([split for split, _, _ in files])

        def dataset(rows: np.ndarray) -> Dataset:
            return Dataset(x=torch.from_numpy(x[rows]), y=torch.from_numpy(labels[rows]), classes=classes,
                           modality="image")

        pool_rows = np.flatnonzero(keep & (split_of == "unlabelled"))
        pool = dataset(pool_rows) if len(pool_rows) else None
        keep &= split_of != "unlabelled"
        if list(layout) == ["all"]:
            if not keep.any():
                raise DataError(f"image-folder {root}: no readable images in the class folders {classes} "
                                f"(dropped: {self.dropped})")
            rows = np.flatnonzero(keep)
            return dataset(rows) if pool is None else Splits(train=dataset(rows), unlabelled=pool)
        parts = {split: np.flatnonzero(keep & (split_of == split)) for split in _SPLITS}
        if not len(parts["train"]):
            raise DataError(f"image-folder {root}: train/ holds no readable images")
        return Splits(train=dataset(parts["train"]),
                      val=dataset(parts["val"]) if len(parts["val"]) else None,
                      test=dataset(parts["test"]) if len(parts["test"]) else None, unlabelled=pool)

    @staticmethod
    def _where(root: Path, file: Path, error: Exception) -> str:
        detail = str(error).replace(str(file), "").strip(" '\":") or type(error).__name__
        return f"image-folder {root.name}: {file.relative_to(root).as_posix()} ({detail})"

    @staticmethod
    def _layout(root: Path) -> dict[str, dict[str, Path]]:
        """``{split: {class: folder}}``; the split is ``all`` without train/ val/ test/ folders."""
        def class_folders(folder: Path) -> dict[str, Path]:
            return {d.name: d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}

        top = class_folders(root)
        # in any case (Train/, TEST/): a camera roll or a Windows copy names them so, and they are
        # never meant as classes beside each other
        splits = {name.lower(): folder for name, folder in top.items() if name.lower() in _SPLITS}  # (train/ wins over Train/)
        if "train" not in splits:
            return {"all": top}
        return {split: class_folders(splits[split]) for split in _SPLITS if split in splits}

    def _unlabelled_folders(self, root: Path, layout: dict[str, dict[str, Path]]) -> list[Path]:
        """Take the unlabelled folders out of `layout` (at the top, or in train/ val/ test/); return them."""
        name = self.params.unlabelled
        if name is None:
            return []
        if name in _SPLITS:
            raise DataError(f"image-folder {root}: source.params.unlabelled names {name!r}, a split folder; "
                            f"give another folder name")
        pools = [folders.pop(name) for folders in layout.values() if name in folders]
        top = root / name
        if "all" not in layout and top.is_dir():  # beside train/ val/ test/
            pools.insert(0, top)
        return pools

    def _size(self, sizes: list[tuple[int, int] | None], root: Path) -> tuple[int, int]:
        size = self.params.size
        if isinstance(size, int):
            return size, size
        if size is not None:
            return tuple(size)
        counts = Counter(s for s in sizes if s is not None)
        if not counts:
            raise DataError(f"image-folder {root}: no readable images (dropped: {self.dropped})")
        return max(counts, key=lambda s: (counts[s], s[0] * s[1], s))
