"""The figures of ``report.html`` as PNG bytes: charts drawn with matplotlib and image grids laid
out as `torchvision.utils.make_grid` does (without importing torchvision, which costs 1.5 s).

matplotlib is imported here only, when a report is written (never by ``setforge --help``), and
through its object-oriented API with the Agg canvas: no pyplot state, no backend switch that could
disturb a notebook that imported setforge.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["class_distribution", "ablation_chart", "line_chart", "image_grid", "grid_of", "composite_alpha",
           "ORIGIN_COLOURS", "ALPHA_BACKGROUND"]

# One colour per origin, the same in every chart and legend of a report.
ORIGIN_COLOURS = {"real": "#4c72b0", "augmented": "#55a868", "resampled": "#dd8452",
                  "generated": "#c44e52", "pseudo-labelled": "#8172b3"}
_OTHER_COLOUR = "#937860"
#: The grey that image grids composite transparent pixels on: neutral, and unlike the white
#: padding between cells, so a transparent region reads as such.
ALPHA_BACKGROUND = 0.5


def _label(text: Any) -> str:
    """A string from data shown literally: matplotlib would read ``$...$`` as mathtext."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    # metadata=None-like: no Software/creation-time chunk, so equal figures are equal bytes
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def class_distribution(classes: Sequence[str], before: Mapping[str, int],
                       after: Mapping[str, Mapping[str, int]]) -> bytes:
    """Rows per class before (the raw training split) and after the pipeline, the latter stacked
    by origin; one pair of bars per class."""
    import numpy as np

    origins = [o for o in ORIGIN_COLOURS if any(after.get(c, {}).get(o, 0) for c in classes)]
    origins += sorted({o for c in classes for o, n in after.get(c, {}).items() if n and o not in origins})
    fig = _figure(max(6.5, 0.55 * len(classes) + 4.0), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    ax.bar(x - 0.2, [before.get(c, 0) for c in classes], width=0.38, color="#bbbbbb", label="raw train")
    bottom = np.zeros(len(classes))
    for origin in origins:
        heights = np.array([after.get(c, {}).get(origin, 0) for c in classes], dtype=float)
        ax.bar(x + 0.2, heights, width=0.38, bottom=bottom, label=f"optimised: {origin}",
               color=ORIGIN_COLOURS.get(origin, _OTHER_COLOUR))
        bottom += heights
    ax.set_xticks(x, [_label(c) for c in classes])
    _slant_if_crowded(fig, ax, always=len(classes) > 8)
    ax.set_ylabel("training rows")
    ax.set_title("rows per class: raw (left) and optimised by origin (right)")
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def _slant_if_crowded(fig: Any, ax: Any, always: bool = False) -> None:
    """Slant the x tick labels (class names) when side by side they would overlap (long names),
    and make the figure taller by what the slanted labels take, so the bars keep their height."""
    fig.canvas.draw()  # (the labels' extents need a renderer)
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    if not boxes or not (always or any(a.x1 + 2 > b.x0 for a, b in zip(boxes, boxes[1:]))):
        return
    for label in ax.get_xticklabels():
        label.set_rotation(45)
        label.set_horizontalalignment("right")
    longest = max(b.width for b in boxes) / fig.dpi  # inches along the slant
    fig.set_figheight(fig.get_figheight() + max(0.0, 0.71 * longest - 0.4))


def ablation_chart(labels: Sequence[str], means: Sequence[float], stds: Sequence[float], score: str) -> bytes:
    """The downstream score after each cumulative pipeline prefix (raw, +step 0, ...), mean ± std."""
    fig = _figure(max(4.5, 0.9 * len(labels) + 2), 3.2)
    ax = fig.add_subplot()
    x = range(len(labels))
    ax.errorbar(list(x), list(means), yerr=list(stds), marker="o", capsize=4, color="#4c72b0")
    ax.set_xticks(list(x), [_label(v) for v in labels], rotation=20, ha="right")
    ax.set_ylabel(score.replace("_", " "))
    # two short lines: one long line was cut off at both sides of a chart of two or three points
    ax.set_title("ablation: downstream score on the real test split\nafter each step (mean ± std over seeds)",
                 fontsize="medium")
    ax.grid(alpha=0.3)
    return _png(fig)


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str,
               ylabel: str, mark: tuple[float, str] | None = None) -> bytes:
    """Curves ``{name: (x, y)}`` on one axis (losses over iterations, a selection curve); `mark`
    draws a vertical line at an x with a label (the chosen checkpoint)."""
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), label=_label(name), linewidth=1.2, marker="o" if len(xs) <= 20 else None)
    if mark is not None:
        ax.axvline(mark[0], color="#c44e52", linestyle="--", linewidth=1, label=mark[1])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1 or mark is not None:
        ax.legend(fontsize="small", frameon=False)
    return _png(fig)


