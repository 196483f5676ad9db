"""Exact and near-duplicate rows: within one set (de-duplication) and across two (split leakage).

Used by the ``deduplicate`` resampler, the ``leakage`` evaluator and the pipeline's pre-split
de-duplication (``source.deduplicate``) and ``split.drop_leaked``, so all of them agree on what a
duplicate is::

    space = DistanceSpace.fit(ds.x, ds.modality, "auto", categorical=ds.features.categorical_indices)
    dup_of = duplicate_of(ds.x, method="near", threshold=0.05, space=space)   # -1: kept, else the kept row
    match = cross_match(train.x, test.x, threshold=0.05, space=space)         # each train row vs test

What counts as a duplicate:

- **exact**: every value equal (``0.0 == -0.0``); for text, the same string.
- **near**: the root-mean-square difference per value in the feature space is below `threshold`
  (``|a - b| / sqrt(D)``), so one threshold means the same for 8x8 and 64x64 images. The space is
  ``raw`` (values as they are: images in [0, 1]) or ``standardized`` (each numeric column
  centred and divided by its standard deviation, fitted on the rows given to
  `DistanceSpace.fit`); ``auto`` is ``standardized`` for tabular data and ``raw`` otherwise.
  Categorical columns never enter a distance: two rows are near-duplicates only when their
  categorical columns are equal.

Within one set the kept rows are chosen greedily in priority order (lower ``priority`` first, then
row order): a row is dropped when it is a duplicate of a row already kept, so no two kept rows are
duplicates and every dropped row names the closest kept row ranked before it. (Connected components would
collapse a chain of slowly changing rows into one; greedy keeps every row farther than the
threshold from all kept rows.) Exact copies are collapsed first (one sort, ``torch.unique``), so a
thousand copies of one row cost one neighbour search.

Neighbour search is `setforge.plugins._shared.knn.knn` (blocked exact k-NN on the data's device):
for each row the nearest ``k`` rows, with ``k`` doubled for the rows whose k-th neighbour is still
within the threshold, so dense clusters are found completely without an ``N x N`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .columns import column_stats
from .knn import DEFAULT_BLOCK_SIZE, knn

__all__ = ["SPACES", "DistanceSpace", "exact_ids", "duplicate_of", "cross_match", "CrossMatch"]

SPACES = ("auto", "raw", "standardized")
_FIRST_K = 8


@dataclass(frozen=True)
class DistanceSpace:
    """Where near-duplicate distances are measured (the evaluators' embedding of rows into
    features is `evaluate._features.FeatureSpace`; both standardise columns by `column_stats`).

    ``numeric``: the columns (of the flattened row) that enter distances; ``categorical``: the
    columns that must be equal instead; ``center`` / ``scale``: per numeric column (None for
    ``raw``). `embed` maps rows to vectors whose Euclidean distance is the RMS difference per value.
    """

    kind: str
    numeric: torch.Tensor
    categorical: torch.Tensor
    center: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    @classmethod
    def fit(cls, x: torch.Tensor, modality: str, space: str = "auto",
            categorical: Sequence[int] = ()) -> "DistanceSpace":
        """The space for rows like `x` (statistics of ``standardized`` are taken from `x`)."""
        if space not in SPACES:
            raise ValueError(f"feature space must be one of {list(SPACES)}, got {space!r}")
        if modality == "text" or not isinstance(x, torch.Tensor):
            raise ValueError("near-duplicates need numeric rows; text data has exact duplicates only")
        kind = ("standardized" if modality == "tabular" else "raw") if space == "auto" else space
        flat = x.flatten(1)
        width = flat.shape[1]
        cat = sorted({int(c) for c in categorical})
        is_cat = torch.zeros(width, dtype=torch.bool)
        is_cat[cat] = True
        numeric = (~is_cat).nonzero().flatten().to(x.device)
        categorical_t = is_cat.nonzero().flatten().to(x.device)
        center = scale = None
        if kind == "standardized" and numeric.numel():
            center, scale = column_stats(flat[:, numeric])
        return cls(kind, numeric, categorical_t, center, scale)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 ``(N, D_numeric)`` rows whose Euclidean distances are RMS differences per value."""
        flat = x.flatten(1)
        values = flat[:, self.numeric.to(x.device)]
        if self.center is not None and self.scale is not None:
            values = (values.double() - self.center.to(x.device)) / self.scale.to(x.device)
        width = max(int(self.numeric.numel()), 1)
        return (values / math.sqrt(width)).to(torch.float32)

    def categories(self, x: torch.Tensor) -> torch.Tensor | None:
        """The categorical columns of `x` (``(N, C)``), or None when there are none."""
        if self.categorical.numel() == 0:
            return None
        return x.flatten(1)[:, self.categorical.to(x.device)]


