"""Per-thread scratch memory for the intermediates of the batched image ops, reused from call to call.

A fresh multi-megabyte tensor for every chunk of a batch can cost more than the arithmetic done
on it: in the 64 x 3x224x224 flip + affine + colour chain on the 2-core machine, allocating the
colour op's 6.6 MB working copy afresh for each chunk of 11 rows put the chain at 21-30 ms a call
(medians of 30 calls, three processes), against 17-19 ms with the copy's memory reused. So each
thread keeps one buffer per purpose, grown to the largest request it has seen, and hands out
views of it.

A view is valid until the same thread next asks for the same purpose: a caller uses it inside one
function and never returns it. The memory stays with the thread, at most `MAX_BYTES` per purpose
(`release` frees the calling thread's).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import torch

__all__ = ["scratch", "release"]

_LOCAL = threading.local()

#: Larger requests get a fresh tensor, so that no thread holds more than this per purpose (a
#: request this large is work enough that its allocation is a small part of it).
MAX_BYTES = 32 << 20


def scratch(purpose: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor of `shape` that this thread reuses for `purpose` (CPU
    only, up to `MAX_BYTES`; otherwise a fresh tensor: GPU caching allocators already reuse memory)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes > MAX_BYTES:
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    buffers: dict[str, torch.Tensor] = _LOCAL.__dict__.setdefault("buffers", {})
    buffer = buffers.get(purpose)
    if buffer is None or buffer.numel() < nbytes:
        # (a plain tensor even under inference mode: an inference tensor could not be written
        # in place later, outside inference mode; on `device`, not torch's default device)
        with torch.inference_mode(False):
            buffer = buffers[purpose] = torch.empty(nbytes, dtype=torch.uint8, device=device)
    return buffer[:nbytes].view(dtype).view(tuple(shape))


def release() -> None:
    """Free the calling thread's scratch buffers."""
    _LOCAL.__dict__.pop("buffers", None)
