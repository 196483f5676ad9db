"""Preprocessing and cleaning through run files, in-process (`setforge.tools.cli.main(["run", path])`):
scaler statistics from the training split only, images resized and de-noised, near duplicates
dropped before the split and leaked rows dropped after it, with `leakage` confirming both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from setforge.tools.cli import main
from setforge.formats import read_npz_file
from setforge.plugins._shared.duplicates import duplicate_of


def run_file(folder: Path, name: str, config: dict) -> Path:
    """Write `config` as a run file in `folder`, run it, return the run folder."""
    out = folder / f"run-{name}"
    config = {"seed": 0, "device": "cpu", **config, "output": {"dir": str(out), "force": True}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["run", str(path), "--quiet"]) == 0
    return out


def report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text(encoding="utf-8"))


def leakage_measure(run: Path, name: str) -> float:
    return report(run)["metrics"]["measures"]["leakage"][name]["value"]


@pytest.fixture(scope="module")
def cancer_npz(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """Breast-cancer with its own split (400 train, 50 val, 119 test), and the same with another test split."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target
    split = np.array(["train"] * 400 + ["val"] * 50 + ["test"] * (len(x) - 450))
    folder = tmp_path_factory.mktemp("cancer")
    np.savez(folder / "a.npz", x=x, y=y, split=split, classes=np.array(data.target_names))
    other = x.copy()
    other[450:] = other[450:] * 3 + 100  # a very different test split
    np.savez(folder / "b.npz", x=other, y=y, split=split, classes=np.array(data.target_names))
    return folder / "a.npz", folder / "b.npz", x


@pytest.mark.parametrize("scaler", ["standardize", "quantile"])
def test_scaler_statistics_come_from_the_training_split_of_a_run(tmp_path, cancer_npz, scaler):
    path_a, path_b, x = cancer_npz
    runs = [run_file(tmp_path, f"{scaler}-{tag}", {"source": {"name": "npz", "params": {"path": str(path)}},
                                                   "preprocess": [scaler], "evaluate": ["leakage"]})
            for tag, path in (("a", path_a), ("b", path_b))]
    states = [torch.load(run / f"preprocess/00-{scaler}.pt", weights_only=True)["state"] for run in runs]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(torch.as_tensor(states[0][key]), torch.as_tensor(states[1][key])), key
    if scaler == "standardize":
        torch.testing.assert_close(states[0]["mean"], torch.tensor(x[:400], dtype=torch.float64).mean(0))
    # The writer inverts the scaler: written splits are in original units.
    written = read_npz_file(runs[0] / "test.npz")["x"]
    np.testing.assert_allclose(written, x[450:], rtol=1e-5, atol=1e-3)
    assert report(runs[0])["preprocess"][0]["changes_units"] is True


def test_breast_cancer_standardize_then_deduplicate_step(tmp_path):
    run = run_file(tmp_path, "cancer", {
        "source": "sklearn-breast-cancer", "split": {"test": 0.3, "val": 0.1},
        "preprocess": ["standardize"],
        "pipeline": [{"resample": "outlier-filter", "params": {"method": "robust-z"}},
                     {"resample": "deduplicate", "params": {"threshold": 0.05}}],
        "evaluate": ["leakage"]})
    rep = report(run)
    assert rep["steps"][0]["rows_out"] <= rep["steps"][0]["rows_in"]
    assert (run / "steps/00-resample-outlier-filter/removed.json").is_file()
    removed = json.loads((run / "steps/00-resample-outlier-filter/removed.json").read_text())
    assert removed["rows"] == rep["steps"][0]["rows_in"] - rep["steps"][0]["rows_out"]
    assert "optimised/near_test_rows" in rep["metrics"]["measures"]["leakage"]


def test_digits_resized_and_denoised_from_a_run_file(tmp_path):
    run = run_file(tmp_path, "digits", {
        "source": "sklearn-digits",
        "preprocess": [{"name": "resize", "params": {"size": 16}}, {"name": "denoise", "params": {"method": "gaussian"}}],
        "evaluate": [{"name": "leakage", "params": {"pairs": 4}}]})
    train = read_npz_file(run / "train-00000.npz")["x"]
    assert train.shape[1:] == (1, 16, 16) and train.min() >= 0.0 and train.max() <= 1.0
    assert read_npz_file(run / "test.npz")["x"].shape[1:] == (1, 16, 16)
    assert (run / "figures/leakage-closest-pairs.png").is_file()


@pytest.fixture(scope="module")
def digits_with_copies(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Digits with 40 planted near copies (RMS difference about 0.01) of random rows, appended."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), 40, replace=False)
    copies = np.clip(x[rows] + rng.uniform(-0.015, 0.015, x[rows].shape), 0, 1).astype(np.float32)
    x_all = np.concatenate([x, copies])
    y_all = np.concatenate([data.target, data.target[rows]])
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x=x_all, y=y_all)
    return path, x_all


def test_near_deduplication_before_the_split_leaves_nothing_to_leak(tmp_path, digits_with_copies):
    path, x = digits_with_copies
    run = run_file(tmp_path, "dedup", {"source": {"name": "npz", "params": {"path": str(path)},
                                                  "deduplicate": {"method": "near", "threshold": 0.05}},
                                       "evaluate": ["leakage"]})
    expected = int((duplicate_of(torch.from_numpy(x), method="near", threshold=0.05, modality="image") >= 0).sum())
    assert expected >= 40
    assert report(run)["source"]["duplicates_dropped"] == expected
    assert leakage_measure(run, "raw/near_test_rows") == 0
    assert leakage_measure(run, "raw/exact_test_rows") == 0


def test_drop_leaked_removes_what_leakage_reports(tmp_path, digits_with_copies):
    path, _ = digits_with_copies
    source = {"name": "npz", "params": {"path": str(path)}}
    before = run_file(tmp_path, "leaky", {"source": source, "evaluate": ["leakage"]})
    leaked = leakage_measure(before, "raw/near_train_rows")
    assert leaked > 0
    after = run_file(tmp_path, "dropped", {"source": source, "split": {"drop_leaked": True}, "evaluate": ["leakage"]})
    assert report(after)["split"]["leaked_dropped"] == leaked
    assert leakage_measure(after, "raw/near_train_rows") == 0
    assert leakage_measure(after, "raw/near_test_rows") == 0
