"""tabular-gan from run files: breast cancer, and a CSV with categorical columns written back as csv;
tstr and utility (gradient-boosting) reported."""

import csv
import json

import numpy as np
import yaml

from setforge.tools.cli import main

GAN = {"steps": 30, "batch_size": 100, "embedding_dim": 16, "generator_dims": [32], "critic_dims": [32],
       "max_modes": 4, "checkpoint_every": 10}


def run(tmp_path, config):
    config = dict(config)
    config.setdefault("output", {})
    config["output"] = {**config["output"], "dir": str(tmp_path / "out")}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    return json.loads((tmp_path / "out" / "report.json").read_text())


def test_breast_cancer_run_reports_tstr(tmp_path):
    report = run(tmp_path, {
        "seed": 0, "device": "cpu", "source": "sklearn-breast-cancer",
        "pipeline": [{"generate": "tabular-gan", "guard": "off", "params": GAN, "multiply": 1}],
        "evaluate": [{"name": "tstr", "params": {"epochs": 30}},
                     {"name": "utility", "params": {"model": "gradient-boosting", "epochs": 30}}]})
    tstr = report["metrics"]["measures"]["tstr"]
    test_rows = tstr["real/macro_f1"]["n"]
    assert tstr["real/macro_f1"]["value"] > 0.85
    for path in ("generated", "step/0"):
        assert 0.0 <= tstr[f"{path}/macro_f1"]["value"] <= 1.0
        assert tstr[f"{path}/macro_f1"]["n"] == test_rows
        assert tstr[f"{path}/ratio/balanced_accuracy"]["value"] > 0
    assert tstr["step/0/train_rows"]["value"] == tstr["real/train_rows"]["value"]  # multiply: 1
    assert "optimised/macro_f1" in report["metrics"]["measures"]["utility"]


def write_table(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "churn" if rng.random() < 0.3 else "stay"
        plan = rng.choice(["basic", "plus", "pro"], p=[0.6, 0.3, 0.1])
        region = rng.choice(["north", "south", "east", "west"])
        age = int(np.clip(rng.normal(40 + (8 if label == "churn" else 0), 10), 18, 80))
        spend = round(float(rng.gamma(2.0, 20.0 + (15 if plan == "pro" else 0))), 2)
        rows.append({"age": age, "plan": plan, "spend": spend, "region": region, "label": label})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["age", "plan", "spend", "region", "label"])
        writer.writeheader()
        writer.writerows(rows)


def test_csv_with_categorical_columns_decodes_categories(tmp_path):
    write_table(tmp_path / "customers.csv")
    report = run(tmp_path, {
        "seed": 1, "device": "cpu", "source": {"name": "csv", "params": {"path": "customers.csv"}},
        "pipeline": [{"generate": "tabular-gan", "guard": "off", "params": GAN, "per_class": 250}],
        "evaluate": [{"name": "tstr", "params": {"epochs": 30}}],
        "output": {"format": "csv"}})
    assert report["metrics"]["measures"]["tstr"]["step/0/macro_f1"]["n"] > 0
    with open(tmp_path / "out" / "train.csv") as f:
        table = list(csv.DictReader(f))
    real = list(csv.DictReader(open(tmp_path / "customers.csv")))
    manifest = json.loads((tmp_path / "out" / "train.manifest.json").read_text())
    generated = [row for row, origin in zip(table, manifest["origin"]) if origin == "generated"]
    assert len(generated) >= 250
    ages = [int(r["age"]) for r in real]
    spends = [float(r["spend"]) for r in real]
    for row in generated:
        assert row["plan"] in {"basic", "plus", "pro"} and row["region"] in {"north", "south", "east", "west"}
        assert row["label"] in {"churn", "stay"}
        assert row["age"].lstrip("-").isdigit() and min(ages) <= int(row["age"]) <= max(ages)
        assert min(spends) <= float(row["spend"]) <= max(spends)
    assert len({row["plan"] for row in generated}) >= 2
