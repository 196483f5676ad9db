"""SMOTE's torch backend: the same algorithm as imbalanced-learn's, on any device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge import Origin, StepContext, create
from setforge.plugins._shared.knn import knn
from setforge.plugins.resample._torch_smote import torch_smote

from .conftest import flat


def assert_on_segments_to_k_nearest(x: torch.Tensor, y: torch.Tensor, new_x: torch.Tensor, new_y: torch.Tensor,
                                    seed: torch.Tensor, k: int) -> None:
    """Every new row is seed + u (nb - seed), u in [0, 1], nb one of the seed's k nearest same-class rows."""
    x, new_x = x.flatten(1).double(), new_x.flatten(1).double()  # (flatten: 0 new rows too)
    assert torch.equal(y[seed], new_y)
    found = torch.zeros(len(new_x), dtype=torch.bool)
    for label in new_y.unique().tolist():
        members = (y == label).nonzero().flatten()
        _, neighbours = knn(x[members], x[members], k, exclude_self=True)
        position = torch.full((len(x),), -1, dtype=torch.long)
        position[members] = torch.arange(len(members))
        rows = (new_y == label).nonzero().flatten()
        start = x[seed[rows]]                                       # (m, D)
        ends = x[members[neighbours[position[seed[rows]]]]]        # (m, k, D)
        span = ends - start.unsqueeze(1)
        offset = (new_x[rows] - start).unsqueeze(1)
        u = (offset * span).sum(-1) / span.pow(2).sum(-1).clamp_min(1e-30)
        residual = (offset - u.unsqueeze(-1) * span).norm(dim=-1)
        ok = (residual < 1e-5) & (u > -1e-6) & (u < 1 + 1e-6)
        found[rows] = ok.any(dim=1)
    assert bool(found.all()), f"{int((~found).sum())} rows are on no segment to a k-nearest neighbour"


@pytest.mark.parametrize("data", ["digits", "cancer"])
@pytest.mark.parametrize("strategy", ["auto", "minority", "not majority", "not minority", "all"])
def test_rows_lie_on_segments_and_counts_match_imblearn(data, strategy, digits_ds, cancer_ds, ctx):
    from imblearn.over_sampling import SMOTE

    ds = digits_ds if data == "digits" else cancer_ds
    out = create("resample", "smote", {"backend": "torch", "sampling_strategy": strategy}).resample(ds, ctx)
    _, y_ref = SMOTE(sampling_strategy=strategy, random_state=0).fit_resample(*flat(ds))
    assert out.class_counts() == np.bincount(y_ref, minlength=ds.num_classes).tolist()
    n = len(ds)
    assert torch.equal(out.x[:n], ds.x) and bool((out.origin[:n] == int(Origin.REAL)).all())
    new = out.origin == int(Origin.RESAMPLED)
    assert_on_segments_to_k_nearest(ds.x, ds.y, out.x[new], out.y[new], out.parent[new], k=5)


@pytest.mark.parametrize("ratio", [0.26, 0.5, 1.0])
def test_float_ratio_counts_match_imblearn(ratio, cancer_ds, ctx):
    from imblearn.over_sampling import SMOTE

    out = create("resample", "smote", {"backend": "torch", "sampling_strategy": ratio}).resample(cancer_ds, ctx)
    _, y_ref = SMOTE(sampling_strategy=ratio, random_state=0).fit_resample(*flat(cancer_ds))
    assert out.class_counts() == np.bincount(y_ref).tolist()


def test_mapping_strategy_and_k(cancer_ds, ctx):
    from imblearn.over_sampling import SMOTE

    params = {"backend": "torch", "sampling_strategy": {"malignant": 150, "benign": 170}, "k_neighbors": 3}
    out = create("resample", "smote", params).resample(cancer_ds, ctx)
    _, y_ref = SMOTE(sampling_strategy={0: 150, 1: 170}, k_neighbors=3, random_state=0).fit_resample(*flat(cancer_ds))
    assert out.class_counts() == np.bincount(y_ref).tolist() == [150, 170]
    new = out.origin == int(Origin.RESAMPLED)
    assert_on_segments_to_k_nearest(cancer_ds.x, cancer_ds.y, out.x[new], out.y[new], out.parent[new], k=3)


