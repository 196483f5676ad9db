"""The csv source on tables the tests write: types, categories, missing values, ragged rows, groups."""

from __future__ import annotations

import pytest
import torch

from setforge import ConfigError, DataError, Splits, StepContext
from setforge.plugins.source.csv_source import CsvSource
from setforge.testing import check_component

TABLE = """\
age,height,colour,city,species,person
31,1.80,red,"Paris, FR",cat,p1
42,,blue,Oslo,dog,p1
27,1.65,red,Oslo,dog,p2

55,1.72,green,Lima,cat,p3,oops
19,inf,red,Oslo,cat,p4
63,1.91,NA,Oslo,cat,p5
38,1.70,blue,Lima,10,p5
22,1.55,green,"Paris, FR",2,p6
"""


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path, on_invalid="error", **params):
    source = CsvSource({"path": path, **params})
    return source.load(StepContext.from_seed(0), on_invalid=on_invalid), source


def test_first_invalid_line_names_line_and_column(tmp_path):
    path = write(tmp_path, TABLE)
    with pytest.raises(DataError, match=r"csv t.csv: line 3, column 'height': missing value .*on_invalid: drop"):
        load(path, label="species")


def test_a_row_with_a_cell_over_several_lines_is_named_by_the_line_it_starts_on(tmp_path):
    path = write(tmp_path, 'note,size,label\n"one\ntwo\nthree",1.5,a\n"x\ny",,b\nz,2.5,a\n')
    with pytest.raises(DataError, match=r"line 5, column 'size': missing value"):  # lines 5-6, not line 6
        load(path, label="label")


def test_drop_counts_every_reason_and_keeps_the_good_rows(tmp_path):
    ds, source = load(write(tmp_path, TABLE), on_invalid="drop", label="species", group="person")
    assert source.dropped == {"missing value": 2, "ragged row": 1, "not a finite number": 1}
    info = ds.features
    assert info.names == ("age", "height", "colour", "city")
    assert info.dtypes == {"age": "int64", "height": "float64", "colour": "str", "city": "str"}
    assert info.categorical == {"colour": ("blue", "green", "red"), "city": ("Lima", "Oslo", "Paris, FR")}
    assert info.label == "species"
    # Labels sort as text when any is not a number.
    assert ds.classes == ("10", "2", "cat", "dog")
    expected = torch.tensor([[31, 1.80, 2, 2], [27, 1.65, 2, 1], [38, 1.70, 0, 0], [22, 1.55, 1, 2]],
                            dtype=torch.float32)
    assert torch.equal(ds.x, expected)
    assert ds.y.tolist() == [2, 3, 0, 1]
    assert ds.groups.tolist() == [0, 1, 2, 3]  # p1, p2, p5, p6: codes of the groups that stay


def test_numeric_labels_sort_by_value_and_declared_classes_reject_others(tmp_path):
    path = write(tmp_path, "x,label\n1,10\n2,2\n3,1\n4,7\n")
    ds, _ = load(path)
    assert ds.classes == ("1", "2", "7", "10") and ds.y.tolist() == [3, 1, 0, 2]
    with pytest.raises(DataError, match=r"line 5, column 'label' \('7'\): label outside the class list"):
        load(path, classes=["1", "2", "10"])
    ds, source = load(path, on_invalid="drop", classes=["10", "2", "1"])
    assert ds.classes == ("10", "2", "1") and ds.y.tolist() == [0, 1, 2]
    assert sum(source.dropped.values()) == 1


def test_declared_categorical_columns_and_numbers_elsewhere(tmp_path):
    path = write(tmp_path, "zip,size,label\n10,1.5,a\n9,2.5,b\n10,big,a\n100,3,b\n")
    with pytest.raises(DataError, match=r"line 4, column 'size' \('big'\): not a number"):
        load(path, categorical=["zip"])
    ds, _ = load(path, on_invalid="drop", categorical=["zip"])
    assert ds.features.categorical == {"zip": ("9", "10", "100")}  # by value, not as text
    assert ds.features.dtypes == {"zip": "int64", "size": "float64"}
    assert ds.x.tolist() == [[1.0, 1.5], [0.0, 2.5], [2.0, 3.0]]
    # Inferred: a column with any text is categorical.
    ds, _ = load(path)
    assert ds.features.categorical == {"size": ("1.5", "2.5", "3", "big")}


