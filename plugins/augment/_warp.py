"""Per-row affine warps of image batches: one grid and one ``grid_sample`` for the whole batch.

Coordinates follow ``grid_sample(align_corners=False)``: ``-1`` and ``1`` are the outer edges of
the border pixels, so pixel ``i`` of ``W`` sits at ``(2 i + 1) / W - 1``. A warp matrix is
``(N, 3, 3)`` and maps *output* normalised coordinates ``(x, y, 1)`` to *input* ones (the inverse
map, as every resampler needs); matrices compose by multiplication, which is how a `Chain` fuses
consecutive geometric augmenters into one resampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._scratch import MAX_BYTES, scratch

__all__ = ["identity", "make_grid", "warp", "inside_weight", "inverse_affine_pixels", "pixels_to_normalized",
           "flip_matrix", "crop_matrix"]


def identity(n: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` identity warps, ``(n, 3, 3)``."""
    return torch.eye(3, device=device, dtype=dtype).expand(n, 3, 3).clone()


def make_grid(matrix: torch.Tensor, height: int, width: int, reuse: bool = False) -> torch.Tensor:
    """The ``(N, H, W, 2)`` sampling grid of `matrix` for an ``H x W`` output.

    Equal to ``F.affine_grid(matrix[:, :2], (N, C, H, W), align_corners=False)``, built by
    broadcasting (two multiply-adds a point) instead of a ``(N, H*W, 3) @ (3, 2)`` product, which
    on the CPU costs more than the sampling itself. The grid is a view of ``(N, 2, H, W)`` memory:
    each coordinate is written in one contiguous pass (writing the interleaved pairs took twice as
    long), and ``grid_sample`` reads either layout at the same speed. With `reuse`, the memory is
    this thread's scratch for grids (`._scratch`), valid until its next grid with `reuse`. (While
    autograd records `matrix`, the grid is a fresh stacked tensor that autograd can follow.)
    """
    n = matrix.shape[0]
    device, dtype = matrix.device, matrix.dtype
    xs = torch.arange(width, device=device, dtype=dtype).mul_(2.0 / width).add_(1.0 / width - 1.0)
    ys = torch.arange(height, device=device, dtype=dtype).mul_(2.0 / height).add_(1.0 / height - 1.0)
    along = [(matrix[:, axis, 0:1] * xs, torch.addcmul(matrix[:, axis, 2:3], matrix[:, axis, 1:2], ys))
             for axis in (0, 1)]                                            # (N, W), (N, H)
    if matrix.requires_grad and torch.is_grad_enabled():  # (autograd cannot follow writes into a buffer)
        return torch.stack([x.unsqueeze(1) + y.unsqueeze(2) for x, y in along], dim=-1)
    shape = (n, 2, height, width)
    planes = scratch("grid", shape, dtype, device) if reuse else torch.empty(shape, device=device, dtype=dtype)
    for axis, (along_x, along_y) in enumerate(along):
        torch.add(along_x.unsqueeze(1), along_y.unsqueeze(2), out=planes[:, axis])
    return planes.permute(0, 2, 3, 1)


#: On the CPU, a batch whose sampled channels (the fill's weight among them) take more than this
#: many bytes is resampled a piece of rows this size at a time (the pieces' results copied into
#: the output), which bounds the memory in flight; a piece's fill buffer fits this thread's
#: scratch. A chain's chunks (`Chain.chunk_bytes`, 8 MiB) are below it and are sampled straight
#: into their result. (Pieces of 1.5 MiB, each copied into a buffer first, were slower: 3.3 ms
#: against 2.0 ms for 11 rows of 3x224x224 sampled whole.)
PIECE_BYTES = MAX_BYTES


def warp(x: torch.Tensor, matrix: torch.Tensor, mode: str = "bilinear", padding: str = "zeros",
         fill: float | Sequence[float] | None = None) -> torch.Tensor:
    """Resample every row of `x` ``(N, C, H, W)`` through its own `matrix` ``(N, 3, 3)``.

    `padding` is ``"zeros"`` (points outside the image read `fill`, soft-edged like zero padding
    for bilinear) or ``"border"`` (the edge pixels repeat). `fill` is one value or one per channel;
    ``None`` or all zeros is plain zero padding. Bilinear output of [0, 1] input stays in [0, 1].
    Half-precision batches are resampled in float32 and returned in their own dtype.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        # Half precision is too coarse for coordinates: bfloat16's 8 bits put points up to 0.44
        # pixel off at 224 wide (an identity warp blurs), and the CPU's float16 grid_sample returns
        # values far outside the input's (up to 6144 from [0, 1] at 224 x 224). Sample in float32.
        return warp(x.float(), matrix, mode, padding, fill).to(x.dtype)
    n, c, h, w = x.shape
    matrix = matrix.to(x.dtype)
    fills = _fill_values(fill, c)
    if padding == "border":
        fills = None
    recording = torch.is_grad_enabled() and (x.requires_grad or matrix.requires_grad)
    step = max(1, PIECE_BYTES // max(1, (c + (fills is not None)) * h * w * x.element_size()))
    if x.device.type == "cpu" and not recording and n > step:
        # a large batch a piece of rows at a time, so that the grid, the fill channel and the
        # sampled rows in flight stay within a piece, not several times the batch
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        for start in range(0, n, step):
            out[start:start + step] = warp(x[start:start + step], matrix[start:start + step], mode, padding, fill)
        return out
    if fills is None:
        return _sample(x, matrix, mode, padding, fills, reuse=not recording)
    # the fill's weight is sampled as one more channel, of ones
    if x.device.type == "cpu" and not recording:
        source = scratch("fill", (n, c + 1, h, w), x.dtype, x.device)
        source[:, :c].copy_(x)
        source[:, c].fill_(1.0)
    else:
        source = torch.cat([x, torch.ones(n, 1, h, w, device=x.device, dtype=x.dtype)], dim=1)
    return _sample(source, matrix, mode, padding, fills, reuse=not recording)


def _sample(source: torch.Tensor, matrix: torch.Tensor, mode: str, padding: str, fills: list[float] | None,
            reuse: bool) -> torch.Tensor:
    """One ``grid_sample`` of `source`; with `fills`, its last channel is ones and gives each
    point's weight inside the image. With `reuse` (autograd is not recording: it would keep the
    grid for the backward pass), the grid is this thread's scratch."""
    n, channels, h, w = source.shape
    grid = make_grid(matrix, h, w, reuse=reuse)
    if fills is None:
        return F.grid_sample(source, grid, mode=mode, padding_mode=padding, align_corners=False)
    # The weight that lands inside the image, sampled alongside the image (one more channel),
    # tells how much of `fill` each output point needs: out = sample + (1 - weight) * fill.
    # (torchvision blends ``sample * weight + (1 - weight) * fill``, which darkens the one-pixel
    # edge band twice; the two agree wherever the weight is 0 or 1.)
    c = channels - 1
    both = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False)
    out, weight = both[:, :c], both[:, c:]
    fill_tensor = torch.tensor(fills, device=source.device, dtype=source.dtype).view(1, c, 1, 1)
    return out.addcmul_(weight.neg_().add_(1.0), fill_tensor).clamp_(0.0, 1.0)


