"""``tensorboard``: a run's losses, sample grids, counts and metrics as TensorBoard event files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from setforge.components import Observer
from setforge.context import Metrics, StepContext
from setforge.errors import ConfigError

__all__ = ["TensorBoard"]


class TensorBoard(Observer):
    """Writes losses, sample grids, class counts and metrics for TensorBoard (torch.utils.tensorboard).

    Scalars: ``<step>-<name>/loss/<loss>`` at each training iteration (``train_progress``),
    ``rows/<step>-<name>/<class>`` after each step, and every measure of the run at the end as
    ``metrics/<evaluator>/<path>``; images: ``<step>-<name>/samples`` for every sample grid a
    generator emits (``samples``). Losses and grids are the run's own training of the step: an
    evaluator that replays the step (``ablation``) trains it again after its ``step_finished``,
    and those events are left out rather than drawn over the step's curve. Needs the
    ``tensorboard`` package (``pip install 'setforge[tensorboard]'``). View with ``tensorboard
    --logdir DIR``.
    """

    name = "tensorboard"

    class Params(Observer.Params):
        """Where the event files go."""

        log_dir: str | None = Field(None, description="the event-file folder (default: observe/tensorboard "
                                                      "inside the run folder); relative to the current folder")

    def _open(self, ctx: StepContext) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ConfigError(problems=[("observe", "the tensorboard observer needs the tensorboard package: "
                                                    f"pip install 'setforge[tensorboard]' ({error})")]) from None
        folder = Path(self.params.log_dir) if self.params.log_dir else ctx.ensure_workdir()
        folder.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(folder))
        self._finished: set[int] = set()  # steps whose step_finished came: later training is a replay
        self.log_dir = folder

    def _tag(self, event: Any) -> str:
        return f"{event.step}-{event.name}" if event.step is not None else str(event.name)

    def _observe(self, event: Any) -> None:
        writer = self._writer
        data = event.data
        if event.kind in ("train_progress", "samples") and event.step in self._finished:
            return  # an evaluator replaying the step: same tags and iterations, another training
        if event.kind == "train_progress":
            for loss, value in (data.get("losses") or {}).items():
                writer.add_scalar(f"{self._tag(event)}/loss/{loss}", float(value), int(data.get("iteration", 0)))
        elif event.kind == "samples":
            from torchvision.utils import make_grid

            images = data.get("images")
            if images is not None and getattr(images, "ndim", 0) == 4:
                grid = make_grid(images.detach().float().cpu().clamp(0, 1)[:, :3], nrow=8, padding=2)
                writer.add_image(f"{self._tag(event)}/samples", grid, int(data.get("iteration", 0)))
        elif event.kind == "step_finished":
            if event.step is not None:
                self._finished.add(event.step)
            for cls, n in (data.get("counts", {}).get("by_class") or {}).items():
                writer.add_scalar(f"rows/{self._tag(event)}/{cls}", float(n), 0)
        elif event.kind == "run_finished":
            metrics = data.get("metrics")
            if isinstance(metrics, Metrics):
                for path, measure in sorted(metrics.flat().items()):
                    writer.add_scalar(f"metrics/{path}", float(measure.value), 0)
        writer.flush()

    def _close(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
