"""`setforge demo`: the embedded run file, its run folder and its summary."""

from __future__ import annotations

import json

import pytest

import setforge
from setforge.tools.cli import main
from setforge.tools.demo import load_demo_config


def test_the_embedded_demo_file_is_valid_and_long_tailed():
    config = load_demo_config()
    assert config.source.name == "sklearn-digits" and config.source.params["imbalance"] > 1
    evaluators = {ref.name: ref.params for ref in config.evaluate}
    assert {"balance", "utility", "ablation"} <= set(evaluators)
    assert evaluators["utility"]["model"] == "logistic-regression"
    assert config.output.dir == "runs/demo"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code = main(["demo", "--quiet"])
    return code, folder / "runs" / "demo"


def test_demo_runs_into_runs_demo_and_prints_a_summary(demo, capsys):
    code, run_dir = demo
    assert code == 0
    report = json.loads((run_dir / "report.json").read_text())
    raw = report["counts"]["raw_train"]["by_class"]
    optimised = report["counts"]["optimised"]["by_class"]
    assert min(raw.values()) >= 6  # the rarest class keeps at least 6 training rows after val
    assert max(raw.values()) >= 8 * min(raw.values())  # and the set is long-tailed
    assert len(set(optimised.values())) == 1  # random over-sampling balanced it
    measures = report["metrics"]["measures"]["utility"]
    for score in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert 0.5 < measures[f"raw/{score}"]["value"] <= 1.0
        assert 0.5 < measures[f"optimised/{score}"]["value"] <= 1.0
    assert report["counts"]["test"]["by_class"] == {str(c): 52 for c in range(10)}
    train = setforge.load(run_dir)
    assert len(train) == sum(optimised.values())


def test_demo_summary_and_rerun_needs_force(demo, capsys, monkeypatch):
    _, run_dir = demo
    monkeypatch.chdir(run_dir.parent.parent)
    assert main(["demo", "--quiet"]) == 2  # runs/demo exists
    assert "--force" in capsys.readouterr().err
    assert main(["report", str(run_dir)]) == 0
    summary = capsys.readouterr().out
    assert "training rows per class" in summary and "utility (model logistic-regression)" in summary
    assert "balanced accuracy" in summary and "resample random-over" in summary


def test_demo_headline_names_the_baseline_the_optimised_set_and_the_step(demo, capsys, monkeypatch):
    from setforge.tools.headline import headline

    _, run_dir = demo
    report = json.loads((run_dir / "report.json").read_text())
    ablation = report["metrics"]["measures"]["ablation"]
    utility = report["metrics"]["measures"]["utility"]
    # the ablation's raw and final sets are utility's raw and optimised sets, with the same seeds
    assert ablation["cumulative/0/balanced_accuracy"]["value"] == utility["raw/balanced_accuracy"]["value"]
    assert ablation["cumulative/2/balanced_accuracy"]["value"] == utility["optimised/balanced_accuracy"]["value"]
    head = headline(report)
    raw, opt = utility["raw/macro_f1"], utility["optimised/macro_f1"]
    line = head.text()
    assert f"raw {raw['value']:.4f} ± {raw['std']:.4f} -> optimised {opt['value']:.4f}" in line
    assert "3 seeds" in line
    minority = utility["delta/minority_recall"]  # the demo's smallest class (long-tailed digits) is judged too
    low, high = minority["interval"]
    assert f"; minority recall {minority['value']:+.4f} (95% interval {low:+.4f} to {high:+.4f}): " in line
    gains = {k.split("/")[1]: m["value"] for k, m in ablation.items() if k.startswith("step/") and
             k.endswith("/gain/macro_f1")}
    best = max(gains, key=lambda k: abs(gains[k]))
    assert head.step == best and f"step {best} " in line
    assert f"{gains[best]:+.4f} macro f1" in line  # the score is named (the ablation table judges balanced accuracy)
    monkeypatch.chdir(run_dir.parent.parent)
    assert main(["report", str(run_dir)]) == 0
    assert f"headline: {line}" in capsys.readouterr().out
