"""Blocked exact k-nearest neighbours on any torch device, with memory bounded by the block size.

One function, `knn`, used by SMOTE (neighbours within a class), and by the evaluators and
preprocessing helpers that need neighbours (PRDC, memorisation, de-duplication, the parent of a
resampled row)::

    distances, indices = knn(query, reference, k=5)                   # (Q, k) each, nearest first
    distances, indices = knn(x, x, k=5, exclude_self=True)             # neighbours within one set

How it works: squared Euclidean distances ``|q|^2 + |r|^2 - 2 q.r`` (both sides centred on the
reference mean; the ``|q|^2`` term, equal for all candidates of a query, is left out of the
ranking) are computed one block at a time with a matrix product (GEMM), so the work runs at
BLAS / cuBLAS speed; each block of reference rows is reduced to its ``k + 2`` best candidates with
``torch.topk`` and merged into a running top list, so at most ``block_size * reference_block_size``
distances exist at any moment, whatever the data size. The candidates' distances are then
recomputed directly as ``sum((q - r)^2)``, which removes the cancellation error of the GEMM form,
so the returned distances are accurate to the input precision, and the ``k`` best are taken by
(distance, index).

Ties: the result does not depend on the block sizes. Equal distances (duplicate rows, points on a
grid) are ordered by index, lower first, and of rows tied at the k-th place the lowest indices are
returned. The GEMM form cannot decide that (its rounding, and so its order among tied or nearly
tied rows, changes with the block sizes and the device), so a query row whose spare candidates do
not clear the k-th distance by more than a worst-case rounding bound is searched again (a second
GEMM pass over the reference, for those rows only) with the exact distance of every reference row
within that bound. On data without ties almost no row needs it; on data full of ties (a few
distinct values per column) most rows do, and the search takes up to about twice as long.
scikit-learn's brute-force search also keeps the first of tied rows it meets (lowest index, nearly
always: its heap may evict a lower one when a nearer row comes later) but orders a tie arbitrarily.

Exactness: this is an exact search, not an approximate one; with float64 input the result equals
scikit-learn's ``NearestNeighbors(algorithm="brute")`` (up to its choices within ties, above). Candidates
are *ranked* on distances in the input's precision, so in float32 two candidates whose squared
distances differ by less than about ``1e-7 * (|q|^2 + |r|^2)`` (centred norms) may swap against
the exact order, as in any GEMM-based search (scikit-learn upcasts float32 blocks to float64 to
avoid that; pass float64 for the same guarantee, at half the speed); they do so the same way
whatever the block sizes.
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
#: Candidates the first pass keeps beyond the `k` asked for, so that a near-tie or a small tie at
#: the k-th place is settled without a second pass; each more slows every block's top-k by about 2%.
_SPARE = 2


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
        distances (twice that while the candidates' distances are recomputed, and in the second pass
        over rows with ties), a centred copy of one query and one reference block
        (``(block_size + reference_block_size) * D`` values) and the running candidates
        (``Q * 2(k + 2)`` values), never ``Q * R``. The result does not depend on it.
    reference_block_size : reference rows per block (default `DEFAULT_REFERENCE_BLOCK_SIZE`, 4096).
        On a GPU larger blocks (e.g. 8192 x 8192) use it better. The result does not depend on it.
    exclude_self : `query` and `reference` are the same rows (``query[i]`` is ``reference[i]``):
        a row is not its own neighbour (as scikit-learn's ``kneighbors()`` without ``X``); other
        rows with equal values (duplicates) still are, at distance 0, lowest index first.
        (scikit-learn drops its first column instead of the row itself when a row has more than
        ``k`` lower-indexed copies, so it returns other copies then.)
    squared : return squared distances instead of distances.

    Returns
    -------
    (distances, indices) : ``(Q, k)`` each, on the query's device; distances in the query's dtype,
    ascending along each row, equal ones by ascending index; indices int64 into `reference`.

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
        blocks = (centre, reference_norms, block_size, reference_block_size, exclude_self)
        # First pass: the `width` best candidates by the GEMM form, then their exact distances, ranked
        # by (distance, index); `floor` bounds from below, up to rounding, the squared distance of every
        # row left out.
        width = min(k + _SPARE, available)
        candidates, floor, query_norms = _candidates(query, reference, width, *blocks)
        out_distances, out_indices = _rank_candidates(query, reference, candidates, k, block_size,
                                                      reference_block_size)
        if width < available:
            # A row left out may be as near as the k-th (a tie, or a near-tie within rounding): which
            # one wins then depended on the GEMM's rounding and the block sizes. Such queries are
            # searched again over every reference row within that rounding of the k-th distance.
            slack = _slack(query_norms, out_distances[:, -1], reference_norms.max(), query.dtype, query.shape[1])
            unsure = (floor - slack <= out_distances[:, -1]).nonzero().flatten()
            if unsure.numel():
                limit = out_distances[unsure, -1] - query_norms[unsure] + slack[unsure]
                out_distances[unsure], out_indices[unsure] = _settle(query, reference, unsure, limit, k, *blocks)
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


def _slack(query_norms: torch.Tensor, kth: torch.Tensor, largest_norm: torch.Tensor, dtype: torch.dtype,
           features: int) -> torch.Tensor:
    """(Q,) how far the GEMM-form squared distance (plus ``|q|^2``) of a reference row that might be as
    near as `kth` (the k-th exact squared distance) may be from its exact one, per query row.

    Both forms of ``|q - r|^2`` are within ``rel * (|q|^2 + |r|^2)`` (centred norms) of the true value,
    ``rel`` a worst-case bound for sums of `features` terms in any order, the centring's rounding
    included (float32 products may run in TF32 or bfloat16 when torch's float32 matmul precision
    allows it). A row that near has ``|r| <= |q| + sqrt(kth)`` (plus rounding), so a far outlier
    does not widen the slack."""
    unit = torch.finfo(dtype).eps / 2
    if dtype == torch.float32:
        matmul = {"highest": 0.0, "high": 2.0 ** -11, "medium": 2.0 ** -8}[torch.get_float32_matmul_precision()]
        unit = max(unit, matmul)
    rel = (6 * features + 16) * unit
    reach = (query_norms.sqrt() + kth.clamp_min(0).sqrt()).pow_(2).mul_((1 + rel) ** 2)
    return rel * (query_norms + torch.minimum(reach, largest_norm))


def _squared(query_rows: torch.Tensor, reference_rows: torch.Tensor) -> torch.Tensor:
    """``sum((q - r)^2)`` over the last dimension: the distance returned, and ranked on, for every pair."""
    return (query_rows - reference_rows).pow_(2).sum(dim=-1)


def _merge(best_d: torch.Tensor, best_i: torch.Tensor, new_d: torch.Tensor, new_i: torch.Tensor,
           k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` smallest of two candidate lists per row."""
    merged_d = torch.cat([best_d, new_d], dim=1)
    merged_i = torch.cat([best_i, new_i], dim=1)
    best_d, pick = torch.topk(merged_d, min(k, merged_d.shape[1]), dim=1, largest=False, sorted=False)
    return best_d, torch.gather(merged_i, 1, pick)


