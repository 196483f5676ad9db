import pytest
import torch

from setforge import DataError, Dataset, FeatureInfo, Origin, Splits


def images(n=6, classes=("a", "b")):
    g = torch.Generator().manual_seed(0)
    return Dataset(x=torch.rand(n, 1, 4, 4, generator=g), y=torch.arange(n) % len(classes), classes=classes,
                   modality="image")


def test_keyword_construction_defaults_to_real_rows():
    ds = images()
    assert len(ds) == 6 and ds.shape == (1, 4, 4) and ds.num_classes == 2
    assert ds.origin.tolist() == [Origin.REAL] * 6
    assert ds.step.tolist() == [-1] * 6 and ds.parent.tolist() == [-1] * 6
    assert ds.row_id.tolist() == list(range(6))
    assert ds.groups is None and ds.features is None
    assert ds.class_counts() == [3, 3]


@pytest.mark.parametrize("change, message", [
    (dict(x=torch.rand(6, 4, 4)), "(N, C, H, W)"),
    (dict(x=torch.rand(6, 1, 4, 4, dtype=torch.float64)), "float32"),
    (dict(x=torch.rand(6, 1, 4, 4) * 2), "[0, 1]"),
    (dict(x=torch.full((6, 1, 4, 4), float("nan"))), "NaN"),
    (dict(y=torch.tensor([0, 1, 2, 0, 1, 0])), "label 2"),
    (dict(y=torch.tensor([0, 1])), "shape (6,)"),
    (dict(y=torch.zeros(6)), "integer labels"),
    (dict(parent=torch.zeros(5, dtype=torch.int64)), "parent"),
    (dict(modality="video"), "modality"),
    (dict(classes=("a", "a")), "unique"),
    (dict(x=torch.rand(6, 0, 4, 4)), "non-zero"),
])
def test_invalid_datasets_get_named_errors(change, message):
    base = dict(x=torch.rand(6, 1, 4, 4), y=torch.tensor([0, 1] * 3), classes=("a", "b"), modality="image")
    base.update(change)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        Dataset(**base)


def test_tabular_features_must_match_columns():
    info = FeatureInfo(names=("a", "b", "c"), categorical={"c": ("x", "y")}, dtypes={"a": "int64"})
    ds = Dataset(x=torch.zeros(2, 3), y=torch.tensor([0, 0]), classes=("k",), modality="tabular", features=info)
    assert ds.features.categorical_indices == [2] and ds.features.numeric_indices == [0, 1]
    assert FeatureInfo.from_dict(info.to_dict()) == info
    with pytest.raises(DataError, match="3 columns"):
        Dataset(x=torch.zeros(2, 2), y=torch.tensor([0, 0]), classes=("k",), modality="tabular", features=info)
    with pytest.raises(DataError, match="not among names"):
        FeatureInfo(names=("a",), categorical={"b": ("x",)})


def test_indexing_keeps_provenance_and_lineage():
    ds = images()
    derived = ds.replace(origin=torch.full((6,), int(Origin.AUGMENTED)), step=torch.zeros(6, dtype=torch.long),
                         parent=torch.tensor([5, 4, 3, 2, 1, 0]), row_id=None)
    both = Dataset.concat([ds, derived])
    assert len(both) == 12
    assert both.lineage().tolist() == list(range(6)) + [5, 4, 3, 2, 1, 0]
    picked = both[torch.tensor([0, 7])]
    assert picked.origin.tolist() == [Origin.REAL, Origin.AUGMENTED]
    assert picked.lineage().tolist() == [0, 4]
    assert len(both[both.origin == int(Origin.REAL)]) == 6
    assert both[2:4].row_id.tolist() == [2, 3]
    assert both[[1]].y.tolist() == [1]
    with pytest.raises(DataError, match="out of range"):
        both[[12]]


def test_concat_refuses_mismatched_parts():
    a = images()
    b = images(classes=("a", "c"))
    with pytest.raises(DataError, match="classes"):
        Dataset.concat([a, b])
    with pytest.raises(DataError, match="at least one"):
        Dataset.concat([])


def test_fingerprint_follows_content():
    a, b = images(), images()
    assert a.fingerprint() == b.fingerprint()
    changed = a.replace(x=a.x.clone().index_fill_(0, torch.tensor([0]), 0.5))
    assert changed.fingerprint() != a.fingerprint()


def test_to_device_and_text():
    ds = images().to("cpu")
    assert ds.device.type == "cpu"
    text = Dataset(x=["hi", "there"], y=torch.tensor([0, 1]), classes=("p", "q"), modality="text")
    assert len(text[[1]]) == 1 and text[[1]].x == ["there"]
    assert Dataset.concat([text, text]).x == ["hi", "there", "hi", "there"]


def test_splits_must_match_train():
    train = images()
    with pytest.raises(DataError, match="match train"):
        Splits(train=train, test=images(classes=("x", "y")))
    assert Splits(train=train, test=images()).val is None
