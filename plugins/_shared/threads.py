"""How many CPU threads a small model trains on.

A batch of a small model is too little work to share out across threads: torch's thread pool
then costs more than it saves, and on a busy machine it makes each tiny step tens of times slower
(measured here: a digits-sized CNN epoch 0.8 s on one thread vs 9-13 s on two under load). So the
classifiers and the GAN loop train on one CPU thread while their per-step work is below a bound,
and restore the setting afterwards. Nothing changes on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["one_thread_if_small"]


@contextlib.contextmanager
def one_thread_if_small(step_macs: int, limit: int, device: torch.device) -> Iterator[None]:
    """Use one CPU thread inside the block when `step_macs` (multiply-adds per step) <= `limit`."""
    if device.type != "cpu" or step_macs > limit or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
