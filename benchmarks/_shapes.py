"""A procedural 32x32 RGB image set of five shapes (circle, square, triangle, cross, ring) with
random colours, positions and sizes, long-tailed training rows and balanced val/test rows,
deterministic from a seed (used by ``guard_shapes.py`` and ``budget_calibration.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "ring")
SIZE = 32


def long_tail_counts(largest: int = 400, smallest: int = 8, classes: int = len(SHAPES)) -> list[int]:
    """Rows per class falling geometrically from `largest` to `smallest` (400, 150, 57, 21, 8)."""
    ratio = smallest / largest
    return [int(round(largest * ratio ** (i / (classes - 1)))) for i in range(classes)]


def draw_shapes(labels: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """``(N, 3, size, size)`` float32 images in [0, 1], one shape of class ``labels[i]`` per image
    (radius 6 to 11 pixels at 32x32, scaled with `size`)."""
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = (rng.uniform(6.0, 11.0, n) * size / SIZE).astype(np.float32)[:, None, None]
    cx = (size / 2 + rng.uniform(-1, 1, n) * (size / 2 - 1 - r[:, 0, 0])).astype(np.float32)[:, None, None]
    cy = (size / 2 + rng.uniform(-1, 1, n) * (size / 2 - 1 - r[:, 0, 0])).astype(np.float32)[:, None, None]
    dx, dy = xx[None] - cx, yy[None] - cy
    dist = np.sqrt(dx ** 2 + dy ** 2)
    masks = np.stack([
        dist <= r,                                                               # circle
        np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * r,                            # square
        (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) * 0.6),           # triangle, apex up
        ((np.abs(dx) <= r / 3.5) & (np.abs(dy) <= r)) | ((np.abs(dy) <= r / 3.5) & (np.abs(dx) <= r)),  # cross
        (dist <= r) & (dist >= 0.55 * r),                                        # ring
    ], axis=1)[np.arange(n), labels]
    background = rng.uniform(0.0, 0.35, (n, 3, 1, 1)).astype(np.float32)
    colour = rng.uniform(0.55, 1.0, (n, 3, 1, 1)).astype(np.float32)
    images = np.where(masks[:, None], colour, background)
    images += rng.normal(0.0, 0.03, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def make_shapes(seed: int = 0, largest: int = 400, smallest: int = 8, val_per_class: int = 20,
                test_per_class: int = 100) -> dict[str, np.ndarray]:
    """Arrays for the ``npz`` source: ``x``, ``y``, ``classes``, ``split`` (train long-tailed,
    val and test balanced)."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, counts in (("train", long_tail_counts(largest, smallest)),
                         ("val", [val_per_class] * len(SHAPES)), ("test", [test_per_class] * len(SHAPES))):
        labels = np.repeat(np.arange(len(SHAPES)), counts)
        parts.append((name, labels, draw_shapes(labels, rng)))
    return {"x": np.concatenate([p[2] for p in parts]), "y": np.concatenate([p[1] for p in parts]),
            "classes": np.array(SHAPES), "split": np.concatenate([[p[0]] * len(p[1]) for p in parts])}


def write_shapes(path: Path, seed: int = 0) -> Path:
    """Write `make_shapes` to `path` (``.npz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **make_shapes(seed))
    return path
