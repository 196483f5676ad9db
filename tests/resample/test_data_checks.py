"""A sampler that cannot take the data's columns (SMOTE on categorical columns, ...) is refused once the
source is loaded, before any step runs and in ``run --dry-run`` (`Resampler.check_data`, exit 2 at the
step), not when its step is reached after earlier steps have run."""

from __future__ import annotations

import pytest
import torch
import yaml

from setforge import ConfigError, DataError, Dataset, StepContext, create
from setforge.tools.cli import main

from .conftest import breast_cancer
from .test_categorical import all_categorical_cancer, mixed_cancer

BLUR = "which would blur the codes of the categorical columns"


@pytest.mark.parametrize(("name", "params", "make", "key", "words"), [
    ("smote", {}, mixed_cancer, "", [BLUR, "['size', 'rough']", "use resample 'smote-nc'"]),
    ("adasyn", {}, mixed_cancer, "", [BLUR, "'smoten' (all categorical)"]),
    ("random-over", {"shrinkage": 0.5}, mixed_cancer, "shrinkage", ["with shrinkage adds noise", BLUR]),
    ("cluster-centroids", {"voting": "soft"}, mixed_cancer, "voting", ["with soft voting averages rows", "voting: hard"]),
    ("smote-nc", {}, breast_cancer, "", ["needs categorical columns", "use resample 'smote'"]),
    ("smote-nc", {}, all_categorical_cancer, "", ["needs at least one numeric column", "use resample 'smoten'"]),
    ("smoten", {}, mixed_cancer, "", ["needs every column categorical", "use resample 'smote-nc'"]),
])
def test_check_data_names_the_key_and_what_would_work_and_the_step_refuses_alike(name, params, make, key, words):
    ds = make()
    sampler = create("resample", name, params)
    (found_key, message), = sampler.check_data(ds)
    assert found_key == key
    for word in words:
        assert word in message, (word, message)
    with pytest.raises(DataError) as raised:  # called outside a run, the step says the same
        sampler.resample(ds, StepContext.from_seed(0))
    assert str(raised.value) == message


@pytest.mark.parametrize(("name", "params", "make"), [
    ("smote", {}, breast_cancer), ("random-over", {}, mixed_cancer), ("random-over", {"shrinkage": 0.5}, breast_cancer),
    ("cluster-centroids", {"voting": "hard"}, mixed_cancer), ("smote-nc", {}, mixed_cancer),
    ("smoten", {}, all_categorical_cancer), ("random-under", {}, mixed_cancer),
])
def test_check_data_takes_what_the_sampler_can_take(name, params, make):
    assert create("resample", name, params).check_data(make()) == []


def test_outlier_filter_needs_a_numeric_column():
    ds = all_categorical_cancer()
    (key, message), = create("resample", "outlier-filter").check_data(ds)
    assert key == "" and "every column is categorical" in message
    assert create("resample", "outlier-filter").check_data(mixed_cancer()) == []


MIXED_CSV = "age,height,colour,label\n" + "".join(
    f"{20 + i},{1.5 + (i % 7) / 10:.2f},{('red', 'blue', 'green')[i % 3]},{'a' if i < 45 else 'b'}\n" for i in range(60))


def _run_file(tmp_path, resample: str) -> str:
    (tmp_path / "mixed.csv").write_text(MIXED_CSV)
    config = {"seed": 0, "device": "cpu", "source": {"name": "csv", "params": {"path": "mixed.csv"}},
              "split": {"test": 0.3, "val": 0.0},
              "pipeline": [{"augment": "feature-noise", "copies": 1}, {"resample": resample}],
              "evaluate": [], "output": {"dir": str(tmp_path / "run")}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_smote_on_categorical_csv_columns_stops_the_run_before_its_first_step(tmp_path, capsys, monkeypatch):
    # (found by an audit: validate and --dry-run passed, and the run stopped with exit 3 only when the
    # resample step was reached, after the augment step before it had run)
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    path = _run_file(tmp_path, "smote")
    expected = ("pipeline[1].resample: resample 'smote' interpolates between rows, which would blur the codes of "
                "the categorical columns ['colour']; use resample 'smote-nc' (mixed columns), 'smoten' (all "
                "categorical) or 'random-over' instead")
    for args in (["run", path, "--dry-run"], ["run", path, "--quiet"]):
        assert main(args) == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()  # no step ran, nothing kept
    path = _run_file(tmp_path, "smote-nc")  # what the message names works
    assert main(["run", path, "--dry-run"]) == 0


def test_a_problem_of_a_param_is_placed_at_the_param_in_the_dry_run(tmp_path):
    # (asked of the preprocessed training split, which is what the steps get)
    from setforge.config import RunConfig
    from setforge.registry import Registry
    from setforge.tools.dryrun import dry_plan

    (tmp_path / "mixed.csv").write_text(MIXED_CSV)
    config = RunConfig.model_validate({
        "seed": 0, "device": "cpu", "source": {"name": "csv", "params": {"path": str(tmp_path / "mixed.csv")}},
        "split": {"test": 0.3, "val": 0.0}, "preprocess": ["standardize"],
        "pipeline": [{"resample": "random-over", "params": {"shrinkage": 0.1}}], "evaluate": [],
        "output": {"dir": str(tmp_path / "run")}})
    with pytest.raises(ConfigError) as raised:
        dry_plan(config, Registry(use_env=False).load())
    assert [place for place, _ in raised.value.problems] == ["pipeline[0].params.shrinkage"]


def test_an_image_step_without_features_is_not_refused():
    x = torch.rand(20, 1, 4, 4)
    ds = Dataset(x=x, y=torch.arange(20) % 2, classes=("a", "b"), modality="image")
    assert create("resample", "smote").check_data(ds) == []
