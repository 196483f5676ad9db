"""Explicit randomness: every step and evaluator gets its own `Rng`, none touches a global RNG."""

from __future__ import annotations

import zlib
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Rng"]


def _key_part(part: int | str) -> int:
    """Map a key part to a non-negative int; strings (evaluator names) through a stable CRC32."""
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    if isinstance(part, (bool,)) or not isinstance(part, (int, np.integer)) or part < 0:
        raise ValueError(f"an Rng key part must be a non-negative int or a str, got {part!r}")
    return int(part)


class Rng:
    """The randomness of one step or evaluator, derived from the run seed and a key.

    Built from ``numpy.random.SeedSequence([seed, *key])`` so that two keys never share a
    stream and a step's draws do not depend on what ran before it.

    - ``.torch``: a ``torch.Generator`` on the run's device (created on first use),
    - ``.numpy``: a ``numpy.random.Generator``,
    - ``.sk_seed()``: an int for scikit-learn and imbalanced-learn,
    - ``.spawn(key)``: a child ``Rng`` with one more key part.
    """

    def __init__(self, seed: int, key: tuple[int | str, ...] = (), device: Any = "cpu"):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        self.seed = int(seed)
        self.key = tuple(key)
        self.device = device
        self._sequence = np.random.SeedSequence([self.seed, *(_key_part(p) for p in self.key)])

    def __repr__(self) -> str:
        return f"Rng(seed={self.seed}, key={self.key!r}, device={str(self.device)!r})"

    @cached_property
    def torch(self) -> "torch.Generator":
        import torch

        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(self._sequence.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        return generator

    @cached_property
    def numpy(self) -> np.random.Generator:
        return np.random.default_rng(self._sequence.spawn(1)[0])

    def sk_seed(self) -> int:
        """An int in [0, 2**31) for scikit-learn and imbalanced-learn (which reject Generators).

        Always the same int for the same seed and key, however often it is called.
        """
        return int(self._sequence.generate_state(2, np.uint32)[1] >> np.uint32(1))

    def spawn(self, key: int | str) -> "Rng":
        """A child `Rng` keyed by this one's key plus `key`, on the same device."""
        return Rng(self.seed, (*self.key, key), device=self.device)
