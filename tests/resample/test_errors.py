"""Data the resamplers cannot handle: each a DataError (exit 3) naming the class and the remedy."""

from __future__ import annotations

import pytest
import torch

from setforge import ConfigError, DataError, Dataset, FeatureInfo, create


def small_class_data() -> Dataset:
    """Three classes; class 'rare' has 4 rows (too few for k_neighbors=5)."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(30, 3, generator=g), torch.randn(20, 3, generator=g) + 3, torch.randn(4, 3, generator=g) - 3])
    y = torch.tensor([0] * 30 + [1] * 20 + [2] * 4)
    return Dataset(x=x, y=y, classes=["common", "middle", "rare"], modality="tabular")


@pytest.mark.parametrize("name", ["smote", "borderline-smote", "svm-smote", "smote-enn", "smote-tomek"])
def test_class_smaller_than_k_names_the_class_and_the_remedy(name, ctx):
    with pytest.raises(DataError) as caught:
        create("resample", name).resample(small_class_data(), ctx)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert f"'{name}'" in message and "'rare' has 4 rows" in message and "k_neighbors + 1 = 6" in message
    assert "k_neighbors: auto" in message and "set k_neighbors to 3 or lower" in message


@pytest.mark.parametrize("backend", ["imblearn", "torch"])
def test_k_neighbors_auto_shrinks_k_to_the_smallest_class(backend, ctx):
    out = create("resample", "smote", {"k_neighbors": "auto", "backend": backend}).resample(small_class_data(), ctx)
    assert out.class_counts() == [30, 30, 30]


def test_adasyn_n_neighbors_auto(ctx):
    with pytest.raises(DataError, match="n_neighbors: auto"):
        create("resample", "adasyn").resample(small_class_data(), ctx)
    out = create("resample", "adasyn", {"n_neighbors": "auto"}).resample(small_class_data(), ctx)
    assert out.class_counts()[2] > 4


@pytest.mark.parametrize("k", ["auto", 1, 5])
def test_a_class_of_one_row_cannot_be_interpolated(ctx, k):
    ds = small_class_data()[list(range(51))]
    with pytest.raises(DataError, match="'rare' has 1 row, and a class of one row cannot be interpolated; "
                                        "over-sample it with random-over") as caught:
        create("resample", "smote", {"k_neighbors": k}).resample(ds, ctx)
    assert "k_neighbors" not in str(caught.value)  # (it suggested k_neighbors: 1, or auto, which was set)


@pytest.mark.parametrize("name", ["smote", "random-over", "random-under", "tomek-links", "near-miss"])
def test_single_class(name, ctx):
    ds = small_class_data()[list(range(30))]
    with pytest.raises(DataError, match=f"'{name}': the data holds only class 'common'; resampling needs at least two"):
        create("resample", name).resample(ds, ctx)


@pytest.mark.parametrize("backend", ["imblearn", "torch"])
def test_nan_and_inf_are_named_by_row(backend, ctx):
    ds = small_class_data()
    ds.x[7, 1] = float("nan")  # bypassing Dataset's own check, as a buggy earlier step could
    with pytest.raises(DataError, match="row 7 holds NaN or infinite values"):
        create("resample", "smote", {"backend": backend}).resample(ds, ctx)
    ds.x[7, 1] = float("inf")
    with pytest.raises(DataError, match="row 7"):
        create("resample", "random-under").resample(ds, ctx)


@pytest.mark.parametrize(("name", "strategy"), [("smote", {"unicorn": 40}), ("random-under", {"7": 3}),
                                                 ("tomek-links", ["unicorn"])])
def test_unknown_class_in_strategy(name, strategy, ctx):
    with pytest.raises(DataError, match=r"unknown class .*the classes are \['common', 'middle', 'rare'\]"):
        create("resample", name, {"sampling_strategy": strategy}).resample(small_class_data(), ctx)


def test_class_without_rows_in_strategy(ctx):
    ds = small_class_data()[list(range(50))]
    with pytest.raises(DataError, match="class 'rare' has no rows in this data"):
        create("resample", "random-over", {"sampling_strategy": {"rare": 40}}).resample(ds, ctx)


def test_strategy_that_imblearn_rejects_is_a_data_error(ctx):
    # asking an over-sampler for fewer rows than a class has
    with pytest.raises(DataError, match="sampling_strategy"):
        create("resample", "smote", {"sampling_strategy": {"common": 10}}).resample(small_class_data(), ctx)
    with pytest.raises(DataError, match="two classes only"):
        create("resample", "random-over", {"sampling_strategy": 0.5}).resample(small_class_data(), ctx)


def test_bad_params_are_config_errors():
    with pytest.raises(ConfigError, match="k_neighbors"):
        create("resample", "smote", {"k_neighbors": 0})
    with pytest.raises(ConfigError, match="sampling_strategy"):
        create("resample", "tomek-links", {"sampling_strategy": 0.5})  # cleaning samplers take no ratio
    with pytest.raises(ConfigError, match="shrinkage"):
        create("resample", "random-over", {"shrinkage": -1.0})


def test_imblearn_value_errors_become_data_errors(ctx, monkeypatch):
    from imblearn.under_sampling import NearMiss

    def refuse(self, x, y):
        raise ValueError("Expected n_neighbors <= n_samples_fit")

    monkeypatch.setattr(NearMiss, "fit_resample", refuse)
    with pytest.raises(DataError, match="'near-miss' \\(imbalanced-learn NearMiss\\) cannot resample this data: "
                                        "Expected n_neighbors"):
        create("resample", "near-miss").resample(small_class_data(), ctx)


def test_interpolating_samplers_refuse_categorical_columns(ctx):
    ds = small_class_data()
    ds = ds.replace(x=torch.cat([ds.x, (ds.y % 2).float().unsqueeze(1)], dim=1),
                    features=FeatureInfo(names=("a", "b", "c", "colour"), categorical={"colour": ("red", "blue")}))
    for name in ("smote", "adasyn", "cluster-centroids", "smote-enn"):
        with pytest.raises(DataError, match=r"categorical columns \['colour'\]; use resample 'smote-nc'"):
            create("resample", name, {"k_neighbors": 3} if "smote" in name else {}).resample(ds, ctx)
    with pytest.raises(DataError, match="shrinkage adds noise"):
        create("resample", "random-over", {"shrinkage": 1.0}).resample(ds, ctx)
    assert create("resample", "random-over").resample(ds, ctx).class_counts() == [30, 30, 30]


def test_smote_nc_and_smoten_need_the_right_columns(ctx):
    with pytest.raises(DataError, match="'smote-nc' needs categorical columns"):
        create("resample", "smote-nc").resample(small_class_data(), ctx)
    with pytest.raises(DataError, match="'smoten' needs every column categorical"):
        create("resample", "smoten").resample(small_class_data(), ctx)


def test_a_too_large_k_names_the_smallest_class_so_the_suggestion_works(tmp_path):
    """The message names the smallest over-sampled class, and the k it suggests then runs."""
    import re

    import torch

    from setforge import DataError, StepContext
    from setforge.registry import Registry
    from setforge.testing import sample_dataset

    registry = Registry(use_env=False).load()
    ds = sample_dataset("tabular")  # classes of 18, 12 and 6 rows
    with pytest.raises(DataError, match=r"class 'class_2' has 6 rows.*set k_neighbors to 5 or lower") as error:
        registry.create("resample", "smote", {"k_neighbors": 14}).resample(ds, StepContext.from_seed(0))
    k = int(re.search(r"set k_neighbors to (\d+)", str(error.value)).group(1))
    out = registry.create("resample", "smote", {"k_neighbors": k}).resample(ds, StepContext.from_seed(0))
    assert torch.bincount(out.y).tolist() == [18, 18, 18]
