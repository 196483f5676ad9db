"""What the class counts at a step decide (`check_counts`) is refused by ``run --dry-run`` from the
counts it plans for the step, and by the step when it runs (exit 3, at ``pipeline[i].params.<key>``),
with the values that would work: a neighbour count larger than the classes it searches, a
``sampling_strategy`` imbalanced-learn would refuse. Found by a user-journey audit: the dry run
showed the counts and exited 0, then the run stopped with exit 3 (imbalanced-learn's own words, or
no place in the run file) once the step was reached."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from setforge import DataError, Dataset, StepContext, create
from setforge.plugins.resample._imblearn import class_id

from .test_categorical import mixed_cancer


def counts_data(counts, classes=None) -> Dataset:
    g = torch.Generator().manual_seed(0)
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    x = torch.randn(len(y), 3, generator=g) + y.unsqueeze(1).float()
    return Dataset(x=x, y=y, classes=classes or [f"c{i}" for i in range(len(counts))], modality="tabular")


def only(problems, key):
    assert [k for k, _ in problems] == [key], problems
    return problems[0][1]


@pytest.mark.parametrize(("name", "param"), [("smote", "k_neighbors"), ("adasyn", "n_neighbors"),
                                             ("borderline-smote", "k_neighbors"), ("smote-tomek", "k_neighbors")])
def test_a_neighbour_count_too_large_for_small_classes_names_every_one_and_what_works(name, param):
    ds = counts_data([40, 3, 4, 30])
    message = only(create("resample", name).check_counts(ds.class_counts(), ds.classes), param)
    assert message.startswith(f"class 'c1' has 3 rows (and 'c2' 4), fewer than {param} + 1 = 6; set {param} to 2 or "
                              f"lower, or {param}: auto, or over-sample these classes with random-over, or leave them "
                              "out of sampling_strategy"), message
    # the step says the same on its own input, with its name and the param
    with pytest.raises(DataError) as raised:
        create("resample", name).resample(ds, StepContext.from_seed(0))
    assert str(raised.value) == f"resample '{name}' params.{param}: {message}"
    # the value it suggests works
    assert create("resample", name, {param: 2}).check_counts(ds.class_counts(), ds.classes) == []


def test_smote_nc_on_mixed_columns_names_the_small_class():
    ds = mixed_cancer()
    keep = torch.cat([(ds.y == 0).nonzero().flatten()[:2], (ds.y == 1).nonzero().flatten()])
    message = only(create("resample", "smote-nc").check_counts(ds[keep].class_counts(), ds.classes), "k_neighbors")
    assert message.startswith("class 'malignant' has 2 rows, fewer than k_neighbors + 1 = 6; set k_neighbors to 1 or "
                              "lower, or k_neighbors: auto, or over-sample the class with random-over"), message


def test_classes_of_one_row_are_named_at_sampling_strategy_whatever_k():
    ds = counts_data([40, 1, 1, 30])
    message = only(create("resample", "smote", {"k_neighbors": "auto"}).check_counts(ds.class_counts(), ds.classes), "sampling_strategy")
    assert message == ("classes 'c1' and 'c2' have 1 row each, and a class of one row cannot be interpolated; "
                       "over-sample them with random-over, or leave them out of sampling_strategy")
    assert create("resample", "smote", {"sampling_strategy": {"c3": 40}}).check_counts(ds.class_counts(), ds.classes) == []


@pytest.mark.parametrize(("name", "params", "key", "words", "fixed"), [
    ("near-miss", {"n_neighbors": 5}, "n_neighbors",
     "version 1 measures the distance to the n_neighbors = 5 nearest rows of the minority class 'c1', which has 3; "
     "set n_neighbors to 3 or lower", {"n_neighbors": 3}),
    ("near-miss", {"version": 3, "n_neighbors": 2, "n_neighbors_ver3": 6}, "n_neighbors_ver3",
     "class 'c2' has 5; set n_neighbors_ver3 to 5 or lower", {"version": 3, "n_neighbors": 2, "n_neighbors_ver3": 5}),
    ("condensed-nearest-neighbour", {"n_neighbors": 6}, "n_neighbors",
     "starts from the 3 rows of the minority class 'c1' and n_seeds_S = 1 rows of the class it cleans, fewer than "
     "n_neighbors = 6; set n_neighbors to 4 or lower, or n_seeds_S to 3 or more", {"n_neighbors": 4}),
    ("one-sided-selection", {"n_neighbors": 6}, "n_neighbors", "set n_neighbors to 4 or lower", {"n_seeds_S": 3,
                                                                                                  "n_neighbors": 6}),
    ("edited-nearest-neighbours", {"n_neighbors": 40}, "n_neighbors",
     "n_neighbors = 40 asks for a row and its 40 nearest neighbours, and the data has 38 rows; set n_neighbors to "
     "37 or lower", {"n_neighbors": 37}),
    ("neighbourhood-cleaning-rule", {"n_neighbors": 38}, "n_neighbors", "set n_neighbors to 37 or lower",
     {"n_neighbors": 37}),
    ("svm-smote", {"k_neighbors": 2, "m_neighbors": 40}, "m_neighbors", "the data (every class) has 38 rows; set "
     "m_neighbors to 37 or lower", {"k_neighbors": 2, "m_neighbors": 37}),
])
def test_other_neighbour_counts_are_checked_as_imbalanced_learn_searches(name, params, key, words, fixed):
    ds = counts_data([30, 3, 5])
    assert words in only(create("resample", name, params).check_counts(ds.class_counts(), ds.classes), key)
    # without the check imbalanced-learn refuses it; the suggested value runs
    sampler = create("resample", name, params)
    sampler._check = lambda ds: None
    sampler._k_problem = lambda *args: None
    with pytest.raises(DataError, match="cannot resample this data: Expected n_neighbors <= n_samples_fit"):
        sampler.resample(ds, StepContext.from_seed(0))
    assert create("resample", name, fixed).check_counts(ds.class_counts(), ds.classes) == []
    create("resample", name, fixed).resample(ds, StepContext.from_seed(0))


def _imblearn_takes(strategy, counts, family) -> bool:
    from imblearn.utils import check_sampling_strategy

    try:
        check_sampling_strategy(strategy, np.repeat(np.arange(len(counts)), counts), family)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize(("name", "family", "words"), [
    ("random-under", "under-sampling", "would need rows added: class 'c1' has 42 rows and 'c0' 247 (a ratio of "
                                       "0.170), and an under-sampler only drops rows; use a ratio of at least 0.17"),
    ("smote", "over-sampling", "adds no rows: class 'c1' has 42 rows and 'c0' 247 (a ratio of 0.170), and an "
                               "over-sampler only adds rows; use a ratio of at least 0.18"),
])
def test_a_ratio_imbalanced_learn_would_refuse_says_which_ratios_work(name, family, words):
    ds = counts_data([247, 42])
    message = only(create("resample", name, {"sampling_strategy": 0.1}).check_counts(ds.class_counts(), ds.classes), "sampling_strategy")
    assert message.startswith("a ratio of 0.1 (minority/majority rows after resampling) ") and words in message
    least = float(re.search(r"at least ([0-9.]+)", message).group(1))
    assert _imblearn_takes(least, [247, 42], family) and not _imblearn_takes(round(least - 0.01, 2), [247, 42], family)
    assert create("resample", name, {"sampling_strategy": least}).check_counts(ds.class_counts(), ds.classes) == []
    with pytest.raises(DataError) as raised:  # the step, on its own input: the same words, not imbalanced-learn's
        create("resample", name, {"sampling_strategy": 0.1}).resample(ds, StepContext.from_seed(0))
    assert str(raised.value) == f"resample '{name}' params.sampling_strategy: {message}"


def test_a_mapping_beyond_the_rows_a_class_has_says_how_many_work():
    ds = counts_data([247, 42], ["benign", "malignant"])
    message = only(create("resample", "random-under", {"sampling_strategy": {"benign": 500}}).check_counts(ds.class_counts(), ds.classes),
                   "sampling_strategy")
    assert message == ("asks for 500 rows of class 'benign', which has 247: an under-sampler only drops rows, so ask "
                       "for at most 247 rows for class 'benign'")
    message = only(create("resample", "random-over", {"sampling_strategy": {"benign": 300, "malignant": 10}})
                   .check_counts(ds.class_counts(), ds.classes), "sampling_strategy")
    assert message.endswith("so ask for at least 42 rows for class 'malignant'"), message
    assert create("resample", "random-under", {"sampling_strategy": {"benign": 247}}).check_counts(ds.class_counts(), ds.classes) == []


CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 11},{'rare' if i < 20 else 'common'}\n" for i in range(120))


@pytest.mark.parametrize(("step", "place", "words"), [
    # (0.1 would be refused for the training split as loaded; after the augment step doubles the
    # common class it is accepted, and the dry run plans with the counts the step gets)
    ({"resample": "random-under", "params": {"sampling_strategy": 0.05}}, "pipeline[1].params.sampling_strategy",
     "use a ratio of at least"),
    ({"resample": "random-under", "params": {"sampling_strategy": {"common": 500}}},
     "pipeline[1].params.sampling_strategy", "so ask for at most"),
    ({"resample": "smote", "params": {"k_neighbors": 30}}, "pipeline[1].params.k_neighbors",
     "fewer than k_neighbors + 1 = 31"),
])
def test_the_dry_run_and_the_step_stop_at_the_param(tmp_path, step, place, words):
    (tmp_path / "data.csv").write_text(CSV)
    config = {"seed": 0, "device": "cpu", "source": {"name": "csv", "params": {"path": "data.csv"}},
              "split": {"test": 0.3, "val": 0.0},
              "pipeline": [{"augment": "feature-noise", "copies": 1, "classes": ["common"]}, step],
              "evaluate": [], "output": {"dir": str(tmp_path / "run")}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    key = place.rpartition(".")[2]
    for extra, said in ((["--dry-run"], f"{place}: "), ([], f") params.{key}: ")):
        done = subprocess.run([sys.executable, "-m", "setforge", "run", str(path), *extra], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 3, done.stderr
        assert said in done.stderr and words in done.stderr and "pipeline[1]" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "Please increase the ratio" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_class_names_that_are_numbers_are_never_read_as_ids_from_text():
    # (found by an audit: the docs said "a number is an id", and a mapping key can only be text)
    assert class_id("3", ["1", "3"], "p") == 1  # the class named 3
    assert class_id(0, ["1", "3"], "p") == 0  # a number (a list entry, or from Python) is an id
    assert class_id("0", ["cat", "dog"], "p") == 0  # text that cannot be a name here is an id
    with pytest.raises(DataError, match=r"^p: unknown class '0'; the classes are \['1', '3'\]: names that are "
                                        r"numbers, so a quoted number is a class name, not an id$"):
        class_id("0", ["1", "3"], "p")
    ds = counts_data([50, 10], ["1", "3"])
    assert create("resample", "random-over", {"sampling_strategy": {"3": 30}}).resample(
        ds, StepContext.from_seed(0)).class_counts() == [50, 30]
    (key, message), = create("resample", "random-over", {"sampling_strategy": {"0": 30}}).check_classes(ds.classes)
    assert key == "sampling_strategy" and "a quoted number is a class name, not an id" in message


def test_the_docs_say_how_to_write_a_class_key():
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("docs", "resamplers.md").read_text()
    assert "a number is an id" not in text  # (mapping keys cannot be numbers in a run file)
    assert "**Mapping keys are text**" in text and "keys must be strings, got an integer 3" in text


def test_random_over_with_shrinkage_points_at_itself_without_shrinkage():
    (key, message), = create("resample", "random-over", {"shrinkage": 0.5}).check_data(mixed_cancer())
    assert key == "shrinkage"
    assert message.endswith("use resample 'smote-nc' (mixed columns), 'smoten' (all categorical) or 'random-over' "
                            "without shrinkage instead"), message


def test_a_step_after_one_that_adds_rows_is_checked_with_the_counts_it_gets(tmp_path):
    # (checked against the training split as loaded, 0.1 was refused although the augment step
    # before it doubles the common class and imbalanced-learn takes it there)
    (tmp_path / "data.csv").write_text(CSV)
    config = {"seed": 0, "device": "cpu", "source": {"name": "csv", "params": {"path": "data.csv"}},
              "split": {"test": 0.3, "val": 0.0},
              "pipeline": [{"augment": "feature-noise", "copies": 1, "classes": ["common"]},
                           {"resample": "random-under", "params": {"sampling_strategy": 0.1}}],
              "evaluate": [], "output": {"dir": str(tmp_path / "run")}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    for extra in (["--dry-run"], ["--quiet"]):
        done = subprocess.run([sys.executable, "-m", "setforge", "run", str(path), *extra], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
