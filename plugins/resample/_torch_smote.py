"""SMOTE in torch, on any device, with memory bounded by the neighbour search's block size.

The algorithm is imbalanced-learn's (Chawla et al. 2002): for each class to over-sample, find
each row's ``k`` nearest same-class rows; then, ``n`` times, draw a (row, neighbour) pair
uniformly among the class's ``rows * k`` pairs and a step ``u ~ U[0, 1)``, and emit
``row + u * (neighbour - row)``. The draws come from the given ``torch.Generator``, so results
differ from imbalanced-learn's (which uses numpy's RandomState) while the counts are the same.

Memory: the neighbour search (`setforge.plugins._shared.knn.knn`) holds one block of
``block_size x 4096`` distances at a time (16 MiB by default) instead of imbalanced-learn's
chunks of up to 1 GiB; the neighbours that new rows step towards are gathered in chunks of as
many values; besides that, the class's rows, their ``(rows, k)`` neighbour table, the new rows
(written straight into one preallocated output) and three indices and a step per new row.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from setforge.plugins._shared.knn import DEFAULT_BLOCK_SIZE, DEFAULT_REFERENCE_BLOCK_SIZE, knn

__all__ = ["torch_smote"]


def torch_smote(x: torch.Tensor, y: torch.Tensor, targets: Mapping[int, int], k: int = 5, *,
                generator: torch.Generator | None = None,
                block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New rows for each class in `targets` (``{class id: rows to add}``), SMOTE-style.

    Parameters
    ----------
    x : (N, D) float tensor, the rows (any device).
    y : (N,) int64 labels on the same device.
    targets : rows to add per class id (imbalanced-learn's ``sampling_strategy_``).
    k : nearest same-class neighbours per row; every class in `targets` with rows to add needs
        more than `k` rows (the caller checks and explains).
    generator : the random source (on `x`'s device).
    block_size : rows per block of the neighbour search; the result does not depend on it (neighbours
        tied in distance are taken lowest index first).

    Returns
    -------
    (new_x, new_y, parent): ``(M, D)`` rows in `x`'s dtype, ``(M,)`` labels and ``(M,)`` the index
    in `x` of each new row's seed row, classes in the order of `targets`.
    """
    device = x.device
    wanted = {int(label): int(n) for label, n in targets.items() if n > 0}
    total = sum(wanted.values())
    # One preallocated output: no per-class pieces to concatenate (which would double the peak).
    new_x = torch.empty((total, x.shape[1]), dtype=x.dtype, device=device)
    new_y = torch.empty(total, dtype=torch.int64, device=device)
    parent = torch.empty(total, dtype=torch.int64, device=device)
    # As many neighbour rows per chunk as the neighbour search holds distances per block.
    chunk_rows = max(1, block_size * DEFAULT_REFERENCE_BLOCK_SIZE // max(1, x.shape[1]))
    start = 0
    for label, n_new in wanted.items():
        members = (y == label).nonzero().flatten()
        if members.numel() < k + 1:
            raise ValueError(f"class {label} has {members.numel()} rows, fewer than k + 1 = {k + 1}")
        x_class = x[members]
        _, neighbours = knn(x_class, x_class, k, block_size=block_size, exclude_self=True)
        pair = torch.randint(0, members.numel() * k, (n_new,), generator=generator, device=device)
        steps = torch.rand((n_new, 1), generator=generator, device=device, dtype=x.dtype)
        rows = torch.div(pair, k, rounding_mode="floor")
        partners = neighbours[rows, pair % k]
        out = new_x[start:start + n_new]
        torch.index_select(x_class, 0, rows, out=out)
        # seed + u * (neighbour - seed), a chunk of rows at a time: the neighbours of all the new rows
        # gathered at once would be a second copy of the output, doubling the peak.
        for chunk in range(0, n_new, chunk_rows):
            part = slice(chunk, chunk + chunk_rows)
            out[part].lerp_(x_class[partners[part]], steps[part])
        new_y[start:start + n_new] = label
        parent[start:start + n_new] = members[rows]
        start += n_new
    return new_x, new_y, parent
