"""Exact and near duplicates within one set and across two, against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge.plugins._shared.duplicates import DistanceSpace, cross_match, duplicate_of, exact_ids


def greedy_reference(x: torch.Tensor, threshold: float, priority: torch.Tensor | None = None,
                     labels: torch.Tensor | None = None) -> tuple[list[int], torch.Tensor]:
    """Keep rows in (priority, index) order unless an already kept row is closer than `threshold`
    (RMS difference per value, float64 all-pairs distances)."""
    n = len(x)
    flat = x.reshape(n, -1).double()
    dist = torch.cdist(flat, flat) / np.sqrt(flat.shape[1])
    order = sorted(range(n), key=lambda i: (0 if priority is None else int(priority[i]), i))
    d = dist.numpy()
    out, kept = [-1] * n, np.zeros(n, dtype=bool)
    for i in order:
        close = kept & (d[i] < threshold)
        if labels is not None:
            close &= labels.numpy() == int(labels[i])
        if close.any():
            out[i] = int(np.flatnonzero(close)[np.argmin(d[i][close])])
        else:
            kept[i] = True
    return out, dist


def clustered(seed: int, n: int, d: int, spread: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n // 4 + 1, d, generator=g)
    x = centres[torch.randint(0, len(centres), (n,), generator=g)]
    return x + spread * torch.rand(n, d, generator=g) * (torch.rand(n, 1, generator=g) < 0.7)


@pytest.mark.parametrize("seed", range(6))
def test_near_duplicates_match_greedy_reference(seed):
    x = clustered(seed, 150 + 40 * seed, 3 + seed, 0.04)
    x = torch.cat([x, x[:20]])  # exact copies, collapsed before the neighbour search
    priority = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(seed))
    threshold = 0.015
    got = duplicate_of(x, method="near", threshold=threshold, modality="audio", priority=priority)
    expected, dist = greedy_reference(x, threshold, priority)
    expected = torch.tensor(expected)
    assert torch.equal(got == -1, expected == -1)
    dropped = got >= 0
    # Every dropped row points at a kept row within the threshold, the closest one (ties aside).
    assert bool((got[got[dropped]] == -1).all())
    rows = dropped.nonzero().flatten()
    assert torch.allclose(dist[rows, got[rows]], dist[rows, expected[rows]], atol=1e-6)
    assert bool((dist[rows, got[rows]] < threshold).all())


def test_dense_cluster_needs_more_than_the_first_k_neighbours():
    # 60 rows all within the threshold of each other: the search must widen k past its first 8.
    g = torch.Generator().manual_seed(1)
    x = torch.cat([0.5 + 0.001 * torch.rand(60, 4, generator=g), torch.rand(40, 4, generator=g)])
    got = duplicate_of(x, method="near", threshold=0.05, modality="audio")
    expected, _ = greedy_reference(x, 0.05)
    assert torch.equal(got == -1, torch.tensor(expected) == -1)
    assert int((got[:60] >= 0).sum()) == 59


def test_exact_duplicates_and_labels():
    x = torch.tensor([[0.0, 1.0], [0.5, 0.5], [-0.0, 1.0], [0.0, 1.0], [0.5, 0.5000001]])
    assert exact_ids(x).tolist()[0] == exact_ids(x).tolist()[2] == exact_ids(x).tolist()[3]
    assert duplicate_of(x, method="exact").tolist() == [-1, -1, 0, 0, -1]
    labels = torch.tensor([0, 0, 1, 0, 0])
    assert duplicate_of(x, method="exact", labels=labels).tolist() == [-1, -1, -1, 0, -1]
    # priority: the row with the lowest priority of a group is the one kept
    assert duplicate_of(x, method="exact", priority=torch.tensor([1, 0, 1, 0, 0])).tolist() == [3, -1, 3, -1, -1]
    assert duplicate_of(["a", "b", "a"], method="exact").tolist() == [-1, -1, 0]
    with pytest.raises(ValueError, match="text"):
        duplicate_of(["a", "b"], method="near")


def test_standardized_space_and_categorical_columns():
    g = torch.Generator().manual_seed(2)
    # Column 0 in thousands, column 1 in units: raw distances would only see column 0.
    x = torch.stack([1000 * torch.rand(50, generator=g), torch.rand(50, generator=g),
                     torch.randint(0, 2, (50,), generator=g).float()], dim=1)
    copy = x[:5].clone()
    copy[:, 0] += 0.5      # a tiny change in a big column
    copy[:, 2] = x[:5, 2]  # same category
    other = x[5:10].clone()
    other[:, 2] = 1 - other[:, 2]  # identical numbers, other category: not a duplicate
    data = torch.cat([x, copy, other])
    space = DistanceSpace.fit(data, "tabular", "auto", categorical=[2])
    assert space.kind == "standardized"
    got = duplicate_of(data, method="near", threshold=0.01, space=space)
    assert got[50:55].tolist() == [0, 1, 2, 3, 4]
    assert (got[55:60] == -1).all()
    # embed: Euclidean distance equals the RMS difference of standardized numeric columns (sample std,
    # the one rule of plugins/_shared/columns.py, as the evaluators' raw space)
    z = (data[:, :2].double() - data[:, :2].double().mean(0)) / data[:, :2].double().std(0)
    rms = ((z[0] - z[1]) ** 2).mean().sqrt()
    emb = space.embed(data)
    assert torch.isclose((emb[0] - emb[1]).norm().double(), rms, rtol=1e-5)


def test_cross_match_exact_near_and_nearest():
    g = torch.Generator().manual_seed(3)
    train = torch.rand(200, 6, generator=g)
    test = torch.rand(80, 6, generator=g)
    test[:4] = train[10:14]                      # exact copies
    test[4:8] = train[20:24] + 0.005             # near copies
    match = cross_match(test, train, threshold=0.02, modality="audio")
    assert match.exact.nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert match.exact_index[:4].tolist() == [10, 11, 12, 13]
    assert match.near.nonzero().flatten().tolist() == list(range(8))
    assert match.index[4:8].tolist() == [20, 21, 22, 23]
    reference = (torch.cdist(test.double(), train.double()) / np.sqrt(6)).min(dim=1)
    assert torch.allclose(match.distance.double(), reference.values, atol=1e-6)
    only_exact = cross_match(test, train, near=False)
    assert int(only_exact.near.sum()) == 4 and bool(torch.isinf(only_exact.distance[4:]).all())


@pytest.mark.parametrize(("n_query", "n_reference"), [(0, 5), (3, 0), (0, 0)])
def test_cross_match_with_an_empty_side(n_query, n_reference):
    # reshape(0, -1) cannot infer the -1: an empty query or reference set raised a RuntimeError.
    g = torch.Generator().manual_seed(4)
    query, reference = torch.rand(n_query, 1, 2, 2, generator=g), torch.rand(n_reference, 1, 2, 2, generator=g)
    match = cross_match(query, reference, threshold=0.05, modality="image")
    assert match.exact.shape == match.near.shape == match.index.shape == (n_query,)
    assert not bool(match.near.any()) and bool((match.index == -1).all()) and bool(torch.isinf(match.distance).all())