def exact_ids(x: torch.Tensor | Sequence[str]) -> torch.Tensor:
    """``(N,)`` int64 ids, equal exactly for equal rows (equal strings for text), numbered 0..G-1."""
    if isinstance(x, torch.Tensor):
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.int64, device=x.device)
        rows = x.reshape(x.shape[0], -1)
        if rows.dtype.is_floating_point:
            rows = rows + 0.0  # turns -0.0 into 0.0, so the two compare (and sort) as one value
        _, inverse = torch.unique(rows, dim=0, return_inverse=True)
        return inverse.to(torch.int64)
    seen: dict[str, int] = {}
    return torch.tensor([seen.setdefault(s, len(seen)) for s in x], dtype=torch.int64)


def _first_of_group(ids: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """For each row, the row of its group with the lowest `rank`."""
    n = ids.numel()
    groups = int(ids.max()) + 1 if n else 0
    best = torch.full((groups,), n, dtype=torch.int64, device=ids.device)
    best.scatter_reduce_(0, ids, rank, reduce="amin")
    order = torch.empty_like(rank)
    order[rank] = torch.arange(n, device=ids.device)  # rank -> row
    return order[best[ids]]


def _partitions(*keys: torch.Tensor | None) -> torch.Tensor | None:
    """Ids of rows that agree on every given key (labels, categorical columns); None for one partition."""
    parts = [k.reshape(k.shape[0], -1).to(torch.float64) for k in keys if k is not None]
    if not parts:
        return None
    return exact_ids(torch.cat(parts, dim=1))


def _pairs_within(emb: torch.Tensor, threshold: float, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pair ``(i, j)``, ``i != j``, of rows of `emb` closer than `threshold` (both orders)."""
    n = emb.shape[0]
    empty = torch.zeros(0, dtype=torch.int64, device=emb.device)
    if n < 2:
        return empty, empty, torch.zeros(0, dtype=emb.dtype, device=emb.device)
    rows_i, rows_j, dists = [], [], []
    todo = torch.arange(n, device=emb.device)
    k = min(_FIRST_K, n - 1)
    while todo.numel():
        if todo.numel() == n:
            d, j = knn(emb, emb, k, exclude_self=True, block_size=block_size)
        else:
            # Queries are a subset: ask for one more and drop each row's own index.
            d, j = knn(emb[todo], emb, min(k + 1, n), block_size=block_size)
            own = j == todo.unsqueeze(1)
            d = d.masked_fill(own, float("inf"))
        close = d < threshold
        i = todo.unsqueeze(1).expand_as(j)
        rows_i.append(i[close])
        rows_j.append(j[close])
        dists.append(d[close])
        # Rows whose every candidate was close may have more neighbours: search again with 2k.
        full = close.sum(dim=1) >= k
        if k >= n - 1 or not bool(full.any()):
            break
        todo, k = todo[full], min(2 * k, n - 1)
        # Pairs found for these rows are found again with the larger k; keep the last search only.
        keep = ~torch.isin(rows_i[-1], todo)
        rows_i[-1], rows_j[-1], dists[-1] = rows_i[-1][keep], rows_j[-1][keep], dists[-1][keep]
    return torch.cat(rows_i), torch.cat(rows_j), torch.cat(dists)


def duplicate_of(x: torch.Tensor | Sequence[str], *, method: str = "near", threshold: float = 0.05,
                 space: DistanceSpace | None = None, modality: str | None = None,
                 priority: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> torch.Tensor:
    """For each row, -1 when it is kept, else the index of the kept row it duplicates.

    `method`: ``exact`` or ``near``. `space`: for ``near`` (default: `DistanceSpace.fit` on `x`
    with ``auto``, which needs `modality`). `priority`: ``(N,)`` integers, lower kept first (e.g.
    real rows before derived ones); ties by row order. `labels`: when given, only rows of one
    label can be duplicates of each other. Runs on `x`'s device.
    """
    if method not in ("exact", "near"):
        raise ValueError(f"method must be 'exact' or 'near', got {method!r}")
    is_tensor = isinstance(x, torch.Tensor)
    device = x.device if is_tensor else torch.device("cpu")
    n = x.shape[0] if is_tensor else len(x)
    priority = torch.zeros(n, dtype=torch.int64, device=device) if priority is None else priority.to(device)
    # rank: position of each row in keep-order (priority, then index)
    order = torch.argsort(priority.to(torch.int64) * (n + 1) + torch.arange(n, device=device), stable=True)
    rank = torch.empty(n, dtype=torch.int64, device=device)
    rank[order] = torch.arange(n, device=device)

    ids = exact_ids(x)
    key = _partitions(labels.to(device) if labels is not None else None)
    if key is not None:
        ids = exact_ids(torch.stack([ids.to(device), key], dim=1))
    first = _first_of_group(ids.to(device), rank) if n else ids.to(device)
    result = torch.where(first == torch.arange(n, device=device), -1, first)
    if method == "exact" or n < 2:
        return result
    if not is_tensor:
        raise ValueError("near-duplicates need numeric rows; text data has exact duplicates only (method: exact)")
    if space is None:
        if modality is None:
            raise ValueError("duplicate_of(method='near') needs a DistanceSpace or the modality")
        space = DistanceSpace.fit(x, modality)
    reps = (result == -1).nonzero().flatten()
    parts = _partitions(labels.to(device)[reps] if labels is not None else None, space.categories(x[reps]))
    emb = space.embed(x[reps])
    part_ids = torch.zeros(reps.numel(), dtype=torch.int64, device=device) if parts is None else parts
    src, dst, dist = [], [], []
    for part in torch.unique(part_ids).tolist():
        members = (part_ids == part).nonzero().flatten()
        i, j, d = _pairs_within(emb[members], threshold, block_size)
        src.append(reps[members[i]])
        dst.append(reps[members[j]])
        dist.append(d)
    src, dst, dist = torch.cat(src), torch.cat(dst), torch.cat(dist)
    rep_dup = _greedy(src, dst, dist, rank)
    copies = (result >= 0) & (rep_dup[result.clamp(min=0)] >= 0)
    result = torch.where(result >= 0, result, rep_dup)
    if bool(copies.any()):
        result[copies] = _closest_kept(copies.nonzero().flatten(), result[copies], src, dst, dist, rank,
                                       result == -1)
    return result


def _closest_kept(rows: torch.Tensor, reps: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                  dist: torch.Tensor, rank: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """For exact copies (`rows`) of dropped representatives (`reps`): the closest kept row ranked
    before the copy, from the representative's neighbour pairs (a copy is where its rep is)."""
    usable = kept[dst]
    src_np, dst_np, dist_np = src[usable].cpu().numpy(), dst[usable].cpu().numpy(), dist[usable].cpu().numpy()
    rank_np = rank.cpu().numpy()
    order = np.argsort(src_np, kind="stable")
    src_np, dst_np, dist_np = src_np[order], dst_np[order], dist_np[order]
    out = []
    for row, rep in zip(rows.tolist(), reps.tolist()):
        lo, hi = np.searchsorted(src_np, rep, "left"), np.searchsorted(src_np, rep, "right")
        cand, d = dst_np[lo:hi], dist_np[lo:hi]
        before = rank_np[cand] < rank_np[row]
        # The rep itself was dropped next to a kept row ranked before it, so `before` is never empty.
        out.append(int(cand[before][np.argmin(d[before])]))
    return torch.tensor(out, dtype=torch.int64, device=rows.device)


def _greedy(src: torch.Tensor, dst: torch.Tensor, dist: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Keep rows in rank order unless a kept earlier row is a near-duplicate; -1 or the kept row."""
    n = rank.numel()
    out = np.full(n, -1, dtype=np.int64)
    if src.numel() == 0:
        return torch.as_tensor(out, device=rank.device)
    earlier = rank[dst] < rank[src]
    src, dst, dist = src[earlier], dst[earlier], dist[earlier]
    # The closest kept row wins: each row's earlier neighbours in order of distance (the stable
    # sort by rank below keeps this order within a row).
    order = torch.argsort(dist, stable=True)
    src, dst = src[order], dst[order]
    order = torch.argsort(rank[src], stable=True)
    src_np, dst_np = src[order].cpu().numpy(), dst[order].cpu().numpy()
    starts = np.flatnonzero(np.r_[True, src_np[1:] != src_np[:-1]])
    ends = np.r_[starts[1:], len(src_np)]
    for begin, end in zip(starts.tolist(), ends.tolist()):
        row = src_np[begin]
        candidates = dst_np[begin:end]
        kept = candidates[out[candidates] < 0]
        if kept.size:
            out[row] = kept[0]
    return torch.as_tensor(out, device=rank.device)


@dataclass(frozen=True)
class CrossMatch:
    """Each query row against a reference set.

    ``exact``: ``(Q,)`` bool, an exact copy is in the reference; ``exact_index``: the first such
    reference row (-1 where none); ``distance`` / ``index``: the nearest reference row (RMS
    difference in the feature space; inf / -1 where none, e.g. no row with equal categories);
    ``near``: ``distance < threshold`` (exact copies included).
    """

    exact: torch.Tensor
    exact_index: torch.Tensor
    distance: torch.Tensor
    index: torch.Tensor
    near: torch.Tensor
    threshold: float


def cross_match(query: torch.Tensor | Sequence[str], reference: torch.Tensor | Sequence[str], *,
                threshold: float = 0.05, space: DistanceSpace | None = None, modality: str | None = None,
                near: bool = True, block_size: int = DEFAULT_BLOCK_SIZE) -> CrossMatch:
    """Exact copies and nearest neighbours of the `query` rows among the `reference` rows.

    `space` defaults to `DistanceSpace.fit` on both sets together (``auto``, which needs
    `modality`). With ``near=False`` (or text) only exact copies are looked for; ``distance`` is
    then 0 for exact copies and inf elsewhere.
    """
    is_tensor = isinstance(query, torch.Tensor)
    device = query.device if is_tensor else torch.device("cpu")
    n_q = query.shape[0] if is_tensor else len(query)
    n_r = reference.shape[0] if is_tensor else len(reference)
    if is_tensor:
        reference = reference.to(device)
        # flatten(1), not reshape(n, -1): an empty side (0 rows) cannot infer the -1
        ids = exact_ids(torch.cat([query.flatten(1), reference.flatten(1)]))
    else:
        ids = exact_ids(list(query) + list(reference))
    ids = ids.to(device)
    q_ids, r_ids = ids[:n_q], ids[n_q:]
    groups = int(ids.max()) + 1 if ids.numel() else 0
    first_ref = torch.full((groups,), n_r, dtype=torch.int64, device=device)
    if n_r:
        first_ref.scatter_reduce_(0, r_ids, torch.arange(n_r, device=device), reduce="amin")
    exact_index = first_ref[q_ids] if n_q else torch.zeros(0, dtype=torch.int64, device=device)
    exact = exact_index < n_r
    exact_index = torch.where(exact, exact_index, -1)
    distance = torch.where(exact, 0.0, float("inf")).to(torch.float32)
    index = exact_index.clone()
    if near and is_tensor and n_q and n_r:
        if space is None:
            if modality is None:
                raise ValueError("cross_match(near=True) needs a DistanceSpace or the modality")
            space = DistanceSpace.fit(torch.cat([query, reference]), modality)
        q_emb, r_emb = space.embed(query), space.embed(reference)
        q_cat, r_cat = space.categories(query), space.categories(reference)
        if q_cat is None:
            d, j = knn(q_emb, r_emb, 1, block_size=block_size)
            distance, index = d[:, 0], j[:, 0]
        else:
            part = exact_ids(torch.cat([q_cat, r_cat]).to(torch.float64))
            q_part, r_part = part[:n_q], part[n_q:]
            for value in torch.unique(q_part).tolist():
                q_rows = (q_part == value).nonzero().flatten()
                r_rows = (r_part == value).nonzero().flatten()
                if r_rows.numel() == 0:
                    continue
                d, j = knn(q_emb[q_rows], r_emb[r_rows], 1, block_size=block_size)
                distance[q_rows], index[q_rows] = d[:, 0], r_rows[j[:, 0]]
    near_mask = exact | (distance < threshold)
    return CrossMatch(exact=exact, exact_index=exact_index, distance=distance, index=index, near=near_mask,
                      threshold=float(threshold))