def test_ignore_delimiter_bom_and_custom_missing_values(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_bytes("\ufeffid;a;b;label\nr1;1;-;x\nr2;2;5;y\nr3;3;NA;x\n".encode("utf-8"))
    ds, source = load(path, on_invalid="drop", delimiter=";", ignore=["id"], missing=["-"])
    assert ds.features.names == ("a", "b")
    assert ds.features.categorical == {"b": ("5", "NA")}
    assert ds.x.tolist() == [[2.0, 0.0], [3.0, 1.0]] and source.dropped == {"missing value": 1}


def test_named_columns_must_exist_and_the_header_must_be_sound(tmp_path):
    with pytest.raises(DataError, match=r"label column\(s\) \['label'\] not in the header \['a', 'b'\]"):
        load(write(tmp_path, "a,b\n1,2\n"))
    with pytest.raises(DataError, match=r"group column\(s\) \['who'\]"):
        load(write(tmp_path, "a,label\n1,x\n"), group="who")
    with pytest.raises(DataError, match=r"names columns \['a'\] more than once"):
        load(write(tmp_path, "a,a,label\n1,2,x\n"))
    with pytest.raises(DataError, match="empty"):
        load(write(tmp_path, "\n\n"))
    with pytest.raises(DataError, match="no feature columns"):
        load(write(tmp_path, "label\nx\n"))
    with pytest.raises(DataError, match="no valid rows"):
        load(write(tmp_path, "a,label\n,x\n"), on_invalid="drop")
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nowhere.csv")
    with pytest.raises(ConfigError, match="names a class twice"):
        CsvSource({"classes": ["a", "a"]})


def test_conforms():
    check_component(CsvSource)


UNLABELLED = """\
width,colour,label
1.0,red,a
2.0,blue,
3.0,red,b
4.0,green,NA
5.0,,
6.0,blue,a
"""


def test_empty_label_cells_are_invalid_rows_by_default_with_a_hint(tmp_path):
    path = write(tmp_path, UNLABELLED)
    with pytest.raises(DataError, match=r"line 3, column 'label' \(an unlabelled row\? set source.params.unlabelled: keep\)"):
        load(path)


def test_unlabelled_keep_holds_rows_with_a_missing_label_apart(tmp_path):
    parts, source = load(write(tmp_path, UNLABELLED), on_invalid="drop", unlabelled="keep", classes=["a", "b"])
    assert isinstance(parts, Splits) and parts.val is None and parts.test is None
    assert source.dropped == {"missing value": 1}  # line 6: its colour is missing too
    assert parts.train.classes == ("a", "b") and parts.train.y.tolist() == [0, 1, 0]
    assert parts.train.x[:, 0].tolist() == [1.0, 3.0, 6.0]
    assert parts.unlabelled.x[:, 0].tolist() == [2.0, 4.0]
    # One category list for both parts, from every row that stays: blue, green, red.
    assert parts.train.features.categorical == {"colour": ("blue", "green", "red")}
    assert parts.unlabelled.x[:, 1].tolist() == [0.0, 1.0]


def test_unlabelled_keep_without_unlabelled_rows_is_a_plain_table(tmp_path):
    ds, _ = load(write(tmp_path, "width,label\n1,a\n2,b\n"), unlabelled="keep")
    assert not isinstance(ds, Splits) and ds.y.tolist() == [0, 1]


def test_every_row_unlabelled_is_explained(tmp_path):
    with pytest.raises(DataError, match="every valid row is unlabelled .*label some rows"):
        load(write(tmp_path, "width,label\n1,\n2,?\n"), unlabelled="keep")


def test_a_row_dropped_for_its_label_does_not_make_a_column_categorical(tmp_path):
    # (found by an audit: "oops" in a row whose label is outside classes made column b categorical,
    # so the rows that stayed held codes 0 and 1 instead of 2 and 6)
    path = write(tmp_path, "a,b,label\n1,2,x\n3,oops,zz\n5,6,y\n")
    ds, source = load(path, on_invalid="drop", classes=["x", "y"])
    assert ds.x[:, 1].tolist() == [2.0, 6.0] and ds.features.categorical == {}
    assert source.dropped == {"label outside the class list ['x', 'y']": 1}


def test_numbers_are_read_as_pandas_reads_them(tmp_path):
    # (found by an audit: Python's float() read 1_000 as 1000 and full-width digits as numbers)
    path = write(tmp_path, "a,b,c,label\n1_000,１２,1e3,x\n2,3,4,y\n5,6,-inf,y\n")
    ds, source = load(path, on_invalid="drop")
    # (the categories, words, sort as text: "1_000" before "2")
    assert ds.features.categorical == {"a": ("1_000", "2"), "b": ("3", "１２")} and ds.x[:, 2].tolist() == [1000.0, 4.0]
    assert source.dropped == {"not a finite number": 1}


def test_a_column_with_a_value_per_row_is_warned_about_as_an_id_or_a_date(tmp_path):
    # (found by a user-journey audit: patient_id and visit_date silently became categorical features
    # with one category per row, and SMOTE-NC copied real patient ids into its new rows)
    import warnings

    lines = ["patient_id,age,site,visit_date,label"] + [
        f"P{i:03d},{20 + i % 7},{('east', 'west', 'north')[i % 3]},2020-01-{1 + i % 28:02d}{'x' if i >= 28 else ''},{'ab'[i % 2]}"
        for i in range(30)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.warns(UserWarning) as caught:
        (ds, _) = load(path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert messages[0].startswith("csv t.csv: column 'patient_id' holds 30 different values in 30 rows, so it became a "
                                  "categorical feature with 30 categories (an id, a date or free text?)")
    assert "leave it out with source.params.ignore: [patient_id]" in messages[0]
    assert "column 'visit_date' holds 30 different values in 30 rows" in messages[1]
    assert len(ds.features.categorical["site"]) == 3  # (a real category: no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(path, ignore=["patient_id", "visit_date"])  # left out: nothing to say
        load(path, categorical=["site", "visit_date"], ignore=["patient_id"])  # declared: the user's choice
        load(write(tmp_path, "\n".join(lines[:19]) + "\n", "small.csv"))  # 18 rows: too few to tell