def _candidates(query: torch.Tensor, reference: torch.Tensor, width: int, centre: torch.Tensor,
                reference_norms: torch.Tensor, block_size: int, reference_block_size: int,
                exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, width) indices, ascending, of each query row's `width` nearest reference rows by the GEMM form;
    (Q,) the GEMM-form squared distance of the farthest of them (no row left out is nearer, up to
    rounding); (Q,) the query rows' centred squared norms."""
    n_query, n_reference = query.shape[0], reference.shape[0]
    out = torch.empty((n_query, width), dtype=torch.int64, device=query.device)
    floor = torch.empty(n_query, dtype=query.dtype, device=query.device)
    query_norms = torch.empty(n_query, dtype=query.dtype, device=query.device)
    for q_start in range(0, n_query, block_size):
        q_block = query[q_start:q_start + block_size] - centre
        best_d: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for r_start in range(0, n_reference, reference_block_size):
            r_block = reference[r_start:r_start + reference_block_size] - centre
            dist = _partial_distances(q_block, r_block, reference_norms, r_start)
            if exclude_self:
                _mask_self(dist, q_start, r_start)
            block_d, block_i = torch.topk(dist, min(width, dist.shape[1]), dim=1, largest=False, sorted=False)
            block_i += r_start
            if best_d is None:
                best_d, best_i = block_d, block_i
            else:
                best_d, best_i = _merge(best_d, best_i, block_d, block_i, width)
            # Free this block before the next one is allocated, so only one block exists at a time.
            del dist, r_block
        rows = slice(q_start, q_start + q_block.shape[0])
        query_norms[rows] = q_block.pow_(2).sum(dim=1)
        floor[rows] = best_d.amax(dim=1) + query_norms[rows]
        out[rows] = best_i.sort(dim=1).values
    return out, floor, query_norms


def _partial_distances(q_block: torch.Tensor, r_block: torch.Tensor, reference_norms: torch.Tensor,
                       r_start: int) -> torch.Tensor:
    """``|r|^2 - 2 q.r`` for a block of centred query and reference rows, in one GEMM (addmm).

    ``|q|^2`` is the same for every candidate of a query row, so it cannot change the ranking and is
    left out: one pass less over the block."""
    return torch.addmm(reference_norms[r_start:r_start + r_block.shape[0]].unsqueeze(0), q_block, r_block.T,
                       alpha=-2.0)