def test_seeds_and_neighbours_are_drawn_uniformly():
    # one class of 4 points, k=1: each point's only neighbour is fixed, so the seed frequencies
    # and steps are the algorithm's draws: uniform over rows, u ~ U[0, 1)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0], [50.0, 50.0]])
    y = torch.tensor([0, 0, 0, 0, 1])
    generator = torch.Generator().manual_seed(0)
    new_x, new_y, parent = torch_smote(x, y, {0: 40000}, k=1, generator=generator)
    share = torch.bincount(parent, minlength=4)[:4].double() / 40000
    assert torch.allclose(share, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)
    u = (new_x[:, 0] - x[parent, 0]).abs()  # distance 1 to the neighbour: |offset| = u
    assert abs(float(u.mean()) - 0.5) < 0.01 and float(u.min()) >= 0.0 and float(u.max()) < 1.0


def test_each_of_the_k_neighbours_is_drawn_alike():
    # (with k=1 above, the neighbour is fixed: a SMOTE always stepping to the nearest one passed)
    # the seed (0, 0) has its 3 same-class neighbours in three directions, at distances 1, 2 and 3;
    # every other point is far away, so the direction of a new row from the seed names its neighbour
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [50.0, 50.0]])
    y = torch.tensor([0, 0, 0, 0, 1])
    new_x, _, parent = torch_smote(x, y, {0: 40000}, k=3, generator=torch.Generator().manual_seed(1))
    offsets = new_x[parent == 0]
    moved = offsets.abs().sum(1) > 1e-9  # (u = 0 leaves the seed where it is: no direction)
    directions = torch.stack([offsets[:, 0] > 0, offsets[:, 1] > 0, offsets[:, 0] < 0], 1)[moved]
    assert bool((directions.sum(1) == 1).all())  # each new row on exactly one segment
    share = directions.double().mean(0)
    assert len(offsets) > 8000 and torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)


def test_same_seed_same_rows_block_size_does_not_matter_without_ties(cancer_ds):
    # (breast-cancer's standardised rows have no ties; with ties, see the test below)
    outs = [create("resample", "smote", {"backend": "torch", "block_size": b}).resample(cancer_ds,
                                                                                        StepContext.from_seed(5))
            for b in (4096, 4096, 7)]
    assert outs[0].fingerprint() == outs[1].fingerprint() == outs[2].fingerprint()


def test_same_seed_same_rows_block_size_does_not_matter_with_ties():
    # Rows on a grid (columns of three values) have many same-class rows at equal distances: which of
    # them were among the k nearest followed topk's tie order and the GEMM's rounding, so block_size
    # 1 gave 299 of 500 new rows different from the default. Ties now go to the lower row index.
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.integers(0, 3, size=(900, 8)) * 0.1 + 0.37, dtype=torch.float32)
    y = torch.tensor([1] * 300 + [0] * 600)
    outs = [torch_smote(x, y, {1: 500}, k=5, generator=torch.Generator().manual_seed(0), block_size=b)
            for b in (1024, 1, 7, 300)]
    for new_x, new_y, parent in outs[1:]:
        assert torch.equal(new_x, outs[0][0]) and torch.equal(parent, outs[0][2])
    # the neighbours stepped towards are the k nearest by (distance, index)
    members = x[:300]
    d = (members.unsqueeze(1) - members.unsqueeze(0)).pow(2).sum(-1).double().fill_diagonal_(float("inf"))
    index = torch.arange(300, dtype=torch.float64)
    nearest = torch.stack([torch.tensor(np.lexsort((index.numpy(), row.numpy()))[:5]) for row in d])
    _, neighbours = knn(members, members, 5, exclude_self=True, block_size=1)
    assert torch.equal(neighbours, nearest)


def test_no_second_copy_of_the_new_rows_is_made():
    # The neighbours of all new rows were gathered at once: a temporary as large as the output.
    from tests._tensors import TensorRecorder

    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0] * 250 + [1] * 50)
    with TensorRecorder() as mode:
        new_x, new_y, parent = torch_smote(x, y, {1: 20000}, k=5, generator=torch.Generator().manual_seed(0),
                                           block_size=2)
    output = new_x.untyped_storage().data_ptr()
    largest = mode.largest({output})
    # block_size 2 x 4096 reference rows: chunks of 8192 values; the indices, one per new row, 20000
    assert largest <= 20000 < new_x.numel() // 2
    assert_on_segments_to_k_nearest(x, y, new_x, new_y, parent, k=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(digits_ds):
    ctx = StepContext.from_seed(0, device="cuda")
    out = create("resample", "smote", {"backend": "torch"}).resample(digits_ds, ctx)
    assert out.x.device.type == "cuda" and out.parent.device.type == "cuda"
    new = (out.origin == int(Origin.RESAMPLED)).cpu()
    assert_on_segments_to_k_nearest(digits_ds.x, digits_ds.y, out.x.cpu()[new], out.y.cpu()[new],
                                    out.parent.cpu()[new], k=5)
