"""Blocked exact k-NN against scikit-learn's NearestNeighbors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from setforge.plugins._shared.knn import knn


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    # scikit-learn's OpenMP threads spin for seconds on a shared, loaded CPU; one thread is plenty here.
    with threadpool_limits(1, "openmp"):
        yield


def _data(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(np.random.default_rng(seed).normal(size=(n, d)), dtype=dtype)


@pytest.mark.parametrize(("block_size", "reference_block_size"), [(4096, None), (7, None), (16, 5), (1, 1000)])
def test_matches_sklearn_query_against_reference(block_size, reference_block_size):
    query, reference = _data(53, 6, 0), _data(101, 6, 1)
    distances, indices = knn(query, reference, k=7, block_size=block_size, reference_block_size=reference_block_size)
    ref_d, ref_i = NearestNeighbors(n_neighbors=7, algorithm="brute").fit(reference.numpy()).kneighbors(query.numpy())
    assert torch.equal(indices, torch.as_tensor(ref_i))
    np.testing.assert_allclose(distances.numpy(), ref_d, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block_size", [4096, 10, 3])
def test_exclude_self_matches_sklearn_kneighbors_without_x(block_size):
    x = _data(64, 5, 2)
    distances, indices = knn(x, x, k=4, block_size=block_size, reference_block_size=max(1, block_size // 2),
                             exclude_self=True)
    ref_d, ref_i = NearestNeighbors(n_neighbors=4).fit(x.numpy()).kneighbors()
    assert torch.equal(indices, torch.as_tensor(ref_i))
    np.testing.assert_allclose(distances.numpy(), ref_d, rtol=1e-10, atol=1e-12)
    assert not bool((indices == torch.arange(64).unsqueeze(1)).any())


def test_float32_distances_are_accurate_despite_the_gemm_form():
    # Far from the origin |q|^2 + |r|^2 - 2 q.r cancels badly in float32; the winners are recomputed.
    x = (_data(200, 16, 3) + 1000.0).to(torch.float32)
    distances, indices = knn(x, x, k=3, block_size=64, exclude_self=True)
    direct = (x.unsqueeze(1) - x[indices]).pow(2).sum(-1).sqrt()
    torch.testing.assert_close(distances, direct)
    ref_d, _ = NearestNeighbors(n_neighbors=3).fit(x.double().numpy()).kneighbors()
    np.testing.assert_allclose(distances.numpy(), ref_d, rtol=1e-4)


def test_squared_and_image_shaped_rows():
    images = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d2, i2 = knn(images, images, k=2, squared=True, exclude_self=True)
    d, i = knn(images.reshape(30, -1), images.reshape(30, -1), k=2, exclude_self=True)
    assert torch.equal(i2, i)
    torch.testing.assert_close(d2, d.pow(2))


def test_duplicates_are_neighbours_at_distance_zero_but_not_self():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [9.0, 9.0]], dtype=torch.float64)
    distances, indices = knn(x, x, k=1, exclude_self=True)
    assert indices[:2, 0].tolist() == [1, 0]
    assert distances[:2, 0].tolist() == [0.0, 0.0]


def test_no_query_rows_no_neighbours():
    # reshape(0, -1) cannot infer the -1: an empty query raised a RuntimeError.
    distances, indices = knn(torch.zeros(0, 1, 2, 2, dtype=torch.float64), _data(6, 4, 5), k=2)
    assert distances.shape == indices.shape == (0, 2)


def test_bad_arguments_are_explained():
    x = _data(5, 3, 4)
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        knn(x, x, k=5, exclude_self=True)
    with pytest.raises(ValueError, match="features"):
        knn(x, _data(5, 2, 0), k=1)
    with pytest.raises(ValueError, match="same rows"):
        knn(x, _data(6, 3, 0), k=1, exclude_self=True)
    with pytest.raises(ValueError, match="floating"):
        knn(x.long(), x.long(), k=1)


@pytest.mark.parametrize("where", ["query", "reference"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_infinity_are_refused_naming_the_row(where, bad):
    # One NaN made the reference mean, and so every distance, NaN: rows came back as their own
    # neighbours (with exclude_self) and every row's neighbours were arbitrary.
    x, other = _data(20, 3, 6), _data(20, 3, 7)
    broken = x.clone()
    broken[13, 1] = bad
    query, reference = (broken, other) if where == "query" else (other, broken)
    with pytest.raises(ValueError, match=f"{where} row 13 holds NaN or infinite values"):
        knn(query, reference, k=3)
    with pytest.raises(ValueError, match="row 13 holds NaN"):
        knn(broken, broken, k=3, exclude_self=True)


def test_squared_distances_beyond_float32_are_refused():
    # Squares above ~3.4e38 are inf in float32: the ranking was arbitrary, a row its own neighbour.
    x = torch.tensor([[1e20, 0.0], [1e20, 1.0], [0.0, 0.0], [3e19, 0.0]], dtype=torch.float32)
    with pytest.raises(ValueError, match="overflow torch.float32.*float64"):
        knn(x, x, k=2, exclude_self=True)
    _, indices = knn(x.double(), x.double(), k=1, exclude_self=True)
    assert indices[:, 0].tolist() == [1, 0, 3, 2]


def test_memory_is_bounded_by_the_blocks_even_for_wide_rows():
    # The exact distances of the winners were recomputed from (block_size, k, D) differences: for
    # wide rows (images) k * D times the rows of a block, far above the block of distances.
    from tests._tensors import TensorRecorder

    query, reference = _data(50, 512, 8), _data(600, 512, 9)
    with TensorRecorder() as mode:
        distances, indices = knn(query, reference, k=5, block_size=4, reference_block_size=8)
    inputs = {query.untyped_storage().data_ptr(), reference.untyped_storage().data_ptr()}
    largest = mode.largest(inputs)
    assert largest <= (4 + 8) * 512  # the centred blocks; (4, 5, 512) differences were 10240 values
    ref_d, ref_i = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(reference.numpy()).kneighbors(query.numpy())
    assert torch.equal(indices, torch.as_tensor(ref_i))
    np.testing.assert_allclose(distances.numpy(), ref_d, rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = _data(500, 32, 5, dtype=torch.float32)
    d_cpu, i_cpu = knn(x, x, k=5, exclude_self=True, block_size=128)
    d_gpu, i_gpu = knn(x.cuda(), x.cuda(), k=5, exclude_self=True, block_size=128)
    assert d_gpu.device.type == "cuda"
    assert torch.equal(i_gpu.cpu(), i_cpu)
    torch.testing.assert_close(d_gpu.cpu(), d_cpu)


def _lowest_index_first(query: torch.Tensor, reference: torch.Tensor, k: int, exclude_self: bool) -> np.ndarray:
    """The expected neighbours: the k smallest of (sum((q - r)^2), index) for every query row."""
    d = (query.unsqueeze(1) - reference.unsqueeze(0)).pow(2).sum(-1).double().numpy()
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return np.stack([np.lexsort((np.arange(len(row)), row))[:k] for row in d])


def _ties(kind: str, dtype: torch.dtype) -> torch.Tensor:
    rng = np.random.default_rng(11)
    if kind == "grid":  # a 4 x 4 grid: many rows at equal distances, many exact copies
        return torch.tensor(rng.integers(0, 4, size=(150, 2)), dtype=dtype)
    if kind == "copies":  # 20 rows, each copied about 7 times
        return torch.tensor(rng.normal(size=(20, 5))[rng.integers(0, 20, 150)], dtype=dtype)
    # a grid of non-representable steps far from the origin: ties in decimal, near-ties in binary
    return torch.tensor(rng.integers(-2, 3, size=(150, 3)) * 0.1 + 1000.3, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["grid", "copies", "offset grid"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_ties_go_to_the_lower_index_whatever_the_block_sizes(kind, dtype, exclude_self):
    # Which of equally distant rows were returned, and in which order, changed with the block sizes
    # (topk's tie order and the GEMM's rounding): e.g. on a 4 x 4 grid, blocks of (64, 50) gave
    # other neighbours than the defaults for every row.
    x = _ties(kind, dtype)
    expected = _lowest_index_first(x, x, 9, exclude_self)
    results = [knn(x, x, k=9, block_size=b, reference_block_size=r, exclude_self=exclude_self)
               for b, r in [(1024, None), (64, 50), (7, 16), (1, 40), (150, 150)]]
    for distances, indices in results:
        assert np.array_equal(indices.numpy(), expected)
        assert torch.equal(distances, results[0][0])


def test_ties_keep_the_rows_scikit_learn_keeps():
    # scikit-learn's brute force keeps the first of tied rows it meets (its heap refuses a row equal
    # to its current k-th), i.e. the lowest indices, and orders a tie arbitrarily (an unstable sort):
    # the same rows as here, up to their order within a tie, which here is by index.
    rng = np.random.default_rng(12)
    reference = torch.tensor(rng.integers(0, 4, size=(400, 2)), dtype=torch.float64)
    query = torch.tensor(rng.integers(0, 8, size=(60, 2)) * 0.5, dtype=torch.float64)
    ref_d, ref_i = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(reference.numpy()).kneighbors(query.numpy())
    for block_size, reference_block_size in [(1024, None), (16, 5), (1, 64)]:
        distances, indices = knn(query, reference, k=8, block_size=block_size,
                                 reference_block_size=reference_block_size)
        np.testing.assert_array_equal(np.sort(indices.numpy(), axis=1), np.sort(ref_i, axis=1))
        np.testing.assert_allclose(distances.numpy(), ref_d, rtol=1e-12)
        np.testing.assert_array_equal(indices.numpy(), _lowest_index_first(query, reference, 8, False))


def test_copies_beyond_k_are_the_lowest_indexed_ones():
    # Six copies of one point and k = 3: the three of lowest index (the row itself left out).
    x = torch.tensor([[0.0, 0.0]] * 6 + [[5.0, 5.0], [6.0, 6.0]], dtype=torch.float64)
    for block_size, reference_block_size in [(1024, None), (1, 1), (3, 2)]:
        distances, indices = knn(x, x, k=3, block_size=block_size, reference_block_size=reference_block_size,
                                 exclude_self=True)
        assert indices[:6].tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
        assert indices[6:].tolist() == [[7, 0, 1], [6, 0, 1]]
        assert distances[:6].abs().sum() == 0.0


def test_rows_without_ties_are_searched_once(monkeypatch):
    # The second pass (rows whose k-th place may be tied) is for ties: continuous data, even with a
    # far outlier (which must not widen the rounding allowance of every row), needs none of it.
    import setforge.plugins._shared.knn as module

    searched_again = []
    settle = module._settle
    monkeypatch.setattr(module, "_settle", lambda q, r, unsure, *a: searched_again.append(unsure.numel())
                        or settle(q, r, unsure, *a))
    x = _data(3000, 16, 13, dtype=torch.float32)
    x[17] = 1e4
    knn(x, x, k=5, exclude_self=True, block_size=256, reference_block_size=1000)
    assert sum(searched_again) <= 3  # of 3000 (a near-tie within the rounding allowance may happen)
    searched_again.clear()
    knn(_ties("grid", torch.float32), _ties("grid", torch.float32), k=5, exclude_self=True)
    assert sum(searched_again) > 50  # of 150


def test_memory_stays_bounded_when_ties_are_searched_again():
    from tests._tensors import TensorRecorder

    rng = np.random.default_rng(14)
    x = torch.tensor(rng.integers(0, 2, size=(40, 512))[rng.integers(0, 40, 400)], dtype=torch.float64)
    with TensorRecorder() as mode:
        distances, indices = knn(x[:50], x, k=5, block_size=4, reference_block_size=8)
    assert mode.largest({x.untyped_storage().data_ptr()}) <= (4 + 8) * 512
    np.testing.assert_array_equal(indices.numpy(), _lowest_index_first(x[:50], x, 5, False))