def _rank_candidates(query: torch.Tensor, reference: torch.Tensor, candidates: torch.Tensor, k: int,
                     block_size: int, reference_block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact squared distances of the candidates (indices ascending per row) and the `k` best of
    them by (distance, index), nearest first."""
    n_query, width = candidates.shape
    out_distances = torch.empty((n_query, k), dtype=query.dtype, device=query.device)
    out_indices = torch.empty((n_query, k), dtype=torch.int64, device=query.device)
    # (rows, width, D) differences at a time, at most as many values as one block of distances: width
    # * D times a block's rows would dwarf the distance block for wide rows (images).
    recompute_rows = max(1, min(block_size, block_size * reference_block_size // (width * max(1, query.shape[1]))))
    for start in range(0, n_query, recompute_rows):
        rows = slice(start, start + recompute_rows)
        # A stable sort of candidates in index order: equal distances stay lowest index first.
        exact, order = torch.sort(_squared(query[rows].unsqueeze(1), reference[candidates[rows]]), dim=1,
                                  stable=True)
        out_distances[rows] = exact[:, :k]
        out_indices[rows] = torch.gather(candidates[rows], 1, order[:, :k])
    return out_distances, out_indices


def _settle(query: torch.Tensor, reference: torch.Tensor, unsure: torch.Tensor, limit: torch.Tensor, k: int,
            centre: torch.Tensor, reference_norms: torch.Tensor, block_size: int, reference_block_size: int,
            exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest reference rows of the query rows `unsure` by (exact distance, index), nearest
    first, computing exact distances only of the pairs whose GEMM form is at most `limit` (per row)."""
    out_distances = torch.empty((unsure.numel(), k), dtype=query.dtype, device=query.device)
    out_indices = torch.empty((unsure.numel(), k), dtype=torch.int64, device=query.device)
    for start in range(0, unsure.numel(), block_size):
        own = unsure[start:start + block_size]
        q_rows = query[own]
        q_block = q_rows - centre
        row_limit = limit[start:start + block_size].unsqueeze(1)
        best_d = torch.full((own.numel(), k), float("inf"), dtype=query.dtype, device=query.device)
        best_i = torch.full((own.numel(), k), reference.shape[0], dtype=torch.int64, device=query.device)
        for r_start in range(0, reference.shape[0], reference_block_size):
            r_rows = reference[r_start:r_start + reference_block_size]
            near = _partial_distances(q_block, r_rows - centre, reference_norms, r_start) <= row_limit
            if exclude_self:
                mine = ((own >= r_start) & (own < r_start + near.shape[1])).nonzero().flatten()
                near[mine, own[mine] - r_start] = False
            cols, flat_near = near.shape[1], near.view(-1)
            # A pair costs 3 * D values (two gathered rows, their difference) and a few indices: as
            # many pairs at a time as fit in one block of distances; all at once when they fit (the
            # usual case: a few per row).
            chunk = max(1, near.numel() // (3 * query.shape[1] + 8))
            if int(torch.count_nonzero(near)) <= chunk:
                pieces = [_set_positions(flat_near)]
            else:
                pieces = (flat_near[s:s + chunk].nonzero().flatten() + s for s in range(0, near.numel(), chunk))
            for pairs in pieces:
                if pairs.numel():
                    rows, columns = pairs // cols, pairs % cols
                    best_d, best_i = _merge_pairs(best_d, best_i, rows, _squared(q_rows[rows], r_rows[columns]),
                                                  columns + r_start)
        out_distances[start:start + own.numel()] = best_d
        out_indices[start:start + own.numel()] = best_i
    return out_distances, out_indices


def _set_positions(flags: torch.Tensor) -> torch.Tensor:
    """The positions, ascending, of the set entries of a flat, mostly clear bool tensor: its bytes are
    scanned eight at a time, as int64 words (several times faster than ``nonzero`` on every byte)."""
    whole = flags.numel() - flags.numel() % 8
    hit = (flags[:whole].view(torch.int64) != 0).nonzero().flatten()
    bytes_of_hits = (hit.unsqueeze(1) * 8 + torch.arange(8, device=flags.device)).flatten()
    return torch.cat([bytes_of_hits[flags[bytes_of_hits]], flags[whole:].nonzero().flatten() + whole])


def _merge_pairs(best_d: torch.Tensor, best_i: torch.Tensor, rows: torch.Tensor, distances: torch.Tensor,
                 indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (rows, k) best by (distance, index) of a kept list, ordered so, and of new (row, distance,
    index) entries whose indices ascend within a row and are all above the kept ones'."""
    n_rows, k = best_d.shape
    rows = torch.cat([torch.arange(n_rows, device=rows.device).repeat_interleave(k), rows])
    distances = torch.cat([best_d.flatten(), distances])
    indices = torch.cat([best_i.flatten(), indices])
    # Two stable sorts give (row, distance, position) order; positions follow the indices.
    order = torch.sort(distances, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    rows, distances, indices = rows[order], distances[order], indices[order]
    # Every row has its k kept entries: the first k of row r start at r's first position.
    first = torch.searchsorted(rows, torch.arange(n_rows, device=rows.device))
    take = (first.unsqueeze(1) + torch.arange(k, device=rows.device)).flatten()
    return distances[take].view(n_rows, k), indices[take].view(n_rows, k)


def _mask_self(dist: torch.Tensor, q_start: int, r_start: int) -> None:
    """Set the distance of each query row to itself to +inf inside one block (in place)."""
    rows, cols = dist.shape
    first = max(q_start, r_start)
    last = min(q_start + rows, r_start + cols)
    if first >= last:
        return
    diagonal = torch.arange(first, last, device=dist.device)
    dist[diagonal - q_start, diagonal - r_start] = float("inf")
