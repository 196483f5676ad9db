"""Augmenters applied in turn (`Chain`), and the contract of geometric augmenters (`GeometricAugmenter`)
under which consecutive ones resample once.

A geometric augmenter is one affine warp per row. It declares:

- ``_matrix(params, height, width)``: the ``(N, 3, 3)`` matrix mapping output pixel coordinates
  (normalised to [-1, 1], ``align_corners=False``) to input coordinates;
- ``sampling``: how it resamples (interpolation, edge handling, fill), any hashable value; ``None``
  for an exact op (a flip), which agrees with every sampling;
- ``_warp(x, matrix)``: resampling a batch through per-row matrices with its own sampling;
- ``fuse(x, ops, params)``: applying a run of consecutive geometric ops with their drawn params.
  The base applies them in turn; the built-in ops (plugin ``builtin-augment``) multiply the
  matrices and resample once.

A `Chain` cuts its ops into runs: consecutive geometric ops whose ``sampling`` agrees form one run
(so a chain whose ops differ in edge handling still fuses each run of equal handling), every other
op is a run of its own. A run of two or more goes to ``fuse`` of its first op with a sampling (or
its first op when all are exact).

Rows that are not a tensor (text: a list of str, one per row) take none of this: each op's
``apply_params`` is applied in turn to the whole list, each op with its own draws and gate, and a
chain step appends its copies with provenance as one augmenter's step does (`Augmenter.augment`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import torch
from pydantic import Field

from .components import Augmenter, take_params
from .dataset import MODALITIES
from .errors import ConfigError

__all__ = ["Chain", "GeometricAugmenter", "release_outputs", "ForkSafeLock"]


class GeometricAugmenter(Augmenter):
    """An augmenter that is one affine warp per row (see the module docstring); it may fuse in a `Chain`."""

    @property
    def sampling(self) -> Hashable | None:
        """How this op resamples (interpolation, edge handling, fill); None: exact, agrees with any."""
        return None

    def matrix(self, params: Mapping[str, Any], height: int, width: int) -> torch.Tensor:
        """The ``(N, 3, 3)`` warp of drawn `params` for ``height x width`` rows."""
        matrix = self._matrix(params, height, width)
        n = params["apply"].shape[0]
        if not isinstance(matrix, torch.Tensor) or tuple(matrix.shape) != (n, 3, 3):
            from .errors import PluginError

            raise PluginError(f"augment '{self.name}': _matrix must return an ({n}, 3, 3) tensor, got "
                              f"{getattr(matrix, 'shape', type(matrix).__name__)}")
        return matrix

    def warp(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """Resample `x` through per-row `matrix` with this op's sampling."""
        return self._warp(x, matrix)

    def fuse(self, x: torch.Tensor, ops: Sequence["GeometricAugmenter"], params: Sequence[Mapping[str, Any]]
             ) -> torch.Tensor:
        """Apply the run `ops` (consecutive geometric ops of one sampling, this one among them) with
        their drawn `params` to the image batch `x`. The base applies them in turn."""
        for op, own in zip(ops, params):
            x = op.apply_params(x, None, own)
        return x

    # author-facing ------------------------------------------------------------------
    def _matrix(self, params: Mapping[str, Any], height: int, width: int) -> torch.Tensor:
        raise NotImplementedError

    def _warp(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _agrees(a: Hashable | None, b: Hashable | None) -> bool:
    return a is None or b is None or a == b


class Chain(Augmenter):
    """Several augmenters applied one after the other, with parameters drawn per row for each.

    Consecutive geometric ops of one sampling fuse (see `setforge.chain`). An op's in-place
    ``_transform_`` is used on the chain's own intermediates (never on the caller's batch) when
    every row of the op is gated on, and a chunked chain's last op writes each chunk straight into
    the output with ``_transform_into``. On the CPU with torch set to N threads, N worker threads
    share the chunks, each running its chunks' ops on one thread, and the output goes into the
    memory of an earlier output that nothing refers to any more (its storage cannot be resized).

    Text rows (a list of str) go through the ops one after the other, each op on the whole list
    (``apply_params``, row by row as the op works), with nothing fused, chunked or in place.
    """

    name = "chain"
    #: When every op's rows are independent, a batch larger than this goes through all ops a chunk
    #: of about this many bytes at a time, so that a chunk's intermediates stay in the last-level
    #: cache instead of crossing main memory once per op.
    chunk_bytes: ClassVar[int] = 8 * 1024 * 1024

    class Params(Augmenter.Params):
        """A chain's own gate is always open; each op keeps its own ``p``."""

        p: float = Field(1.0, ge=1.0, le=1.0)

    def __init__(self, ops: Sequence[Augmenter]):
        super().__init__(None)
        if not ops:
            raise ConfigError(problems=[("augment", "a chain needs at least one augmenter")])
        for op in ops:
            if not isinstance(op, Augmenter):
                raise ConfigError(problems=[("augment", f"a chain holds augmenters, got {type(op).__name__}")])
        self.ops = torch.nn.ModuleList(ops)
        self.modalities = tuple(m for m in MODALITIES if all(m in op.modalities for op in ops))  # type: ignore[misc]
        if not self.modalities:
            raise ConfigError(problems=[("augment", "the augmenters of this chain share no modality: "
                                         + ", ".join(f"{op.name} {list(op.modalities)}" for op in ops))])
        self.rows_independent = all(op.rows_independent for op in ops)  # type: ignore[misc]
        self.streams = all(op.streams for op in ops)  # type: ignore[misc]
        self.runs = self._fusion_runs()

    def __repr__(self) -> str:
        return "Chain(" + ", ".join(repr(op) for op in self.ops) + ")"

    def _fusion_runs(self) -> list[list[int]]:
        """Op indices grouped into runs; a run of two or more geometric ops of one sampling fuses."""
        runs: list[list[int]] = []
        sampling: Hashable | None = None
        previous = False
        for i, op in enumerate(self.ops):
            geometric = isinstance(op, GeometricAugmenter)
            own = op.sampling if geometric else None
            if geometric and previous and _agrees(own, sampling):
                runs[-1].append(i)
                sampling = sampling if own is None else own
            else:
                runs.append([i])
                sampling = own
            previous = geometric
        return runs

    def _fit(self, ds):
        for op in self.ops:
            op._fit(ds)

    def check_data(self, ds):
        """Every op's problems, at the chain (key ``""``), each naming its op: ``[0] 'affine' params.fill: ...``."""
        return [("", f"[{i}] '{op.name}'{f' params.{key}' if key else ''}: {text}")
                for i, op in enumerate(self.ops) for key, text in op.check_data(ds)]

    def _make_params(self, x, y, generator):
        return {str(i): op.make_params(x, y, generator) for i, op in enumerate(self.ops)}

    def make_params(self, x, y=None, generator=None):
        """Every op's draws under its index; text rows (a list) get the chain's open gate on the CPU."""
        if isinstance(x, torch.Tensor):
            return super().make_params(x, y, generator)
        return {**self._make_params(x, y, generator), "apply": torch.ones(len(x), dtype=torch.bool)}

    def _threads(self, x: torch.Tensor):
        """A chain that cuts its batch into chunks sets the threads itself (see `_transform`)."""
        if self._chunks(x):
            return contextlib.nullcontext()
        return super()._threads(x)

    def _chunks(self, x: torch.Tensor) -> bool:
        return (isinstance(x, torch.Tensor) and self.rows_independent and len(self.runs) > 1
                and self._chunk_rows(x) < len(x))

    def _chunk_rows(self, x: torch.Tensor) -> int:
        return max(1, self.chunk_bytes // max(1, x[0].numel() * x.element_size())) if len(x) else 1

    def _transform(self, x, y, params):
        if not isinstance(x, torch.Tensor):  # text: the ops in turn, each on the whole list
            for i, op in enumerate(self.ops):
                out = op.apply_params(x, y, params[str(i)])
                op._check_output(out, x)
                x = out
            return x
        if not self._chunks(x):
            return self._stages(x, y, params)
        # Rows are independent: run every stage on a cache-sized chunk of rows before the next
        # chunk, so the intermediates of a chunk never leave the cache.
        out = _output_like(self, x)

        def stages(rows: slice) -> None:
            self._stages(x[rows], None if y is None else y[rows], take_params(params, rows), out=out[rows])  # type: ignore[arg-type]

        step, workers = self._chunk_rows(x), torch.get_num_threads()
        if x.device.type != "cpu" or workers == 1 or torch.is_grad_enabled():
            with super()._threads(x[:step]):
                for start in range(0, len(x), step):
                    stages(slice(start, start + step))
            return out
        # On the CPU the chunks go to `workers` threads of one intra-op thread each, in equal
        # shares, so no thread waits on another until the end; ops split over all threads meet at
        # a barrier per op, which on busy cores waits for a descheduled thread (docs/augmenters.md,
        # Threads: 64x3x224x224 flip+affine+color on 2 idle cores 1.3-1.5x the chunks in turn on
        # one thread, within 5 % beside busy processes).
        # Never more workers than CPUs this process may run on (its affinity: a CPU quota does not
        # show there) or chunks of the cache size: more threads than cores only queue for them, and
        # chunks of fewer rows pay the ops' fixed costs more often (64 workers on 2 cores: 4.3x
        # one thread's time).
        chunks = -(-len(x) // step)
        used = min(workers, chunks, _cpus())
        step = -(-len(x) // (used * -(-chunks // used)))  # equal shares of at most `step` rows
        rows = [slice(start, start + step) for start in range(0, len(x), step)]
        inference = torch.is_inference_mode_enabled()  # (the output is an inference tensor under it)
        autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))  # (as the caller's thread)
        try:
            list(_pool(used).map(_on_one_thread, [stages] * len(rows), rows, [inference] * len(rows),
                                 [autocast] * len(rows)))
        finally:
            torch.set_num_threads(workers)  # a worker's setting is also the default of threads yet to start
        return out

    def _stages(self, x: torch.Tensor, y: torch.Tensor | None, params: Mapping[str, Any],
                out: torch.Tensor | None = None) -> torch.Tensor:
        """The runs in turn; with `out`, the result is written into it (the last op writes there
        itself when it can, which saves a pass over the batch) and `out` is returned."""
        source = x
        for r, run in enumerate(self.runs):
            if len(run) > 1 and x.ndim == 4:
                ops = [self.ops[i] for i in run]
                lead = next((op for op in ops if op.sampling is not None), ops[0])
                x = lead.fuse(x, ops, [params[str(i)] for i in run])
                continue
            for i in run:
                op, own = self.ops[i], params[str(i)]
                every_row = bool(own["apply"].all())
                if (out is not None and r == len(self.runs) - 1 and i == run[-1] and every_row and not x.requires_grad
                        and out.stride() == x.stride()):  # (across memory layouts a plain copy is faster)
                    return op._transform_into(out, x, y, own)
                if x is not source and every_row and not _shares_memory(x, source):
                    x = op._transform_(x, y, own)
                else:
                    x = op.apply_params(x, y, own)
        if out is None:
            return x
        return out.copy_(x)

    def augment(self, ds, ctx, copies=1, rows=None):
        try:
            return super().augment(ds, ctx, copies=copies, rows=rows)
        finally:
            release_outputs(self)  # the step holds every batch's output until the end: none to reuse after it

    def parent_index(self, params, n, device):
        index = torch.arange(n, device=device)
        for i in reversed(range(len(self.ops))):
            index = self.ops[i].parent_index(params[str(i)], n, device)[index]
        return index


#: The worker threads of chunked chains by (process, size): a forked child (a DataLoader worker)
#: starts its own, since its parent's threads do not exist in it.
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="setforge-chain")
    return _POOLS[key]


#: How many outputs of one chain `_output_like` keeps for reuse: two, since in a loop
#: ``out = chain(x)`` the previous output is still bound while the next one is made.
_KEPT = 2
#: The largest output whose memory a chain keeps, so that it holds at most 512 MiB between calls
#: (a batch of 256 x 3x224x224 float32 is 154 MB).
_KEPT_BYTES = 256 << 20
_KEPT_OUTPUTS: "weakref.WeakKeyDictionary[Chain, list[mmap.mmap]]" = weakref.WeakKeyDictionary()


class ForkSafeLock:
    """A ``threading.Lock`` for module-level state that a forked child (a ``DataLoader`` worker)
    gets fresh: the child may inherit the lock held by a thread it does not have."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._renew)  # keeps the lock for good: module-level locks only

    def _renew(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)


_KEPT_LOCK = ForkSafeLock()


def _output_like(chain: Chain, x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor like `x` for `chain`'s chunked output, on the CPU in memory of one
    of the chain's earlier outputs that nothing refers to any more.

    A fresh tensor of a batch over glibc's mmap threshold (32 MiB at most) is new pages, and the
    kernel faults every 4 KiB page in and zeroes it on first write: 9.4k faults, a quarter of the
    64 x 3x224x224 chain's time (docs/augmenters.md, Memory). An output's memory is an anonymous
    private mapping; while any tensor, view or array still uses it, its storage holds a reference
    to the mapping, so the mapping is free exactly when the list here holds the only reference.
    The chain keeps at most `_KEPT` mappings of at most `_KEPT_BYTES` each, released with the
    chain or by `release_outputs`.
    """
    nbytes = x.numel() * x.element_size()
    if x.device.type != "cpu" or x.requires_grad or not x.is_contiguous() or not 0 < nbytes <= _KEPT_BYTES:
        return torch.empty_like(x)
    with _KEPT_LOCK:
        kept = _KEPT_OUTPUTS.setdefault(chain, [])
        free = [i for i in range(len(kept)) if sys.getrefcount(kept[i]) == 2]  # (the list's and the argument's)
        same = [i for i in free if len(kept[i]) == nbytes]
        if same:
            memory = kept[same[0]]
        else:
            memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # (shared: a forked child's writes would show)
            if len(kept) < _KEPT:
                kept.append(memory)
            elif free:
                kept[free[0]] = memory
        return torch.frombuffer(memory, dtype=x.dtype).view(x.shape)  # (holds `memory` before the lock opens)


def release_outputs(chain: Chain) -> None:
    """Forget the memory `chain` kept for reuse (outputs still in use keep theirs)."""
    with _KEPT_LOCK:
        _KEPT_OUTPUTS.pop(chain, None)


def _cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _on_one_thread(work: Callable[[slice], None], rows: slice, inference: bool,
                   autocast: tuple[bool, torch.dtype]) -> None:
    # (grad mode, inference mode, autocast and the intra-op thread count are per thread: a worker
    # sets its own, as the caller's)
    torch.set_num_threads(1)
    with torch.inference_mode() if inference else torch.no_grad(), \
            torch.autocast("cpu", dtype=autocast[1], enabled=autocast[0]):
        work(rows)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `a` may alias `b` (or is not a plain dense tensor that may be written in place)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() or not a.is_contiguous()
