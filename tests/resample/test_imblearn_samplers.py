"""The imbalanced-learn resamplers: the rows imbalanced-learn gives for the same strategy and
seed (so the same counts), provenance, shapes, and the conformance kit."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from setforge import DataError, Dataset, Origin, Registry, StepContext, create
from setforge.testing import check_component, sample_dataset

from .conftest import flat

# name -> (imbalanced-learn class, setforge params, the same as imbalanced-learn kwargs)
CASES = {
    "random-over": ("over_sampling.RandomOverSampler", {}, {}),
    "smote": ("over_sampling.SMOTE", {}, {}),
    "adasyn": ("over_sampling.ADASYN", {"sampling_strategy": "minority"}, {"sampling_strategy": "minority"}),
    "borderline-smote": ("over_sampling.BorderlineSMOTE", {"kind": "borderline-2", "m_neighbors": 8},
                         {"kind": "borderline-2", "m_neighbors": 8}),
    "svm-smote": ("over_sampling.SVMSMOTE", {"out_step": 0.3}, {"out_step": 0.3}),
    "kmeans-smote": ("over_sampling.KMeansSMOTE", {"kmeans_estimator": 2, "cluster_balance_threshold": 0.0},
                     {"kmeans_estimator": 2, "cluster_balance_threshold": 0.0}),
    "random-under": ("under_sampling.RandomUnderSampler", {"replacement": True}, {"replacement": True}),
    "tomek-links": ("under_sampling.TomekLinks", {"sampling_strategy": "all"}, {"sampling_strategy": "all"}),
    "edited-nearest-neighbours": ("under_sampling.EditedNearestNeighbours", {"kind_sel": "mode"}, {"kind_sel": "mode"}),
    "repeated-edited-nearest-neighbours": ("under_sampling.RepeatedEditedNearestNeighbours", {"max_iter": 5},
                                           {"max_iter": 5}),
    "all-knn": ("under_sampling.AllKNN", {"allow_minority": True}, {"allow_minority": True}),
    "condensed-nearest-neighbour": ("under_sampling.CondensedNearestNeighbour", {}, {}),
    "one-sided-selection": ("under_sampling.OneSidedSelection", {"n_seeds_S": 2}, {"n_seeds_S": 2}),
    "neighbourhood-cleaning-rule": ("under_sampling.NeighbourhoodCleaningRule", {"threshold_cleaning": 0.3},
                                    {"threshold_cleaning": 0.3}),
    "near-miss": ("under_sampling.NearMiss", {"version": 2}, {"version": 2}),
    "instance-hardness-threshold": ("under_sampling.InstanceHardnessThreshold",
                                    {"estimator": "k-nearest-neighbours", "cv": 3}, {"cv": 3, "estimator": "KNN"}),
    "cluster-centroids": ("under_sampling.ClusterCentroids", {}, {}),
    "smote-enn": ("combine.SMOTEENN", {}, {}),
    "smote-tomek": ("combine.SMOTETomek", {}, {}),
}


def imblearn_reference(name: str, ds, seed: int) -> tuple[np.ndarray, np.ndarray]:
    path, _, kwargs = CASES[name]
    module, _, cls_name = path.rpartition(".")
    cls = getattr(importlib.import_module(f"imblearn.{module}"), cls_name)
    kwargs = dict(kwargs)
    if kwargs.get("estimator") == "KNN":
        from sklearn.neighbors import KNeighborsClassifier

        kwargs["estimator"] = KNeighborsClassifier()
    if "random_state" in cls().get_params():
        kwargs["random_state"] = seed
    return cls(**kwargs).fit_resample(*flat(ds))


def sorted_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.column_stack([y.astype(np.float64), x.astype(np.float64)])
    return rows[np.lexsort(rows.T[::-1])]


def test_every_imblearn_sampler_is_registered():
    names = set(Registry().names("resample")) if hasattr(Registry(), "names") else None
    for name in CASES:
        assert create("resample", name).name == name
    if names is not None:
        assert set(CASES) <= names


@pytest.mark.parametrize("data", ["digits", "cancer"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_same_rows_and_counts_as_imblearn(name, data, digits_ds, cancer_ds, ctx):
    ds = digits_ds if data == "digits" else cancer_ds
    out = create("resample", name, CASES[name][1]).resample(ds, ctx)
    x_ref, y_ref = imblearn_reference(name, ds, ctx.rng.sk_seed())
    assert out.class_counts() == np.bincount(y_ref, minlength=ds.num_classes).tolist()
    # the very rows imbalanced-learn gives (in another order: kept rows first, then new ones)
    got = sorted_rows(out.x.reshape(len(out), -1).numpy(), out.y.numpy())
    if ds.modality == "image":  # setforge keeps images in [0, 1] (centroids, SVM-SMOTE extrapolation)
        x_ref = np.clip(x_ref, 0.0, 1.0)
    np.testing.assert_allclose(got, sorted_rows(np.asarray(x_ref), y_ref), atol=1e-6)
    # provenance: kept rows are the input's rows unchanged; new rows are RESAMPLED with a same-class parent
    real = out.origin == int(Origin.REAL)
    kept = out.row_id[real]
    assert torch.equal(out.x[real], ds.x[kept]) and torch.equal(out.y[real], ds.y[kept])
    assert kept.unique().numel() == kept.numel()
    new = ~real
    assert bool((out.origin[new] == int(Origin.RESAMPLED)).all())
    assert bool((out.parent[new] >= 0).all()) and torch.equal(ds.y[out.parent[new]], out.y[new])
    if ds.modality == "image":
        assert out.shape == ds.shape and float(out.x.min()) >= 0.0 and float(out.x.max()) <= 1.0


@pytest.mark.parametrize("name", ["smote", "borderline-smote", "svm-smote", "kmeans-smote", "smote-tomek"])
def test_smote_type_parent_is_the_seed_row(name, cancer_ds, ctx):
    """Each new row lies on the line through its parent and some other row (the neighbour)."""
    out = create("resample", name, CASES[name][1]).resample(cancer_ds, ctx)
    new = out.origin == int(Origin.RESAMPLED)
    assert int(new.sum()) > 0
    x_all = cancer_ds.x.double()
    new_x = out.x[new].reshape(int(new.sum()), -1).double()
    seed = x_all[out.parent[new]]
    # direction seed -> new row must point at some input row: |cos| = 1 for one of them
    direction = torch.nn.functional.normalize(new_x - seed, dim=1)
    towards = torch.nn.functional.normalize(x_all.unsqueeze(0) - seed.unsqueeze(1), dim=2)
    best = (towards @ direction.unsqueeze(2)).squeeze(2).abs().nan_to_num(0).max(dim=1).values
    moved = (new_x - seed).norm(dim=1) > 1e-6
    assert bool((best[moved] > 1 - 1e-5).all())


@pytest.mark.parametrize("name", ["adasyn", "cluster-centroids"])
def test_hidden_seed_parent_is_the_nearest_same_class_real_row(name, cancer_ds, ctx):
    out = create("resample", name, CASES[name][1]).resample(cancer_ds, ctx)
    new = out.origin == int(Origin.RESAMPLED)
    assert int(new.sum()) > 0
    distance = torch.cdist(out.x[new].double(), cancer_ds.x.double())
    distance[out.y[new].unsqueeze(1) != cancer_ds.y.unsqueeze(0)] = float("inf")
    nearest = distance.min(dim=1).values
    chosen = distance.gather(1, out.parent[new].unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(chosen, nearest)


def test_random_over_copies_name_their_parent(digits_ds, ctx):
    out = create("resample", "random-over").resample(digits_ds, ctx)
    n = len(digits_ds)
    assert torch.equal(out.x[:n], digits_ds.x) and bool((out.origin[:n] == int(Origin.REAL)).all())
    new = out.origin == int(Origin.RESAMPLED)
    parent = out.parent[new]
    assert torch.equal(out.x[new], digits_ds.x[parent]) and torch.equal(out.y[new], digits_ds.y[parent])


def test_mapping_strategy_by_class_name_and_shrinkage(cancer_ds, ctx):
    sampler = create("resample", "random-over", {"sampling_strategy": {"malignant": 200}, "shrinkage": {"0": 0.5}})
    out = sampler.resample(cancer_ds, ctx)
    assert out.class_counts() == [200, cancer_ds.class_counts()[1]]
    new = out.origin == int(Origin.RESAMPLED)
    assert not torch.equal(out.x[new], cancer_ds.x[out.parent[new]])  # smoothed, not copies


def test_list_strategy_for_cleaning_samplers_by_name(digits_ds, ctx):
    out = create("resample", "edited-nearest-neighbours", {"sampling_strategy": ["0", 1]}).resample(digits_ds, ctx)
    counts, before = out.class_counts(), digits_ds.class_counts()
    assert counts[2:] == before[2:] and (counts[0] < before[0] or counts[1] < before[1])


def test_cluster_centroids_hard_voting_keeps_real_rows(cancer_ds, ctx):
    out = create("resample", "cluster-centroids", {"voting": "hard"}).resample(cancer_ds, ctx)
    assert bool((out.origin == int(Origin.REAL)).all()) and out.class_counts() == [40, 40]


@pytest.mark.parametrize("voting", ["hard", "soft"])
def test_cluster_centroids_keep_an_input_row_once_and_its_provenance(voting):
    # (found by an audit: centroids equal to one row kept it several times, each marked real with
    # the same row_id, and a centroid equal to a SMOTE row made it a new row of this step)
    g = torch.Generator().manual_seed(4)
    distinct = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    x = torch.cat([distinct.repeat(4, 1), torch.randn(10, 2, generator=g) + 5])  # 'a': 3 values, 4 copies each
    ds = Dataset(x=x, y=torch.tensor([0] * 12 + [1] * 10), classes=("a", "b"), modality="tabular")
    ctx = StepContext.from_seed(0, step=0)
    out = create("resample", "cluster-centroids", {"voting": voting, "sampling_strategy": {"a": 5}}).resample(ds, ctx)
    a = out.y == 0
    assert int(a.sum()) == 5
    real = a & (out.origin == int(Origin.REAL))
    assert int(real.sum()) == 3 and len(set(out.row_id[real].tolist())) == 3  # each value once, as itself
    copies = a & (out.origin == int(Origin.RESAMPLED))
    assert int(copies.sum()) == 2
    for row, parent in zip(out.x[copies], out.parent[copies].tolist()):  # a copy of the row it equals
        assert torch.equal(ds.x[parent], row)

    big = Dataset(x=torch.cat([torch.randn(40, 3, generator=g), torch.randn(10, 3, generator=g) + 4]),
                  y=torch.tensor([0] * 40 + [1] * 10), classes=("maj", "min"), modality="tabular")
    smoted = create("resample", "smote", {"sampling_strategy": {"min": 60}}).resample(big, ctx)
    hard = create("resample", "cluster-centroids", {"voting": "hard", "sampling_strategy": {"min": 30}}).resample(
        smoted, StepContext.from_seed(0, step=1))
    kept_smote = (hard.y == 1) & (hard.step == 0) & (hard.origin == int(Origin.RESAMPLED))
    assert int(kept_smote.sum()) > 0 and int(((hard.y == 1) & (hard.step == 1)).sum()) == 0  # all kept as they were
    where = {tuple(row.tolist()): i for i, row in enumerate(smoted.x)}
    for row, parent in zip(hard.x[kept_smote], hard.parent[kept_smote].tolist()):
        assert parent == int(smoted.parent[where[tuple(row.tolist())]])  # the SMOTE seed, not the nearest real row


def test_resampled_provenance_traces_through_an_earlier_step(cancer_ds, ctx):
    first = create("resample", "random-over").resample(cancer_ds, ctx)
    second = create("resample", "smote", {"sampling_strategy": {"malignant": 400}}).resample(first, ctx)
    new = second.origin == int(Origin.RESAMPLED)
    assert bool((second.parent[new] < len(cancer_ds)).all()) and bool((second.parent[new] >= 0).all())


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance_kit(name):
    check_component(type(create("resample", name)))
    if name == "adasyn":
        # The kit's images (digits 0, 1, 2) are so well separated that no minority row has a
        # neighbour of another class, which ADASYN cannot weigh: imbalanced-learn refuses, and so
        # does setforge, with a DataError; the kit runs it on tabular rows (testing_modalities).
        with pytest.raises(DataError, match="adasyn.*Use SMOTE instead"):
            create("resample", name).resample(sample_dataset("image"), StepContext.from_seed(0))


def test_smote_torch_backend_passes_the_kit():
    check_component(type(create("resample", "smote")), {"backend": "torch"})