def grid_of(images: Any, nrow: int, padding: int = 2, pad_value: float = 1.0) -> Any:
    """``(3, H', W')``: `images` ``(N, 1 or 3, H, W)`` in rows of `nrow` cells, `padding` pixels of
    `pad_value` around each, empty cells filled with it; `torchvision.utils.make_grid`'s layout
    (which returns a single image unpadded)."""
    import torch

    n, channels, height, width = images.shape
    if channels == 1:
        images = images.expand(n, 3, height, width)
    columns = min(nrow, n)
    rows = -(-n // columns)
    cells = images.new_full((rows * columns, 3, height + padding, width + padding), pad_value)
    cells[:n, :, padding:, padding:] = images
    grid = cells.view(rows, columns, 3, height + padding, width + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(3, rows * (height + padding), columns * (width + padding))
    return torch.nn.functional.pad(grid, (0, padding, 0, padding), value=pad_value)


def composite_alpha(images: Any, background: float = ALPHA_BACKGROUND) -> Any:
    """Images ``(N, C, H, W)`` in [0, 1] with their last channel taken as alpha when there are 2
    (grey + alpha) or 4 (RGBA), composited over the grey `background`: 1 or 3 channels. Other
    channel counts come back as they are."""
    if images.shape[1] not in (2, 4):
        return images
    alpha = images[:, -1:]
    return images[:, :-1] * alpha + background * (1 - alpha)


def image_grid(images: Any, nrow: int, min_cell: int = 48, row_labels: Sequence[str] | None = None,
               max_cell: int = 128) -> bytes:
    """Images ``(N, C, H, W)`` in [0, 1] as one PNG grid of `nrow` images a row (`grid_of`),
    small images enlarged by whole factors (nearest) so that each cell is at least `min_cell`
    pixels, large ones reduced by whole factors (area averages) to at most `max_cell` (a page of
    224 px grids would weigh megabytes); with `row_labels`, each grid row is labelled on the left
    (a class name). Grey + alpha (2 channels) and RGBA (4) show composited over mid grey
    (`composite_alpha`); other counts than 1 to 4 show their first channel in grey."""
    import torch
    from PIL import Image

    images = composite_alpha(images.detach().float().cpu().clamp(0, 1))
    if images.shape[1] not in (1, 3):  # a grid draws 1 or 3 channels; show the first
        images = images[:, :1]
    height, width = images.shape[-2:]
    scale = max(1, -(-min_cell // max(height, width)))
    reduce = -(-max(height, width) // max_cell)
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    elif reduce > 1:
        images = torch.nn.functional.interpolate(images, size=(-(-height // reduce), -(-width // reduce)), mode="area")
    grid = grid_of(images, nrow=max(1, nrow), padding=2, pad_value=1.0)
    array = (grid.permute(1, 2, 0).mul(255).round().to(torch.uint8)).numpy()
    if not row_labels:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()
    height, width = array.shape[:2]
    cell = images.shape[-2] + 2
    label_width = 0.12 * max(len(str(label)) for label in row_labels) + 0.4
    fig = _figure(width / 100 + label_width, height / 100 + 0.1)
    ax = fig.add_subplot()
    ax.imshow(array, interpolation="nearest", cmap="gray" if array.shape[2] == 1 else None)
    ax.set_yticks([2 + cell * i + cell / 2 - 1 for i in range(len(row_labels))], [_label(r) for r in row_labels])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return _png(fig)
