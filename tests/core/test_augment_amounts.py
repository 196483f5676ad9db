"""Augment steps take the amount keys generate takes (``target: balance``, ``per_class``,
``multiply``): counts from a run file on long-tailed digits, the dry run's plan against the real
run, the round-robin choice of source rows, and the keys' exclusivity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from setforge.tools.cli import main

_LONG_TAILED = [110, 85, 66, 50, 39, 30, 23, 18, 13, 11]  # sklearn-digits imbalance 10, after val is carved


def _run(tmp_path, step, extra_steps=(), name="run"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
        "pipeline": [{"augment": "flip", **step}, *extra_steps], "evaluate": [],
        "output": {"dir": str(tmp_path / name)}}))
    return path


def _counts(folder, step=None):
    report = json.loads((folder / "report.json").read_text())
    counts = report["counts"]["optimised"] if step is None else report["steps"][step]["counts"]
    return [counts["by_class"][c] for c in report["classes"]]


def test_target_balance_makes_the_classes_equal_and_smote_then_adds_nothing(tmp_path, capsys):
    path = _run(tmp_path, {"target": "balance", "minority": True}, [{"resample": "smote"}])
    assert main(["run", str(path), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert main(["run", str(path), "--quiet"]) == 0
    assert _counts(tmp_path / "run", 0) == [110] * 10
    assert _counts(tmp_path / "run") == [110] * 10  # the largest class stays the largest: smote has nothing to add
    table = [line.split() for line in dry.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[2]) for row in table] == [110] * 10  # the dry run's plan is what ran


def test_per_class_and_multiply(tmp_path):
    assert main(["run", str(_run(tmp_path, {"per_class": 60}, name="per")), "--quiet"]) == 0
    assert _counts(tmp_path / "per") == [max(60, n) for n in _LONG_TAILED]
    assert main(["run", str(_run(tmp_path, {"multiply": 0.5, "classes": [8, 9]}, name="mul")), "--quiet"]) == 0
    expected = list(_LONG_TAILED)
    expected[8] += int(np.floor(0.5 * 13 + 0.5))
    expected[9] += int(np.floor(0.5 * 11 + 0.5))
    assert _counts(tmp_path / "mul") == expected


def test_source_rows_are_used_round_robin(tmp_path):
    assert main(["run", str(_run(tmp_path, {"per_class": 110, "classes": [9]})), "--quiet"]) == 0
    train = np.load(tmp_path / "run" / "train-00000.npz")
    augmented = train["origin"] == "augmented"
    parents = train["parent"][augmented]
    assert augmented.sum() == 99 and (train["y"][augmented] == 9).all()
    uses = np.unique(parents, return_counts=True)[1]
    assert len(uses) == 11 and uses.max() - uses.min() == 0  # 99 = 9 x 11: every real row used 9 times


@pytest.mark.parametrize("keys, bad", [({"copies": 2, "target": "balance"}, "target"),
                                        ({"per_class": 5, "multiply": 2.0}, "multiply")])
def test_one_amount_key_only(tmp_path, capsys, keys, bad):
    assert main(["validate", str(_run(tmp_path, keys))]) == 2
    err = capsys.readouterr().err
    assert f"pipeline[0].{bad}" in err and "an augment step takes one of copies, target, per_class, multiply" in err


def test_a_generate_step_refuses_a_class_without_rows_to_fit_on_before_training():
    # (found by an audit: dcgan trained all its steps, then its sample refused the class; ctgan
    # failed with exit 4 naming an internal column)
    import torch

    from setforge import DataError, Dataset, StepContext
    from setforge.config import StepConfig
    from setforge.steps import KIND

    class Untrainable:
        name = "untrainable"

        def fit(self, ds, ctx):
            raise AssertionError("fit must not run")

    ds = Dataset(x=torch.rand(6, 2), y=torch.tensor([0, 0, 0, 1, 1, 1]), classes=("a", "b", "ghost"),
                 modality="tabular")
    step = StepConfig.model_validate({"generate": "untrainable", "target": "balance"})
    with pytest.raises(DataError, match="no rows of class 'ghost' to fit on, so it cannot be generated"):
        KIND["generate"].run(step, None, Untrainable(), ds, StepContext.from_seed(0), lambda c, a: None)


def test_a_class_with_no_rows_to_generate_from_is_found_by_the_dry_run_and_the_run_names_the_step(tmp_path, capsys):
    # (the dry run planned 0 -> 40 rows for it and exited 0; the run then stopped at the step,
    # exit 3, with a message that did not say which step)
    import numpy as np

    from setforge.tools.cli import main

    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((60, 2)).astype("float32"),
             y=np.array([0] * 40 + [1] * 20), classes=np.array(["a", "b", "c"]))
    run_file = tmp_path / "run.yaml"
    run_file.write_text("source: {name: npz, params: {path: d.npz}}\n"
                        "pipeline: [{augment: feature-noise, copies: 1},\n"
                        "           {generate: gaussian-mixture, target: balance}]\n"
                        f"evaluate: []\noutput: {{dir: {tmp_path / 'out'}}}\n")
    expected = ("pipeline[1]: generate 'gaussian-mixture': no rows of class 'c' to fit on, so it cannot be "
                "generated; leave it out with classes:")
    assert main(["run", str(run_file), "--dry-run"]) == 3
    assert expected in capsys.readouterr().err
    assert main(["run", str(run_file), "--quiet"]) == 3
    assert expected in capsys.readouterr().err
    run_file.write_text(run_file.read_text().replace("target: balance", "target: balance, classes: [a, b]"))
    assert main(["run", str(run_file), "--dry-run"]) == 0