def inside_weight(matrix: torch.Tensor, height: int, width: int, mode: str = "bilinear") -> torch.Tensor:
    """``(N, 1, H, W)``: how much of each output point of `matrix`'s warp reads the inside of an
    ``H x W`` input, i.e. what warping an all-ones image with zero padding gives (bilinear: 1 up to
    the outer pixel centres, falling to 0 one pixel beyond them; nearest: 1 or 0)."""
    grid = make_grid(matrix, height, width)
    weight: torch.Tensor | None = None
    for axis, size in ((0, width), (1, height)):
        pixel = (grid[..., axis] + 1.0) * (size / 2.0) - 0.5  # in pixels, centres at 0 .. size - 1
        if mode == "nearest":
            along = ((pixel >= -0.5) & (pixel < size - 0.5)).to(grid.dtype)
        else:
            along = (pixel + 1.0).clamp(0.0, 1.0) * (size - pixel).clamp(0.0, 1.0)
        weight = along if weight is None else weight * along
    assert weight is not None
    return weight.unsqueeze(1)


def _fill_values(fill: float | Sequence[float] | None, channels: int) -> list[float] | None:
    if fill is None:
        return None
    values = [float(fill)] * channels if isinstance(fill, (int, float)) else [float(v) for v in fill]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"fill has {len(values)} values for {channels} channels")
    return None if all(v == 0.0 for v in values) else values


def inverse_affine_pixels(angle: torch.Tensor, translate_x: torch.Tensor, translate_y: torch.Tensor,
                          scale: torch.Tensor, shear_x: torch.Tensor, shear_y: torch.Tensor) -> torch.Tensor:
    """Per row, torchvision's inverse affine matrix ``(N, 3, 3)`` in pixel units about the centre.

    The forward map is ``T * RotateScaleShear`` about the image centre (``angle`` and shears in
    degrees, translations in pixels), exactly as ``torchvision.transforms.v2.functional.affine``
    builds it; the matrix returned maps output pixel offsets from the centre to input ones.
    """
    rot = torch.deg2rad(angle)
    sx = torch.deg2rad(shear_x)
    sy = torch.deg2rad(shear_y)
    cos_sy = torch.cos(sy)
    tan_sx = torch.tan(sx)
    a = torch.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + torch.sin(rot))
    c = torch.sin(rot - sy) / cos_sy
    d = torch.cos(rot) - c * tan_sx
    m00, m01, m10, m11 = d / scale, -b / scale, -c / scale, a / scale
    m02 = -(m00 * translate_x + m01 * translate_y)
    m12 = -(m10 * translate_x + m11 * translate_y)
    zeros, ones = torch.zeros_like(m00), torch.ones_like(m00)
    return torch.stack([m00, m01, m02, m10, m11, m12, zeros, zeros, ones], dim=1).view(-1, 3, 3)


def pixels_to_normalized(matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A centred pixel-unit warp as a normalised one (``S^-1 M S`` with ``S = diag(W/2, H/2, 1)``)."""
    scale = matrix.new_tensor([width / 2.0, height / 2.0, 1.0])
    return matrix * scale.view(1, 1, 3) / scale.view(1, 3, 1)


def flip_matrix(n: int, horizontal: bool, device: torch.device | str) -> torch.Tensor:
    """Mirror warps: ``x -> -x`` (horizontal) or ``y -> -y`` (vertical); exact on pixel centres."""
    matrix = identity(n, device)
    matrix[:, 0 if horizontal else 1, 0 if horizontal else 1] = -1.0
    return matrix


def crop_matrix(top: torch.Tensor, left: torch.Tensor, crop_height: torch.Tensor, crop_width: torch.Tensor,
                height: int, width: int) -> torch.Tensor:
    """The warp that resizes the box (`top`, `left`, `crop_height`, `crop_width`, in pixels) to the
    whole ``height x width`` output, with the box's pixel edges on the output's (like
    ``resized_crop`` with ``align_corners=False``)."""
    matrix = identity(top.shape[0], top.device)
    matrix[:, 0, 0] = crop_width / width
    matrix[:, 0, 2] = (2.0 * left + crop_width - width) / width
    matrix[:, 1, 1] = crop_height / height
    matrix[:, 1, 2] = (2.0 * top + crop_height - height) / height
    return matrix
