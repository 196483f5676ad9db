"""Running under ``torchrun``: the process group, the rank, and what rank 0 tells the others.

``torchrun --nproc-per-node N -m setforge run FILE`` starts N copies of the same run. `setup`
joins them into one ``torch.distributed`` process group from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; backend ``nccl`` on CUDA, else
``gloo``) and gives each rank its own GPU (``cuda:LOCAL_RANK``). Every rank runs the same
source, split and steps with the same seeds; inside `collective` (the pipeline's steps) the
shared GAN loop trains with DistributedDataParallel, each rank on its share of every batch.
Rank 0 alone writes the run folder, checkpoints and grids, and evaluates; the other ranks keep
what plugins write in a private scratch folder (removed at exit) and stop after the steps.

Without torchrun (``WORLD_SIZE`` unset or 1) every function here is a no-op: rank 0 of 1.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["launched", "setup", "rank", "world_size", "is_main", "collective", "group", "from_main",
           "all_mean", "wrap", "scratch_dir"]

T = TypeVar("T")
_scope = {"depth": 0}


def launched() -> bool:
    """True when this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once per process) and return this rank's device: on CUDA
    ``cuda:LOCAL_RANK`` whatever index was asked for (one GPU per rank), else `device`."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not _initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return device


def _teardown() -> None:
    if _initialized():
        torch.distributed.destroy_process_group()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return torch.distributed.get_world_size() if _initialized() else 1


def is_main() -> bool:
    """True on rank 0, the one that writes and evaluates (and always without torchrun)."""
    return rank() == 0


@contextlib.contextmanager
def collective() -> Iterator[None]:
    """The stretch of a run every rank goes through together (the pipeline's steps): inside it
    `group` reports the process group, so the GAN loop trains with DDP. Outside it (rank 0's
    evaluation, ablation replays, a component called directly) training stays on one process."""
    _scope["depth"] += 1
    try:
        yield
    finally:
        _scope["depth"] -= 1


def group() -> tuple[int, int]:
    """``(rank, world_size)`` of the ranks training together now: ``(0, 1)`` outside `collective`."""
    return (rank(), world_size()) if _scope["depth"] and _initialized() else (0, 1)


def from_main(compute: Callable[[], T], device: torch.device) -> T:
    """`compute()` on rank 0, its result sent to every rank of the `group` with
    ``torch.distributed.broadcast_object_list``; plain `compute()` on one process. Only rank 0
    calls `compute`, so it may read what rank 0 alone holds (the run folder, its checkpoints).
    Tensors in the result keep rank 0's device: move them (``Dataset.to``) where it matters."""
    here, size = group()
    if size == 1:
        return compute()
    box = [compute() if here == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over the ranks of the `group` (`tensor` itself on one process)."""
    if group()[1] == 1:
        return tensor
    total = tensor.detach().clone()
    torch.distributed.all_reduce(total)
    return total / group()[1]


def wrap(module: torch.nn.Module, device: torch.device) -> Any:
    """`module` inside DistributedDataParallel when the `group` has several ranks (parameters
    broadcast from rank 0, gradients averaged in backward); `module` itself otherwise."""
    if group()[1] == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def scratch_dir() -> Path:
    """A private folder for this rank's work files (removed at exit): ranks other than 0 never
    write into the run folder."""
    path = Path(tempfile.mkdtemp(prefix=f"setforge-rank{rank()}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
