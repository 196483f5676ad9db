"""The augmenter base: parameters drawn per row from an explicit generator, applied
deterministically, gated per row; an ``nn.Module`` for training loops and a pipeline step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, Field

from .base import Component
from .context import StepContext
from .dataset import Dataset, Origin
from .errors import ConfigError, DataError, PluginError

__all__ = ["Augmenter", "take_params"]


def take_params(params: Mapping[str, Any], index: torch.Tensor) -> dict[str, Any]:
    """Rows `index` of every per-row parameter (nested dicts for chains)."""
    return {k: take_params(v, index) if isinstance(v, Mapping) else v[index] for k, v in params.items()}


def _leaves(params: Mapping[str, Any]) -> list[Any]:
    return [leaf for v in params.values() for leaf in (_leaves(v) if isinstance(v, Mapping) else [v])]


class Augmenter(Component, torch.nn.Module):
    """Transforms rows with parameters drawn per row.

    Drawing is split from applying (kornia's lesson): ``_make_params(x, y, generator)`` draws a
    dict of per-row tensors (leading dimension N) from an explicit ``torch.Generator``;
    ``_transform(x, y, params)`` is deterministic. The base adds the per-row gate ``apply`` (drawn with
    probability ``p``) and runs ``_transform`` on the gated rows only, so a call can be replayed
    (``forward(x, params=aug.last_params)``) and a policy can run an op on a sub-batch.
    (DESIGN calls the author's method ``_apply``; ``nn.Module`` already owns ``_apply`` and
    ``apply``, so here they are ``_transform`` and ``apply_params``.)

    The reserved key ``"parent"`` in params, an ``(N,)`` index into the batch, names the row whose
    provenance an output row takes (mixup: the row with the larger weight). An augmenter whose
    rows depend on other rows of the batch sets ``rows_independent = False``: it is applied to the
    whole batch and the gate picks rows afterwards. In a `setforge.Chain` on the CPU, an op whose
    rows are independent may be called from several threads at once, each on other rows.

    As an ``nn.Module`` it drops into a training loop: ``x = aug(x)`` (or ``aug(x, y,
    generator=g)``) augments a batch on whatever device it is on.
    """

    kind = "augment"
    modalities = ("image",)
    rows_independent: ClassVar[bool] = True
    #: A CPU batch of at most this many elements is augmented on one thread: its ops are too
    #: little work to share out, and on a busy machine every thread hand-off waits for a core
    #: (measured on 2 loaded cores: equalize of 64x3x32x32 256 ms on two threads, 8 ms on one).
    one_thread_elements: ClassVar[int] = 1 << 21
    streams = True  # applied to each batch of a streaming run; an augmenter whose _fit reads the whole input says False

    class Params(Component.Params):
        """Shared augmenter params."""

        p: float = Field(1.0, ge=0.0, le=1.0, description="probability that a row is transformed, drawn per row")

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None):
        torch.nn.Module.__init__(self)
        Component.__init__(self, params)
        self.last_params: dict[str, Any] | None = None

    # host-facing, final -----------------------------------------------------------------
    def make_params(self, x: torch.Tensor, y: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> dict[str, Any]:
        """Draw every row's parameters, the gate ``apply`` included."""
        n = x.shape[0]
        gate = torch.rand(n, generator=generator, device=x.device) < self.params.p
        params = dict(self._make_params(x, y, generator))
        params["apply"] = gate
        return params

    def apply_params(self, x: torch.Tensor, y: torch.Tensor | None, params: Mapping[str, Any]) -> torch.Tensor:
        """Apply drawn parameters (deterministic): the gated rows change, the others stay."""
        gate = params["apply"]
        if not len(gate):  # no rows: nothing to change (and some kernels, such as conv1d, refuse none)
            return x
        if bool(gate.all()):
            return self._transform(x, y, params)
        if not bool(gate.any()):
            return x
        if not self.rows_independent:
            out = self._transform(x, y, params)
            return torch.where(gate.view(-1, *([1] * (x.ndim - 1))), out, x)
        index = gate.nonzero().flatten()
        out = x.clone()
        out[index] = self._transform(x[index], None if y is None else y[index], take_params(params, index))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, generator: torch.Generator | None = None,
                params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Augment a batch: draw (or replay `params`) and apply. Keeps ``last_params``."""
        if "image" in self.modalities and x.ndim == 4 and not x.is_floating_point():
            raise DataError(f"augment '{self.name}' takes floating-point images in [0, 1], got {x.dtype} "
                            f"(convert first: x.float() / 255; augmenter 'torchvision' with dtype: uint8 hands "
                            f"a transform 8-bit images)")
        if tuple(self.modalities) == ("image",) and isinstance(x, torch.Tensor) and x.ndim != 4:
            raise DataError(f"augment '{self.name}' takes a batch of images (N, C, H, W), got shape "
                            f"{tuple(x.shape)} (one image: x.unsqueeze(0))")
        with self._threads(x), self._grad_mode(x, y, params):
            if params is None:
                params = self.make_params(x, y, generator)
            self.last_params = dict(params)
            return self.apply_params(x, y, params)

    def _grad_mode(self, x: torch.Tensor, y: torch.Tensor | None, params: Mapping[str, Any] | None
                   ) -> contextlib.AbstractContextManager[Any]:
        """``no_grad`` when nothing the call reads requires grad, so grad mode costs nothing."""
        tensors = [x, y, *self.parameters(), *_leaves(params or {})]
        if torch.is_grad_enabled() and not any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
            return torch.no_grad()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _threads(self, x: Any) -> Iterator[None]:
        """One CPU thread inside the block for a tensor batch of at most ``one_thread_elements``.

        Text batches are lists of strings, which this leaves alone.
        """
        before = torch.get_num_threads()
        if (not isinstance(x, torch.Tensor) or x.device.type != "cpu" or before == 1
                or x.numel() > self.one_thread_elements):
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def parent_index(self, params: Mapping[str, Any], n: int, device: torch.device) -> torch.Tensor:
        """For each output row of a batch of `n`, the batch row whose provenance it takes."""
        own = torch.arange(n, device=device)
        if "parent" not in params:
            return own
        return torch.where(params["apply"], params["parent"], own)

    def augment(self, ds: Dataset, ctx: StepContext, copies: int = 1, rows: torch.Tensor | None = None) -> Dataset:
        """The pipeline step: `copies` augmented copies of `rows` (default: all), appended to `ds`.

        New rows are ``Origin.AUGMENTED`` with ``step = ctx.step`` and ``parent`` the real row
        they descend from. Batches of ``ctx.batch_size`` rows, on ``ctx.device``; text rows (a
        list of str, which stays on the CPU) go in batches of lists.
        """
        self._check_modality(ds)
        if copies < 0:
            raise ConfigError(problems=[("copies", f"must be >= 0, got {copies}")])
        ds = ds.to(ctx.device)
        self._fit(ds)
        rows = torch.arange(len(ds), device=ds.device) if rows is None else torch.as_tensor(rows, device=ds.device)
        if copies == 0 or rows.numel() == 0:
            return ds
        lineage = ds.lineage()
        generator = ctx.rng.torch
        xs, ys, parents, groups = [], [], [], []
        with torch.no_grad():
            for _ in range(copies):
                for start in range(0, rows.numel(), ctx.batch_size):
                    batch = rows[start:start + ctx.batch_size]
                    x, y = ds.x[batch] if isinstance(ds.x, torch.Tensor) else [ds.x[i] for i in batch.tolist()], ds.y[batch]
                    with self._threads(x):
                        params = self.make_params(x, y, generator)
                        out = self.apply_params(x, y, params)
                    self._check_output(out, x)
                    xs.append(out)
                    ys.append(y)
                    source = batch[self.parent_index(params, len(batch), ds.device)]
                    parents.append(lineage[source])
                    if ds.groups is not None:
                        groups.append(ds.groups[source])
        new = ds.replace(x=torch.cat(xs) if isinstance(ds.x, torch.Tensor) else sum(xs, []), y=torch.cat(ys), origin=torch.full_like(torch.cat(ys), int(Origin.AUGMENTED)),
                         step=torch.full_like(torch.cat(ys), ctx.step), parent=torch.cat(parents), row_id=None,
                         groups=torch.cat(groups) if groups else None)
        return Dataset.concat([ds, new])

    def _check_output(self, out: Any, x: torch.Tensor | list[str]) -> None:
        if isinstance(x, list):
            if not isinstance(out, list) or len(out) != len(x) or not all(isinstance(s, str) for s in out):
                raise PluginError(f"augment '{self.name}' must return a list of one str per row")
            return
        if not isinstance(out, torch.Tensor):
            raise PluginError(f"augment '{self.name}' returned {type(out).__name__}, not a tensor")
        if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
            raise PluginError(f"augment '{self.name}' returned {tuple(out.shape)} {out.dtype} on {out.device}, "
                              f"expected {tuple(x.shape)} {x.dtype} on {x.device}")
        if not bool(torch.isfinite(out).all()):
            raise PluginError(f"augment '{self.name}' returned NaN or infinite values")
        if "image" in self.modalities and out.ndim == 4 and out.numel() and \
                (float(out.min()) < 0.0 or float(out.max()) > 1.0):
            raise PluginError(f"augment '{self.name}' returned images outside [0, 1] "
                              f"([{float(out.min()):.4g}, {float(out.max()):.4g}])")

    def fit(self, ds: Dataset) -> "Augmenter":
        """Learn what the augmenter needs from a dataset (column types, per-class statistics) before
        ``forward`` is used on batches of it; ``augment`` does this itself. Returns self."""
        self._check_modality(ds)
        self._fit(ds)
        return self

    # author-facing ------------------------------------------------------------------
    def _fit(self, ds: Dataset) -> None:
        """Optional: learn from the step's whole input before any row is drawn (``augment`` calls it
        with the dataset on the run's device; ``fit`` for ``nn.Module`` use). Most augmenters need
        nothing; tabular ones read ``ds.features`` and per-class statistics here."""
        return None

    def _make_params(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None) -> dict[str, Any]:
        """Draw per-row parameters: a dict of tensors with leading dimension ``len(x)``."""
        return {}

    def _transform(self, x: torch.Tensor, y: torch.Tensor | None, params: Mapping[str, Any]) -> torch.Tensor:
        """Apply `params` to `x`; deterministic, vectorised over the batch."""
        raise NotImplementedError

    def _transform_(self, x: torch.Tensor, y: torch.Tensor | None, params: Mapping[str, Any]) -> torch.Tensor:
        """Optional: `_transform` writing into `x` and returning it. A `Chain` calls it on its own
        intermediates (never on the caller's batch) when every row of the op is gated on, saving a
        copy of the batch; the default is `_transform`."""
        return self._transform(x, y, params)

    def _transform_into(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None,
                        params: Mapping[str, Any]) -> torch.Tensor:
        """Optional: `_transform` written into `out` (shaped like `x`, not overlapping it), returning
        `out`. A chunked `Chain` calls it for its last op, with every row gated on, to write each
        chunk straight into the chain's output instead of copying it there; the default copies."""
        return out.copy_(self._transform(x, y, params))
