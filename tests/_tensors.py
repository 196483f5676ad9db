"""A recorder of the tensors a call creates, for tests that bound a function's temporary memory."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


class TensorRecorder(TorchFunctionMode):
    """Inside ``with TensorRecorder() as mode:``, `tensors` lists ``(values, storage address)`` of
    every tensor a torch function returned (views share their base's address)."""

    def __init__(self) -> None:
        super().__init__()
        self.tensors: list[tuple[int, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(value, torch.Tensor):
                self.tensors.append((value.numel(), value.untyped_storage().data_ptr()))
        return result

    def largest(self, besides: set[int] = frozenset()) -> int:
        """The most values of one recorded tensor whose storage is not in `besides` (inputs, the output)."""
        return max(n for n, storage in self.tensors if storage not in besides)
