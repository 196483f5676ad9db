"""The npz source on files the tests write: modalities, labels, invalid rows, own split, groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setforge import ConfigError, DataError, Splits, StepContext
from setforge.plugins.source.npz import NpzSource
from setforge.registry import Registry
from setforge.testing import check_component


def load(path, on_invalid="error", **params):
    source = NpzSource({"path": path, **params})
    return source.load(StepContext.from_seed(0), on_invalid=on_invalid), source


def test_tabular_with_named_labels_gives_sorted_classes_and_features(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["dog", "cat", "dog", "bird", "cat", "dog"]))
    ds, _ = load(tmp_path / "d.npz")
    assert ds.modality == "tabular"
    assert ds.classes == ("bird", "cat", "dog")
    assert ds.y.tolist() == [2, 1, 2, 0, 1, 2]
    assert torch.equal(ds.x, torch.from_numpy(x.astype(np.float32)))
    assert ds.features.names == ("x0", "x1") and ds.features.dtypes == {"x0": "float64", "x1": "float64"}


def test_numeric_labels_sort_by_value_and_columns_name_features(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), np.float32), y=np.array([10, 2, 10]),
             columns=np.array(["height", "width"]))
    ds, _ = load(tmp_path / "d.npz")
    assert ds.classes == ("2", "10") and ds.y.tolist() == [1, 0, 1]
    assert ds.features.names == ("height", "width")


def test_classes_array_indexes_integer_labels_and_flags_labels_outside(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3)), y=np.array([0, 2, 1, 5]), classes=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"row 3 \(label 5\): label outside the 3 classes"):
        load(tmp_path / "d.npz")
    ds, source = load(tmp_path / "d.npz", on_invalid="drop")
    assert ds.classes == ("a", "b", "c") and ds.y.tolist() == [0, 2, 1]
    assert source.dropped == {"label outside the 3 classes": 1}


def test_uint8_images_are_scaled_and_channels_last_is_recognised(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=nhwc, y=np.arange(5) % 2)
    ds, _ = load(tmp_path / "d.npz")
    assert ds.modality == "image" and ds.shape == (3, 6, 7)
    expected = torch.from_numpy(nhwc.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
    assert torch.equal(ds.x, expected)


def test_float_images_outside_unit_range_are_invalid_rows(tmp_path):
    x = np.full((4, 1, 2, 2), 0.5, np.float32)
    x[1, 0, 0, 0] = 200.0
    x[3, 0, 1, 1] = np.nan
    x[2, 0, 0, 1] = 1.0 + 1e-7  # rounding error is clipped, not rejected
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(4, int))
    with pytest.raises(DataError, match=r"row 1 \(values in \[0.5, 200\]\): image values outside \[0, 1\]"):
        load(tmp_path / "d.npz")
    ds, source = load(tmp_path / "d.npz", on_invalid="drop")
    assert len(ds) == 2 and float(ds.x.max()) == 1.0
    assert sum(source.dropped.values()) == 2 and "NaN or infinite value" in source.dropped


def test_nan_in_tabular_row_names_row_and_column(tmp_path):
    x = np.zeros((3, 4))
    x[2, 3] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(3, int))
    with pytest.raises(DataError, match=r"npz d.npz: row 2, column 3: NaN or infinite value"):
        load(tmp_path / "d.npz")


def test_own_split_and_string_groups(tmp_path):
    split = np.array(["train", "train", "test", "val", "train", "TEST", "holdout"])
    groups = np.array(["p1", "p1", "p2", "p3", "p2", "p4", "p4"])
    np.savez(tmp_path / "d.npz", x=np.arange(7.0)[:, None], y=np.array([0, 1, 0, 1, 1, 0, 1]), split=split,
             groups=groups)
    with pytest.raises(DataError, match="row 6 \\(split 'holdout'\\)"):
        load(tmp_path / "d.npz")
    parts, source = load(tmp_path / "d.npz", on_invalid="drop")
    assert isinstance(parts, Splits)
    assert parts.train.x[:, 0].tolist() == [0.0, 1.0, 4.0]
    assert parts.val.x[:, 0].tolist() == [3.0]
    assert parts.test.x[:, 0].tolist() == [2.0, 5.0]
    assert parts.train.groups.tolist() == [0, 0, 1] and parts.test.groups.tolist() == [1, 3]
    assert source.dropped == {"split name not one of ['train', 'val', 'test']": 1}


def test_split_without_train_rows_is_an_error(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array([0, 1]), split=np.array(["test", "val"]))
    with pytest.raises(DataError, match="no \\(valid\\) train rows"):
        load(tmp_path / "d.npz")


def test_audio_text_and_explicit_modality(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 1, 16), np.float32), y=np.array([0, 1]))
    assert load(tmp_path / "a.npz")[0].modality == "audio"
    np.savez(tmp_path / "t.npz", x=np.array(["good film", "bad film"]), y=np.array(["pos", "neg"]))
    text, _ = load(tmp_path / "t.npz")
    assert text.modality == "text" and text.x == ["good film", "bad film"] and text.classes == ("neg", "pos")
    np.savez(tmp_path / "g.npz", x=np.full((2, 4, 4), 255, np.uint8), y=np.array([0, 1]))
    gray, _ = load(tmp_path / "g.npz", modality="image")
    assert gray.shape == (1, 4, 4) and float(gray.x.min()) == 1.0
    np.savez(tmp_path / "b.npz", x=np.array([b"caf\xc3\xa9", b"tea"]), y=np.array([b"hot", b"cold"]))
    assert load(tmp_path / "b.npz")[0].x == ["caf\u00e9", "tea"]  # bytes in UTF-8 read as text
    np.savez(tmp_path / "latin1.npz", x=np.array([b"caf\xe9", b"tea"]), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"b'caf\\xe9' are not UTF-8 text .* store text as str"):
        load(tmp_path / "latin1.npz")  # was a UnicodeDecodeError: a plugin failure, exit 4


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.npz")
    np.savez(tmp_path / "no_y.npz", x=np.zeros((2, 2)))
    with pytest.raises(DataError, match="no array 'y'; the file holds \\['x'\\]"):
        load(tmp_path / "no_y.npz")
    np.savez(tmp_path / "objects.npz", x=np.zeros((2, 2)), y=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="object array"):
        load(tmp_path / "objects.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot be read"):
        load(tmp_path / "junk.npz")
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match="'y' has shape \\(2,\\), expected \\(3,\\)"):
        load(tmp_path / "short.npz")


def test_built_through_the_registry_and_conforms(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array([0, 1]))
    source = Registry(use_env=False).load().create("source", "npz", {"path": str(tmp_path / "d.npz")})
    assert isinstance(source, NpzSource)
    check_component(NpzSource)


def test_a_run_folders_npz_file_reads_back_with_its_features(tmp_path):
    from setforge import Dataset, FeatureInfo
    from setforge.formats import dataset_to_arrays, write_npz_file

    info = FeatureInfo(names=("age", "colour"), categorical={"colour": ("blue", "red")},
                       dtypes={"age": "int64", "colour": "str"}, label="species")
    ds = Dataset(x=torch.tensor([[3.0, 1.0], [4.0, 0.0]]), y=torch.tensor([1, 0]), classes=("cat", "dog"),
                 modality="tabular", features=info, groups=torch.tensor([7, 8]))
    write_npz_file(tmp_path / "test.npz", dataset_to_arrays(ds))
    again, _ = load(tmp_path / "test.npz")
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y) and torch.equal(again.groups, ds.groups)
    assert again.classes == ds.classes and again.features == info


def test_the_class_list_is_the_same_loaded_and_streamed_when_a_class_has_only_invalid_rows(tmp_path):
    # (found by an audit: loading dropped class '0' with its NaN row while the streaming scan kept it,
    # so the same data had other label codes in the two runs; an unlabelled row could also bring in
    # the class of an invalid row)
    import numpy as np

    from setforge import StepContext
    from setforge.plugins.source.npz import NpzSource

    x = np.array([[np.nan, 0], [1, 1], [2, 2], [3, 3], [4, 4]], dtype=np.float32)
    for y in (np.array([0, 1, 2, 2, 1]), np.array([7, 1, 2, -1, 1])):
        np.savez(tmp_path / "d.npz", x=x, y=y)
        loaded = NpzSource({"path": str(tmp_path / "d.npz")}).load(StepContext.from_seed(0), on_invalid="drop")
        scanned = NpzSource({"path": str(tmp_path / "d.npz")}).scan(StepContext.from_seed(0), on_invalid="drop")
        train = loaded.train if hasattr(loaded, "train") else loaded
        assert train.classes == scanned.classes == tuple(sorted({str(v) for v in y if v != -1}, key=int))
    np.savez(tmp_path / "none.npz", x=x, y=np.full(5, -1))
    import pytest

    from setforge import DataError

    with pytest.raises(DataError, match="every row is unlabelled"):
        NpzSource({"path": str(tmp_path / "none.npz")}).scan(StepContext.from_seed(0))
