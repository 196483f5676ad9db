"""Running under ``torchrun``: the process group, the rank, and what rank 0 tells the others.

``torchrun --nproc-per-node N -m setforge run FILE`` starts N copies of the same run. `setup`
joins them into one ``torch.distributed`` process group from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; backend ``nccl`` on CUDA, else
``gloo``) and gives each rank its own GPU (``cuda:LOCAL_RANK``). Every rank runs the same
source, split and steps with the same seeds; inside `collective` (the pipeline's steps) the
shared GAN loop trains with DistributedDataParallel, each rank on its share of every batch.
Rank 0 alone writes the run folder, checkpoints and grids, and evaluates; the other ranks keep
what plugins write in a private scratch folder (removed at exit) and stop after the steps. A
streaming run is sharded instead: batch *u* goes to rank ``u % world_size`` (`takes`), every rank
writes its own shards into the one ``<dir>.partial/`` (`check_shared`: a file system every rank
sees), and rank 0 gathers what they wrote and counted (`gather`, `summed`) before it writes the report.

Without torchrun (``WORLD_SIZE`` unset or 1) every function here is a no-op: rank 0 of 1.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from .errors import SetforgeError

__all__ = ["launched", "setup", "rank", "world_size", "is_main", "collective", "group", "from_main",
           "all_mean", "wrap", "scratch_dir", "takes", "barrier", "gather", "summed", "check_shared", "peer_failed",
           "PeerFailed", "finish"]

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


class PeerFailed(SetforgeError):
    """This rank stops because another rank of the torchrun job failed or left.

    torchrun names as the "Root Cause" the first failed rank it sees, and it looks every 0.1 s: a
    rank that exited on its peer's failure before that look was named instead of the peer (3 runs
    in 3 of the 2-rank failure test). So ``setforge`` lets such a rank wait up to `linger_s`
    after its message before it exits; torchrun, having seen the peer fail, stops it sooner."""

    linger_s = 5.0


def peer_failed(error: BaseException) -> SetforgeError | None:
    """The error to raise instead of `error` when `error` is the process group reporting that
    another rank is gone (it failed, and its own message says why): gloo's "connection closed by
    peer", or any ``torch.distributed.DistError``. None for any other error, and without torchrun.
    A rank that sees its peer fail thus says so instead of blaming the step it was in."""
    if not launched() or not (isinstance(error, torch.distributed.DistError) or "/gloo/" in str(error)):
        return None
    said = re.sub(r"^\[[^\]]*\]\s*", "", (str(error).strip().splitlines() or [""])[0])  # gloo's "[file:line] "
    first = said.split(". ")[0] or type(error).__name__
    return PeerFailed(f"rank {os.environ.get('RANK', '?')} stopped because another rank of this torchrun job "
                         f"failed or left ({first}); that rank's own message says why. Nothing was committed")


@contextlib.contextmanager
def _peers() -> Iterator[None]:
    try:
        yield
    except Exception as error:  # noqa: BLE001 - anything else passes unchanged
        raise peer_failed(error) or error


def _teardown() -> None:
    if _initialized():
        torch.distributed.destroy_process_group()


def finish() -> None:
    """End this process's part of a torchrun job that succeeded on every rank: wait for every rank,
    then leave the process group (nothing without one). Call it where every rank gets after its
    last collective (``setforge run`` does, after the run). A rank that left its group to process
    exit while a peer was still at work (rank 0 committing the run folder) was now and then
    aborted by gloo at exit ("terminate called without an active exception", SIGABRT: 1 run in
    10 to 40 of the 2-rank test here, none in 80 with `finish`). On a failure, do not call it:
    a peer may never get to the barrier; process exit leaves the group then."""
    if _initialized():
        barrier()
        _teardown()


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
    with _peers():
        torch.distributed.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over the ranks of the `group` (`tensor` itself on one process)."""
    if group()[1] == 1:
        return tensor
    total = tensor.detach().clone()
    with _peers():
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


def takes(unit: int) -> bool:
    """Whether this rank takes work unit `unit` (a streaming run's batch): unit *u* goes to rank
    ``u % world_size``, so the share of each rank is fixed by the number of ranks alone."""
    return unit % world_size() == rank()


def barrier() -> None:
    """Wait until every rank gets here (nothing on one process)."""
    if world_size() > 1:
        with _peers():
            torch.distributed.barrier()


def gather(obj: T) -> list[T] | None:
    """Every rank's `obj` (picklable), in rank order, on rank 0 (``gather_object``; it waits for
    every rank); None on the other ranks, ``[obj]`` on one process."""
    if world_size() == 1:
        return [obj]
    found: list[Any] | None = [None] * world_size() if is_main() else None
    with _peers():
        torch.distributed.gather_object(obj, found, dst=0)
    return found


def summed(state: Any) -> Any:
    """`state` added up over the ranks, on rank 0 (`gather`; None on the other ranks, `state`
    itself on one process): mappings key by key (a key one rank has is taken as it is), lists
    joined in rank order, numbers and NumPy arrays added, for work shared out among the ranks."""
    found = gather(state)
    return None if found is None else functools.reduce(_add, found)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, Mapping):
        return {**a, **b, **{k: _add(a[k], b[k]) for k in a.keys() & b.keys()}}
    return a + b


def check_shared(folder: Path) -> None:
    """Make sure every rank sees the folder `folder` that rank 0 made (ranks that write one run
    folder together need a file system they all share): rank 0 writes a fresh token into it and
    sends it to the others, each of which reads the file back; a rank that reads something else
    raises `OutputError` (torchrun then stops the others). Rank 0 removes the file once every rank
    has read it. Nothing on one process."""
    from uuid import uuid4

    from .errors import OutputError

    if world_size() == 1:
        return
    path, box = Path(folder) / ".setforge-ranks", [uuid4().hex if is_main() else None]
    if is_main():
        path.write_text(box[0], encoding="utf-8")
    with _peers():
        torch.distributed.broadcast_object_list(box, src=0)
    try:
        seen = path.read_text(encoding="utf-8")
    except OSError:
        seen = None
    if seen != box[0]:
        raise OutputError(f"rank {rank()} does not see {folder} as rank 0 wrote it: the ranks of a streaming run "
                          "write one run folder together, so output.dir must be on a file system every machine "
                          "shares (on one machine it is the same disk)")
    barrier()
    if is_main():
        path.unlink()
