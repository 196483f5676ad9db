"""Blocked exact k-nearest neighbours on any torch device, with memory bounded by the block size.

One function, `knn`, used by SMOTE (neighbours within a class), and by the evaluators and
preprocessing helpers that need neighbours (PRDC, memorisation, de-duplication, the parent of a
resampled row)::

    distances, indices = knn(query, reference, k=5)                   # (Q, k) each, nearest first
    distances, indices = knn(x, x, k=5, exclude_self=True)             # neighbours within one set

How it works: squared Euclidean distances ``|q|^2 + |r|^2 - 2 q.r`` (both sides centred on the
reference mean; the ``|q|^2`` term, equal for all candidates of a query, is left out of the
ranking) are computed one block at a time with a matrix product (GEMM), so the work runs at
BLAS / cuBLAS speed; each block of reference rows is reduced to its ``k`` best candidates with
``torch.topk`` and merged into a running top-k, so at most ``block_size * reference_block_size``
distances exist at any moment, whatever the data size. The winners' distances are then recomputed
directly as ``sum((q - r)^2)``, which removes the cancellation error of the GEMM form, so the
returned distances are accurate to the input precision.

Exactness: this is an exact search, not an approximate one; with float64 input and no ties the
result equals scikit-learn's ``NearestNeighbors(algorithm="brute")``. Candidates are *ranked* in
the input's precision, so in float32 two candidates whose squared distances differ by less than
about ``1e-7 * (|q|^2 + |r|^2)`` (centred norms) may swap, as in any GEMM-based search
(scikit-learn upcasts float32 blocks to float64 to avoid that; pass float64 for the same
guarantee, at half the speed). Among exactly tied candidates the order may differ, and so may
which of them are returned when they straddle the k-th place: the GEMM's rounding, and so the
tie-break, changes with the block sizes and the device.
"""

from __future__ import annotations

import torch

__all__ = ["knn", "DEFAULT_BLOCK_SIZE", "DEFAULT_REFERENCE_BLOCK_SIZE"]

#: Query rows per block.
DEFAULT_BLOCK_SIZE = 1024
#: Reference rows per block. A block of distances is then 1024 x 4096 float32 = 16 MiB: on CPUs
#: this shape ranks faster than square 4096 x 4096 blocks (the block stays closer to cache between
#: the GEMM that writes it and the top-k that reads it), and it bounds memory tighter.
DEFAULT_REFERENCE_BLOCK_SIZE = 4096


