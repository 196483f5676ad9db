"""The distribution metrics from a run file: digits with augmented and resampled rows, breast cancer
with resampled rows; their numbers, sample sizes and figures land in the run folder."""

import json

import pytest
import yaml

from setforge.tools.cli import main

DIGITS = {
    "seed": 3, "device": "cpu",
    "source": {"name": "sklearn-digits", "params": {"imbalance": 5}},
    "pipeline": [{"augment": "affine", "params": {"degrees": 10}, "copies": 1, "minority": True},
                 {"resample": "smote"}],
    "evaluate": [{"name": "fid", "params": {"cnn_epochs": 20, "per_class": False}},
                 {"name": "kid", "params": {"cnn_epochs": 20, "per_class": False, "subsets": 10, "subset_size": 50}},
                 {"name": "prdc", "params": {"feature_space": "raw", "per_class": False}},
                 {"name": "memorisation", "params": {"feature_space": "raw", "per_class": False}}],
}


def run(tmp_path, config):
    config = dict(config, output={"dir": str(tmp_path / "out")})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    return json.loads((tmp_path / "out" / "report.json").read_text())


def test_distribution_metrics_on_digits_from_a_run_file(tmp_path):
    report = run(tmp_path, DIGITS)
    measures = report["metrics"]["measures"]
    for origin in ("augmented", "resampled"):
        assert measures["fid"][f"{origin}/overall"]["value"] > 0
        assert measures["fid"][f"{origin}/overall"]["n"] > 20
        assert "std" in measures["kid"][f"{origin}/overall"]
        for name in ("precision", "recall", "density", "coverage"):
            assert measures["prdc"][f"{origin}/overall/{name}"]["value"] >= 0
        assert measures["memorisation"][f"{origin}/overall/dcr_ratio"]["value"] > 0
    # SMOTE interpolates between real rows, so its rows sit closer to real ones than held-out rows do
    assert measures["memorisation"]["resampled/overall/dcr_ratio"]["value"] < 1
    figures = list((tmp_path / "out").rglob("*closest-pairs*.png"))
    assert figures, "memorisation keeps its closest pairs as figures"


@pytest.mark.parametrize("evaluator", ["fid", "kid", "prdc", "memorisation"])
def test_each_metric_on_breast_cancer(tmp_path, evaluator):
    params = {"per_class": False, **({"subsets": 10, "subset_size": 50} if evaluator == "kid" else {})}
    report = run(tmp_path, {"seed": 0, "source": "sklearn-breast-cancer", "pipeline": [{"resample": "smote"}],
                            "evaluate": [{"name": evaluator, "params": params}]})
    values = report["metrics"]["measures"][evaluator]
    assert any(path.startswith("resampled/overall") for path in values)
