"""quality-gate: planted off-class rows and copies of real rows are rejected, counted per class and
reason, and shown in the report."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from setforge import Dataset, Origin, StepContext
from setforge.tools.cli import main
from setforge.plugins.resample.quality_gate import QualityGate
from setforge.plugins.source.sklearn import DigitsSource
from setforge.testing import check_component

GATE = {"model": "logistic-regression", "epochs": 40, "patience": 3}


def _generated(x: torch.Tensor, y: torch.Tensor, classes) -> Dataset:
    return Dataset(x=x, y=y, classes=classes, modality="image", origin=torch.full_like(y, int(Origin.GENERATED)),
                   step=torch.zeros_like(y), parent=torch.full_like(y, -1), row_id=torch.full_like(y, -1))


@pytest.fixture(scope="module")
def planted():
    """Long-tailed real digits plus "generated" rows: unseen real digits with their own labels, unseen
    digits given the next class's label (planted off-class) and exact copies of training rows."""
    splits = DigitsSource({"imbalance": 5}).load(StepContext.from_seed(0))
    train, pool = splits.train, splits.test
    half = len(pool) // 2
    good = _generated(pool.x[:half], pool.y[:half], train.classes)
    off = _generated(pool.x[half:], (pool.y[half:] + 1) % 10, train.classes)
    copies = _generated(train.x[::7], train.y[::7], train.classes)
    return train, good, off, copies, Dataset.concat([train, good, off, copies])


def test_conformance():
    check_component(QualityGate)


def test_planted_off_class_rows_and_copies_are_rejected(planted, tmp_path):
    train, good, off, copies, ds = planted
    gate = QualityGate(GATE)
    out = gate.resample(ds, StepContext.from_seed(0, workdir=tmp_path))
    n_real, n_good, n_off = len(train), len(good), len(off)
    kept = out.origin == int(Origin.REAL)
    assert int(kept.sum()) == n_real and torch.equal(out[kept].x, train.x)  # real rows are never dropped
    details = gate.report_details()
    assert details["checked"] == n_good + n_off + len(copies)
    assert details["by_reason"]["near-copy"] == len(copies)  # every exact copy, and nothing else
    off_rejected = details["by_reason"]["off-class"]
    survivors = len(out) - n_real
    # nearly every planted row goes, nearly every correct one stays
    assert off_rejected >= 0.9 * n_off
    assert survivors >= 0.85 * n_good
    assert off_rejected <= n_off + 0.15 * n_good
    per_class = details["by_class"]
    assert sum(c["off-class"] for c in per_class.values()) == off_rejected
    assert sum(c["checked"] for c in per_class.values()) == details["checked"]
    assert json.loads((tmp_path / "rejected.json").read_text()) == details
    assert "rejected" in details["summary"]
    figures = gate.report_figures()
    assert set(figures) == {"rejected-off-class", "rejected-near-copy"}
    assert all(png.startswith(b"\x89PNG") for png in figures.values())


def test_origins_not_listed_are_not_checked(planted):
    _, good, off, copies, ds = planted
    resampled = ds.replace(origin=torch.where(ds.origin == int(Origin.GENERATED), int(Origin.RESAMPLED), ds.origin))
    gate = QualityGate({**GATE, "origins": ["generated"]})
    out = gate.resample(resampled, StepContext.from_seed(0))
    assert len(out) == len(ds) and gate.report_details()["checked"] == 0


def test_a_run_with_the_gate_ablation_and_utility(tmp_path, capsys):
    models = {"model": "logistic-regression", "epochs": 20, "patience": 3, "repeats": 3}
    config = {
        "seed": 0, "device": "cpu",
        "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
        "split": {"val": 0.1},
        "pipeline": [{"augment": "affine", "params": {"degrees": 40, "translate": 0.3}, "copies": 2,
                      "minority": True},
                     {"resample": "quality-gate", "params": {**GATE, "threshold": 0.5}}],
        "evaluate": [{"name": "utility", "params": models}, {"name": "ablation", "params": models}],
        "output": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    gate = report["steps"][1]
    details = gate["details"]
    assert details["checked"] == report["steps"][0]["counts"]["by_origin"]["augmented"]
    assert gate["rows_in"] - gate["rows_out"] == details["rejected"] > 0
    assert details["summary"] in printed
    for relpath in gate["figures"].values():
        assert (out / relpath).read_bytes().startswith(b"\x89PNG")
    assert "step [1] quality-gate" in (out / "report.html").read_text()
    verdicts = [row[3] for row in report["metrics"]["tables"]["ablation"]["steps"]["rows"][1:]]
    assert len(verdicts) == 2 and set(verdicts) <= {"helped", "hurt", "within noise"}
    assert "utility" in report["metrics"]["measures"] and "std" in report["metrics"]["measures"]["utility"]["raw/accuracy"]