def knn(query: torch.Tensor, reference: torch.Tensor, k: int, *, block_size: int = DEFAULT_BLOCK_SIZE,
        reference_block_size: int | None = None, exclude_self: bool = False,
        squared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` nearest rows of `reference` for every row of `query` (Euclidean distance).

    Parameters
    ----------
    query : (Q, D) floating tensor. Rows of any trailing shape are flattened (``(Q, C, H, W)`` works).
    reference : (R, D) floating tensor on the same device and of the same dtype as `query`.
    k : neighbours per query row, ``1 <= k <= R`` (``R - 1`` with `exclude_self`).
    block_size : query rows per block; memory is bounded by ``block_size * reference_block_size``
        distances (twice that while the winners' distances are recomputed), a centred copy of one
        query and one reference block (``(block_size + reference_block_size) * D`` values) and the
        running top-k (``Q * 2k`` values), never ``Q * R``.
    reference_block_size : reference rows per block (default `DEFAULT_REFERENCE_BLOCK_SIZE`, 4096).
        On a GPU larger blocks (e.g. 8192 x 8192) use it better.
    exclude_self : `query` and `reference` are the same rows (``query[i]`` is ``reference[i]``):
        a row is not its own neighbour (as scikit-learn's ``kneighbors()`` without ``X``); other
        rows with equal values (duplicates) still are, at distance 0.
    squared : return squared distances instead of distances.

    Returns
    -------
    (distances, indices) : ``(Q, k)`` each, on the query's device; distances in the query's dtype,
    ascending along each row; indices int64 into `reference`.

    Raises
    ------
    ValueError : on bad shapes, devices or `k`, a row holding NaN or infinity (naming it), or squared
        distances beyond the dtype's range (float32: values about 1e19 from the mean).
    """
    if query.ndim < 2 or reference.ndim < 2:
        raise ValueError(f"knn needs (N, D) tensors, got query {tuple(query.shape)} and reference {tuple(reference.shape)}")
    # flatten(1), not reshape(N, -1): a set of 0 rows cannot infer the -1
    query, reference = query.flatten(1), reference.flatten(1)
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"knn: query has {query.shape[1]} features, reference {reference.shape[1]}")
    if query.device != reference.device:
        raise ValueError(f"knn: query on {query.device}, reference on {reference.device}; put both on one device")
    if not query.dtype.is_floating_point:
        raise ValueError(f"knn needs floating tensors, got {query.dtype}")
    reference = reference.to(query.dtype)
    n_query, n_reference = query.shape[0], reference.shape[0]
    if exclude_self and n_query != n_reference:
        raise ValueError(f"knn: exclude_self needs query and reference to be the same rows, "
                         f"got {n_query} and {n_reference}")
    available = n_reference - int(exclude_self)
    if not 1 <= k <= available:
        raise ValueError(f"knn: k must be between 1 and {available} (reference rows"
                         f"{' minus the row itself' if exclude_self else ''}), got {k}")
    if block_size < 1 or (reference_block_size is not None and reference_block_size < 1):
        raise ValueError("knn: block sizes must be >= 1")
    reference_block_size = reference_block_size or DEFAULT_REFERENCE_BLOCK_SIZE

    with torch.no_grad():
        # One NaN in `reference` makes the centre, and so every distance, NaN: topk then ranks at
        # random and may return a row as its own neighbour. Refuse instead of answering wrongly.
        _check_finite(query, "query")
        _check_finite(reference, "reference")
        # Distances do not change under a shift; centring both sides on the reference mean keeps the
        # norms small, so the GEMM form |q|^2 + |r|^2 - 2 q.r loses little to cancellation (data far
        # from the origin would otherwise pick wrong neighbours in float32). Shifted per block, so no
        # centred copy of the data is ever held.
        centre = reference.mean(dim=0)
        reference_norms = torch.cat([(reference[i:i + reference_block_size] - centre).pow_(2).sum(dim=1)
                                     for i in range(0, n_reference, reference_block_size)])
        if not bool(torch.isfinite(reference_norms).all()):
            raise _overflow(query.dtype)
        candidates = _candidates(query, reference, centre, reference_norms, k, block_size, reference_block_size,
                                 exclude_self)
        # Exact distances of the winners (no cancellation), sorted ascending, block by block.
        out_distances = torch.empty((n_query, k), dtype=query.dtype, device=query.device)
        out_indices = torch.empty((n_query, k), dtype=torch.int64, device=query.device)
        # (rows, k, D) differences at a time, at most as many values as one block of distances: k * D
        # times a block's rows would dwarf the distance block for wide rows (images).
        recompute_rows = max(1, min(block_size, block_size * reference_block_size // (k * max(1, query.shape[1]))))
        for start in range(0, n_query, recompute_rows):
            rows = slice(start, start + recompute_rows)
            exact = (query[rows].unsqueeze(1) - reference[candidates[rows]]).pow_(2).sum(dim=2)
            exact, order = torch.sort(exact, dim=1, stable=True)
            out_distances[rows] = exact
            out_indices[rows] = torch.gather(candidates[rows], 1, order)
        if not bool(torch.isfinite(out_distances).all()):
            raise _overflow(query.dtype)
    if not squared:
        out_distances.sqrt_()
    return out_distances, out_indices


def _check_finite(rows: torch.Tensor, name: str) -> None:
    """A ValueError naming the first row of `rows` (2-D) that holds NaN or an infinite value."""
    # A row sum is finite when the row is, barring overflow: only suspect rows are checked per value.
    suspect = (~torch.isfinite(rows.sum(dim=1))).nonzero().flatten()
    if suspect.numel():
        bad = suspect[~torch.isfinite(rows[suspect]).all(dim=1)]
        if bad.numel():
            raise ValueError(f"knn: {name} row {int(bad[0])} holds NaN or infinite values; clean or impute them first")


def _overflow(dtype: torch.dtype) -> ValueError:
    """The error for squared distances beyond `dtype`'s range (inf ranks at random, self included)."""
    return ValueError(f"knn: squared distances overflow {dtype} (values too far from the data's mean for its "
                      f"range); rescale the rows or pass float64")


def _merge(best_d: torch.Tensor, best_i: torch.Tensor, new_d: torch.Tensor, new_i: torch.Tensor,
           k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` smallest of two candidate lists per row."""
    merged_d = torch.cat([best_d, new_d], dim=1)
    merged_i = torch.cat([best_i, new_i], dim=1)
    best_d, pick = torch.topk(merged_d, min(k, merged_d.shape[1]), dim=1, largest=False, sorted=False)
    return best_d, torch.gather(merged_i, 1, pick)


def _candidates(query: torch.Tensor, reference: torch.Tensor, centre: torch.Tensor, reference_norms: torch.Tensor,
                k: int, block_size: int, reference_block_size: int, exclude_self: bool) -> torch.Tensor:
    """(Q, k) indices of each query row's k nearest reference rows, by the GEMM form."""
    n_query, n_reference = query.shape[0], reference.shape[0]
    out = torch.empty((n_query, k), dtype=torch.int64, device=query.device)
    for q_start in range(0, n_query, block_size):
        q_block = query[q_start:q_start + block_size] - centre
        best_d: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for r_start in range(0, n_reference, reference_block_size):
            r_block = reference[r_start:r_start + reference_block_size] - centre
            # |r|^2 - 2 q.r in one GEMM (addmm). |q|^2 is the same for every candidate of a query
            # row, so it cannot change the ranking and is left out: one pass less over the block.
            dist = torch.addmm(reference_norms[r_start:r_start + r_block.shape[0]].unsqueeze(0), q_block,
                               r_block.T, alpha=-2.0)
            if exclude_self:
                _mask_self(dist, q_start, r_start)
            block_d, block_i = torch.topk(dist, min(k, dist.shape[1]), dim=1, largest=False, sorted=False)
            block_i += r_start
            if best_d is None:
                best_d, best_i = block_d, block_i
            else:
                best_d, best_i = _merge(best_d, best_i, block_d, block_i, k)
            # Free this block before the next one is allocated, so only one block exists at a time.
            del dist, r_block
        out[q_start:q_start + q_block.shape[0]] = best_i
    return out


def _mask_self(dist: torch.Tensor, q_start: int, r_start: int) -> None:
    """Set the distance of each query row to itself to +inf inside one block (in place)."""
    rows, cols = dist.shape
    first = max(q_start, r_start)
    last = min(q_start + rows, r_start + cols)
    if first >= last:
        return
    diagonal = torch.arange(first, last, device=dist.device)
    dist[diagonal - q_start, diagonal - r_start] = float("inf")
