"""report.html as a reader gets it, the headline, ``setforge compare`` and the metrics export: from
real runs on digits with an augment and a generate step (tiny budgets)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
import yaml
from PIL import Image

from setforge.record import TrainingLog
from setforge.tools.report import metrics_rows
from setforge.tools.cli import main
from setforge.tools.compare import compare_runs, direction
from setforge.tools.headline import headline

EVIL = "<script>alert(1)</script>"


def _run_file(folder, name, steps=40, flip=True, seed=0):
    pipeline = []
    if flip:
        pipeline.append({"augment": ["flip"], "copies": 1, "minority": True})
    pipeline.append({"generate": "dcgan", "guard": "off", "params": {"steps": steps, "batch_size": 32, "checkpoint_every": 20,
                                                      "grid_every": 20, "log_every": 5}, "target": "balance"})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": seed, "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 5}},
        "split": {"test": 0.3, "val": 0.1}, "pipeline": pipeline,
        "evaluate": ["balance", {"name": "utility", "params": {"epochs": 3, "repeats": 2}}],
        "output": {"dir": str(folder / name)}}))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    for name, kwargs in (("a", {}), ("b", {"flip": False})):
        assert main(["run", str(_run_file(folder, name, **kwargs)), "--quiet"]) == 0
    return folder


def _images(page):
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_the_page_is_self_contained_with_charts_grids_and_curves(runs):
    page = (runs / "a" / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # nothing fetched: every image is data
    assert "http://" not in page and "https://" not in page
    images = _images(page)
    assert len(images) >= 6
    for png in images:
        Image.open(io.BytesIO(png)).verify()
    for caption in ("rows per class in the raw training split", "real rows (", "augmented rows (",
                    "generated rows (", "nearest real training row", "losses over training",
                    "sample grids written during training"):
        assert caption in page, caption
    # the headline comes first, before any table
    assert page.index("class='headline") < page.index("<table")


def test_training_curves_come_from_train_progress_events(runs):
    report = json.loads((runs / "a" / "report.json").read_text())
    training = report["steps"][1]["training_log"]
    assert training["iterations"] == list(range(5, 41, 5))
    assert {"discriminator", "generator"} <= set(training["losses"])
    assert all(len(v) == len(training["iterations"]) for v in training["losses"].values())


def test_headline_and_its_verdict(runs):
    report = json.loads((runs / "a" / "report.json").read_text())
    head = headline(report)
    utility = report["metrics"]["measures"]["utility"]
    assert head.score == "macro_f1" and head.repeats == 2
    assert head.raw == utility["raw/macro_f1"]["value"] and head.optimised == utility["optimised/macro_f1"]["value"]
    assert head.delta_std == utility["delta/macro_f1"]["std"]
    # the verdict reads the paired bootstrap's interval (test rows and seeds), not the seeds' std alone
    low, high = utility["delta/macro_f1"]["interval"]
    assert utility["delta/macro_f1"]["estimator"] == "paired-bootstrap" and low <= head.delta <= high
    assert head.delta_interval == (low, high) and head.level == 0.95
    assert head.verdict == ("better" if low > 0 else "worse" if high < 0 else "within noise")
    assert f", 95% interval {low:+.4f} to {high:+.4f}): {head.verdict}" in head.text()
    summary = main_output(["report", str(runs / "a")])
    assert [ln for ln in summary.splitlines() if ln.startswith("headline:")] == [f"headline: {head.text()}"]
    # the summary's and the page's raw-vs-optimised tables show each change's interval where it has one
    utility_table = summary.split("utility (model")[1].split("\n\n")[0]
    assert "interval of the change" in utility_table
    assert re.search(rf"macro f1 .* {re.escape(f'{head.delta:+.4f}')} +{re.escape(f'{low:+.4f} to {high:+.4f}')}\n",
                     utility_table + "\n")
    assert "interval of the change" not in summary.split("balance:")[1].split("\n\n")[0]  # (balance has none)
    assert f"<td>{low:+.4f} to {high:+.4f}</td>" in (runs / "a" / "report.html").read_text()


def main_output(argv, capsys=None):
    import contextlib

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return buffer.getvalue()


def test_a_worse_optimised_set_is_said_in_words():
    def measure(value, std=None):
        return {"value": value, "n": 100, "std": std}

    report = {"evaluators": {"utility": {"name": "utility", "params": {"repeats": 3}}},
              "metrics": {"measures": {"utility": {"raw/macro_f1": measure(0.9, 0.01),
                                                   "optimised/macro_f1": measure(0.5, 0.02),
                                                   "delta/macro_f1": measure(-0.4, 0.02)}}}}
    head = headline(report)
    assert head.verdict == "worse" and head.worse and "WORSE than the raw one" in head.text()
    report["metrics"]["measures"]["utility"]["optimised/macro_f1"] = measure(0.905, 0.01)
    report["metrics"]["measures"]["utility"]["delta/macro_f1"] = measure(0.005, 0.01)
    assert headline(report).verdict == "within noise"
    assert headline({"evaluators": {}, "metrics": {}}) is None


def test_the_verdict_reads_the_deltas_interval_where_the_report_has_one():
    # A model that predicts alike whatever its seed has no spread over seeds: by the seeds' std alone any
    # change, however small against the test split, would read "better". The interval covers the test rows.
    def measure(value, std=None, interval=None):
        return {"value": value, "n": 520, "std": std, **({"interval": interval} if interval else {})}

    report = {"evaluators": {"utility": {"name": "utility", "params": {"repeats": 3, "level": 0.9}}},
              "metrics": {"measures": {"utility": {"raw/macro_f1": measure(0.9, 0.0),
                                                   "optimised/macro_f1": measure(0.9019, 0.0),
                                                   "delta/macro_f1": measure(0.0019, 0.0, [-0.0041, 0.0077])}}}}
    head = headline(report)
    assert head.verdict == "within noise"
    assert "(+0.0019, 90% interval -0.0041 to +0.0077): within noise" in head.text()
    report["metrics"]["measures"]["utility"]["delta/macro_f1"]["interval"] = [0.0004, 0.0034]
    assert headline(report).verdict == "better"
    report["metrics"]["measures"]["utility"]["delta/macro_f1"]["interval"] = [-0.0034, -0.0004]
    assert headline(report).verdict == "worse"
    del report["metrics"]["measures"]["utility"]["delta/macro_f1"]["interval"]  # a report from before intervals
    head = headline(report)
    assert head.verdict == "better" and "interval" not in head.text()  # the seeds' std rule, as it was


def test_a_change_without_a_number_or_without_its_interval_is_not_judged():
    # A score stored as "nan" read "worse" (nan is neither above the spread nor above 0), and so did compare's
    # verdicts. A delta the paired bootstrap recorded with no interval (a class's one test row changed) fell
    # back to the seeds' std rule, the rule the interval replaced.
    from setforge.tools.compare import _paired_verdict, _verdict

    def report(raw, opt, delta):
        return {"evaluators": {"utility": {"name": "utility", "params": {"repeats": 3}}},
                "metrics": {"measures": {"utility": {"raw/macro_f1": {"value": raw, "n": 41, "std": 0.0},
                                                     "optimised/macro_f1": {"value": opt, "n": 41, "std": 0.0},
                                                     "delta/macro_f1": delta}}}}

    head = headline(report("nan", 0.5, {"value": "nan", "n": 41, "std": 0.01}))
    assert head.verdict == "cannot judge (a score is not a number)" and "WORSE" not in head.text()
    head = headline(report(0.6, 0.94, {"value": 0.34, "n": 41, "std": 0.0, "estimator": "paired-bootstrap"}))
    assert head.verdict.startswith("cannot judge (the paired bootstrap gave the change no interval")
    assert "repeats" not in head.text()  # (more seeds would not give it one)
    head = headline(report(0.6, 0.94, {"value": 0.34, "n": 41, "std": 0.0}))  # a report from before intervals
    assert head.verdict == "better"
    assert _verdict({"value": "nan", "std": 0.1}, {"value": 3.0, "std": 0.1}, -1) == ""
    assert _verdict({"value": 2.0}, {"value": "nan"}, 1) == ""
    assert _paired_verdict({"value": "nan"}, {"value": 3.0}, {"interval": [0.1, 0.2]}, 1) == ""
    assert _verdict({"value": 2.0, "std": 0.1}, {"value": 3.0, "std": 0.1}, -1) == "worse"


def test_a_step_gain_recorded_without_its_interval_is_within_noise():
    from setforge.tools.headline import _step_verdict

    assert _step_verdict({"value": 0.3, "std": 0.0, "estimator": "paired-bootstrap"}, 1.0) == "within noise"
    assert _step_verdict({"value": 0.3, "std": 0.0}, 1.0) == "helped"  # (a report from before intervals)


def test_one_seed_cannot_judge_better_or_worse():
    # with repeats: 1 there is no spread, so a drop of 0.04 is neither "worse" nor "better"
    # (docs/reports.md: the verdict needs a change beyond one standard deviation)
    from setforge.tools.report_html import _headline_html

    report = {"evaluators": {"utility": {"name": "utility", "params": {}}},
              "metrics": {"measures": {"utility": {"raw/macro_f1": {"value": 0.9024, "n": 82, "std": None},
                                                   "optimised/macro_f1": {"value": 0.8629, "n": 82, "std": None},
                                                   "delta/macro_f1": {"value": -0.0395, "n": 82, "std": None}}}}}
    head = headline(report)
    assert head.repeats == 1 and head.verdict == "cannot judge (one seed: no spread to judge by)"
    assert not head.worse and "WORSE" not in head.text()
    assert head.text().endswith("— set utility's `repeats` to 3 or more to tell a change from noise")
    assert "class='headline noise'" in _headline_html(report)
    report["metrics"]["measures"]["utility"]["optimised/macro_f1"]["value"] = 0.9241
    assert headline(report).verdict.startswith("cannot judge")
    report["metrics"]["measures"]["utility"]["optimised/macro_f1"]["value"] = 0.9024
    assert headline(report).verdict == "unchanged"


def test_the_headlines_step_verdict_judges_the_gain_it_quotes():
    # (the step's gain is quoted in the headline's score; ablation's steps table judges its own score, so
    # its verdict was quoted beside another score's gain)
    def measure(value, std=None):
        return {"value": value, "n": 100, "std": std}

    measures = {"utility": {"raw/macro_f1": measure(0.90, 0.01), "optimised/macro_f1": measure(0.93, 0.01),
                            "delta/macro_f1": measure(0.03, 0.005)},
                "ablation": {"step/0-flip/gain/macro_f1": measure(0.0119, 0.03),
                             "step/0-flip/gain/balanced_accuracy": measure(0.0109, 0.0078)}}
    table = {"steps": {"header": ["step", "with it", "final minus without", "verdict"],
                       "rows": [["0-flip", "0.93", "+0.0109 ± 0.0078", "helped"]]}}
    report = {"evaluators": {"utility": {"name": "utility", "params": {"repeats": 3}},
                             "ablation": {"name": "ablation", "params": {"score": "balanced_accuracy", "noise": 1.0}}},
              "metrics": {"measures": measures, "tables": {"ablation": table}}}
    assert headline(report).step_verdict == "within noise"  # 0.0119 against 1.0 x 0.03
    report["evaluators"]["ablation"]["params"]["score"] = "macro_f1"  # the table judged this score: its verdict
    assert headline(report).step_verdict == "helped"
    report["evaluators"]["ablation"]["params"].update(score="balanced_accuracy", noise=0.3)
    assert headline(report).step_verdict == "helped"  # 0.0119 above 0.3 x 0.03
    # with an interval (as ablation records now), the interval decides, whatever the std
    measures["ablation"]["step/0-flip/gain/macro_f1"]["interval"] = [0.0021, 0.0217]
    assert headline(report).step_verdict == "helped"
    measures["ablation"]["step/0-flip/gain/macro_f1"]["interval"] = [-0.0021, 0.0217]
    assert headline(report).step_verdict == "within noise"


def test_metrics_csv_and_json_hold_every_measure(runs):
    report = json.loads((runs / "a" / "report.json").read_text())
    rows = list(csv.DictReader((runs / "a" / "metrics.csv").open()))
    flat = {f"{ev}/{p}": m for ev, ms in report["metrics"]["measures"].items() for p, m in ms.items()}
    assert [r["path"] for r in rows] == sorted(flat)
    for row in rows:
        m = flat[row["path"]]
        assert float(row["value"]) == pytest.approx(m["value"]) and int(row["n"]) == m["n"]
        assert (row["std"] == "") == (m.get("std") is None)
    assert json.loads((runs / "a" / "metrics.json").read_text()) == metrics_rows(report)


def test_compare_two_runs(runs, tmp_path, capsys):
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--output", str(tmp_path / "cmp.html")]) == 0
    out = capsys.readouterr().out
    assert "pipeline[0].augment" in out or "pipeline[0]" in out  # the changed step is a config difference
    assert "utility/optimised/macro_f1" in out and "[1] vs [0]" in out
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert data["runs"] == [str(runs / "a"), str(runs / "b")]
    # utility pairs the two runs' models on the same test rows and seeds: its interval decides
    row = next(m for m in data["metrics"] if m["path"] == "utility/optimised/macro_f1")
    (paired,) = row["paired"]
    low, high = paired["interval"]
    word = "better" if low > 0 else "worse" if high < 0 else "within noise"
    assert row["verdicts"] == [f"{word} (paired: {low:+.4f} to {high:+.4f})"] and row["verdicts"][0] in out
    a, b = (v["value"] for v in row["values"])
    assert paired["value"] == pytest.approx(b - a, abs=1e-12) and low <= b - a <= high
    # ...from the predictions each run's utility wrote, by the bootstrap its headline uses
    import numpy as np
    import torch

    from setforge.plugins.evaluate._downstream import paired_deltas

    first, second = (np.load(runs / name / "evaluate" / "utility" / "test-predictions.npz") for name in "ab")
    expected = paired_deltas(torch.from_numpy(first["y"]), torch.from_numpy(first["optimised"]),
                             torch.from_numpy(second["optimised"]), 10, 1000, torch.Generator().manual_seed(0))
    assert tuple(paired["interval"]) == expected["macro_f1"].interval
    # ece needs probabilities it does not pair: the two runs' std still judges it
    ece = next(m for m in data["metrics"] if m["path"] == "utility/optimised/ece")
    assert ece["paired"] == [None] and "paired" not in ece["verdicts"][0]
    assert "<script" not in (tmp_path / "cmp.html").read_text()
    assert main(["compare", str(runs / "a")]) == 2


def test_compare_pairs_only_runs_measured_on_the_same_test_rows(runs, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from setforge.plugins.evaluate.utility import Utility

    other = tmp_path / "b"
    shutil.copytree(runs / "b", other)
    predictions = other / "evaluate" / "utility" / "test-predictions.npz"
    arrays = dict(np.load(predictions))
    arrays["y"] = np.roll(arrays["y"], 1)  # other test rows (the report's fingerprint kept: only utility knows)
    np.savez(predictions, **arrays)
    comparison = compare_runs([runs / "a", other])
    row = next(m for m in comparison["metrics"] if m["path"] == "utility/optimised/macro_f1")
    assert row["paired"] == [None] and "paired" not in row["verdicts"][0]
    # an evaluator whose pairing fails costs its paired verdicts only, and is named
    monkeypatch.setattr(Utility, "compare_runs", classmethod(lambda cls, base, other: 1 / 0))
    comparison = compare_runs([runs / "a", runs / "b"])
    assert comparison["warnings"] == [f"evaluator 'utility' could not pair {runs / 'a'} with {runs / 'b'}: "
                                      "division by zero"]
    assert all(p == [None] for p in (m["paired"] for m in comparison["metrics"]))


def test_compare_into_a_place_it_cannot_write_names_it_and_leaves_nothing(runs, tmp_path, capsys):
    pair = [str(runs / "a"), str(runs / "b")]
    assert main(["compare", *pair, "--output", str(tmp_path / "missing" / "cmp.html")]) == 5
    assert capsys.readouterr().err.strip().endswith(f"the comparison to {tmp_path / 'missing' / 'cmp.html'}: "
                                                    f"No such file or directory")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["compare", *pair, "--output", str(folder)]) == 5
    assert "Is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"] and not list(folder.iterdir())
    # the data goes beside the page as .json: a .json page would be overwritten by it
    assert main(["compare", *pair, "--output", str(tmp_path / "cmp.json")]) == 2
    assert "name an .html file" in capsys.readouterr().err and not (tmp_path / "cmp.json").exists()


def test_compare_directions_are_the_evaluators_declared_ones(runs):
    measures = json.loads((runs / "a" / "report.json").read_text())["metrics"]["measures"]
    assert direction(measures["utility"]["optimised/macro_f1"]) == 1
    assert direction(measures["utility"]["optimised/ece"]) == -1
    assert direction(measures["balance"]["optimised/imbalance_ratio"]) == -1
    assert direction(measures["balance"]["optimised/rows"]) == 0  # a count: no better side
    assert direction({"value": 0.5, "n": 3}) == 0  # recorded without a direction


def test_compare_warns_when_the_runs_were_measured_on_different_test_rows(runs, tmp_path, capsys):
    assert compare_runs([runs / "a", runs / "b"])["warnings"] == []  # one seed, one split: the same test rows
    report = json.loads((runs / "b" / "report.json").read_text())
    report["split"]["fingerprints"]["test"] = "another test split"
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.json").write_text(json.dumps(report))
    assert main(["compare", str(runs / "a"), str(other), "--output", str(tmp_path / "cmp.html")]) == 0
    assert "warning: the runs were measured on 2 different test splits" in capsys.readouterr().out
    assert "<b>warning:</b> the runs were measured on 2 different test splits" in (tmp_path / "cmp.html").read_text()


def test_compare_lists_only_the_step_keys_that_apply_to_each_steps_kind(tmp_path):
    # (found by a user-journey audit: report.json records every step field with its default, and
    # compare listed pipeline[1].guard "fail" on a resample step as a difference)
    steps = {"a": {"augment": None, "resample": "random-over", "generate": None, "guard": "fail", "copies": 1,
                   "params": {}},
             "b": {"augment": "flip", "resample": None, "generate": None, "guard": "fail", "copies": 2, "params": {}}}
    for name, step in steps.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"config": {"seed": 0, "pipeline": [step]}}))
    keys = [d["key"] for d in compare_runs([tmp_path / "a", tmp_path / "b"])["config_differences"]]
    assert keys == ["pipeline[0].augment", "pipeline[0].copies", "pipeline[0].resample"]


def test_compare_compares_resolved_params_and_an_empty_list_with_a_missing_one(tmp_path):
    # (found by a user-journey audit: report.json keeps params as given, so a run with smote-nc's
    # default k_neighbors (5) read as null against "auto", and preprocess: [] as a difference
    # beside another run's preprocess[0])
    from setforge.tools.compare import format_comparison

    configs = {"a": {"source": {"name": "csv", "params": {"path": "a.csv"}},
                     "preprocess": [{"name": "standardize", "params": {}}],
                     "pipeline": [{"resample": "smote-nc", "params": {}},
                                  {"resample": "not-installed-here", "params": {}}]},
               "b": {"source": {"name": "csv", "params": {"path": "a.csv", "ignore": ["patient_id"]}},
                     "preprocess": [],
                     "pipeline": [{"resample": "smote-nc", "params": {"k_neighbors": "auto"}},
                                  {"resample": "not-installed-here", "params": {"k": 3}}]}}
    for name, config in configs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"config": config}))
    comparison = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert {d["key"]: d["values"] for d in comparison["config_differences"]} == {
        "pipeline[0].params.k_neighbors": [5, "auto"],
        "pipeline[1].params.k": [None, 3],  # its default is not known here...
        "preprocess[0].name": ["standardize", None],
        "source.params.ignore": [[], ["patient_id"]]}
    assert [d["default"] for d in comparison["config_differences"]] == [[False, False], [True, False],
                                                                        [False, False], [False, False]]
    assert re.search(r"pipeline\[1\]\.params\.k +default +3\n", format_comparison(comparison))  # ...and says so


def test_compare_escapes_strings(runs, tmp_path):
    report = json.loads((runs / "a" / "report.json").read_text())
    report["config"]["seed"] = EVIL
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "report.json").write_text(json.dumps(report))
    from setforge.tools.compare import comparison_html

    page = comparison_html(compare_runs([runs / "a", evil]))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_training_log_survives_a_resume_and_replayed_iterations(tmp_path):
    log = TrainingLog()
    log.attach(1, tmp_path)
    for it in (10, 20, 30):
        log.observe(1, {"iteration": it, "losses": {"d": it / 10, "g": -it / 10}})
    log.observe(1, {"iteration": 30, "losses": {"d": 3.0, "g": -3.0}, "selection": {"metric": "fd", "value": 7.5}})
    resumed = TrainingLog()
    resumed.attach(1, tmp_path)  # a new process after a kill: continues from the step folder
    for it in (30, 40):  # the loop replays from its last checkpoint (iteration 20)
        resumed.observe(1, {"iteration": it, "losses": {"d": it / 10, "g": -it / 10}})
    resumed.observe(1, {"iteration": 40, "losses": {"d": 4.0, "g": -4.0},
                        "selection": {"metric": "fd", "value": 6.0, "chosen": 40}})
    out = resumed.for_step(1)
    assert out["iterations"] == [10, 20, 30, 40] and out["losses"]["d"] == [1.0, 2.0, 3.0, 4.0]
    assert out["selection"] == {"metric": "fd", "iterations": [30, 40], "values": [7.5, 6.0], "chosen": 40}
    assert resumed.for_step(2) is None


@pytest.mark.parametrize("n, channels, nrow", [(7, 1, 3), (6, 3, 3), (2, 3, 8), (10, 1, 4)])
def test_image_grids_are_laid_out_as_torchvision_make_grid_does(n, channels, nrow):
    import torch
    from torchvision.utils import make_grid

    from setforge.tools.plots import grid_of

    images = torch.rand(n, channels, 5, 4, generator=torch.Generator().manual_seed(n))
    assert torch.equal(grid_of(images, nrow=nrow, padding=2, pad_value=1.0),
                       make_grid(images, nrow=nrow, padding=2, pad_value=1.0))


def test_a_run_draws_its_grids_from_the_training_set_in_memory(tmp_path, monkeypatch):
    from setforge import output

    def no_reading(*args, **kwargs):
        raise AssertionError("the run read its training set back from disk for the report")

    monkeypatch.setattr(output, "load", no_reading)
    assert main(["run", str(_run_file(tmp_path, "memory", steps=4)), "--quiet"]) == 0
    page = (tmp_path / "memory" / "report.html").read_text()
    assert "real rows (" in page and "generated rows (" in page and "nearest real training row" in page
    # `setforge report` re-renders from the folder alone, as before
    monkeypatch.undo()
    assert main(["report", str(tmp_path / "memory")]) == 0
    assert "real rows (" in (tmp_path / "memory" / "report.html").read_text()


def test_large_images_are_reduced_in_grids_by_whole_factors():
    import torch

    from setforge.tools.plots import image_grid

    images = torch.rand(4, 3, 224, 200, generator=torch.Generator().manual_seed(0))
    grid = Image.open(io.BytesIO(image_grid(images, nrow=2)))
    assert grid.size == (2 * (100 + 2) + 2, 2 * (112 + 2) + 2)  # 224 x 200 halved; 2 px padding
    small = Image.open(io.BytesIO(image_grid(images[:, :, :8, :8], nrow=4)))
    assert small.size == (4 * (48 + 2) + 2, 48 + 4)  # 8 px enlarged 6x to reach 48


def test_counts_print_whole_and_small_changes_keep_their_digits():
    # (found by an audit: one leaked test row printed as 1.0000 beside a share of 0.0185; a change
    # from 1.2e-05 to 3.4e-05 printed as +0.0000)
    from setforge import Metrics
    from setforge.tools.report import change
    from setforge.tools.report_html import fmt

    metrics = Metrics()
    metrics.add("near_test_rows", 1, 54)
    metrics.add("near_test_share", 1 / 54, 54)
    stored = json.loads(json.dumps(metrics.to_dict()))["measures"][""]
    assert fmt(stored["near_test_rows"]["value"]) == "1" and fmt(stored["near_test_share"]["value"]) == "0.0185"
    assert change(1, 3) == "+2" and change(0, 1) == "+1" and change(1.2e-5, 3.4e-5) == "+2.2e-05"
    assert change(0.91, 0.92) == "+0.0100"
    # the summary's raw-vs-optimised table reads the stored values back: 0 leaked rows print as 0
    from setforge.tools.report import before_after

    pairs = before_after({"raw/exact_test_rows": {"value": 0, "n": 114}, "optimised/exact_test_rows": {"value": 1, "n": 114}})
    assert [(name, fmt(raw), fmt(opt), change(raw, opt)) for name, raw, opt in pairs] == [("exact_test_rows", "0", "1", "+1")]


def test_the_ablation_chart_labels_its_points_as_the_ablation_table_does(monkeypatch):
    # (found by an audit: the ticks were the cumulative keys, one ahead of the step numbers)
    from setforge.tools import plots, report_html

    seen = {}
    monkeypatch.setattr(plots, "ablation_chart", lambda labels, *a, **k: seen.setdefault("labels", labels) and b"")
    measures = {f"cumulative/{k}/balanced_accuracy": {"value": 0.9, "n": 10, "std": 0.01} for k in range(3)}
    report = {"metrics": {"measures": {"ablation": measures}}, "evaluators": {"ablation": {"params": {}}},
              "steps": [{"index": 0, "name": "affine"}, {"index": 1, "name": "smote"}]}
    report_html._ablation(report)
    assert seen["labels"] == ["raw", "0-affine", "1-smote"]


def test_a_report_json_that_is_not_an_object_is_bad_data(tmp_path, capsys):
    (tmp_path / "report.json").write_text("[1]", encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 3
    assert "not a run's report" in capsys.readouterr().err


def _layout_problems(fig):
    """Texts of a drawn chart cut off by its edges, and side-by-side tick labels that overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = set()  # labels of ticks outside the view, which matplotlib does not draw
    for ax in fig.axes:
        for axis, ticks in ((0, ax.get_xaxis().get_majorticklocs()), (1, ax.get_yaxis().get_majorticklocs())):
            low, high = sorted((ax.get_xlim(), ax.get_ylim())[axis])
            labels = ax.get_xticklabels() if axis == 0 else ax.get_yticklabels()
            hidden |= {id(t) for t, at in zip(labels, ticks) if not low - 1e-9 <= at <= high + 1e-9}
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_window_extent"))
             if t.get_text() and t.get_visible() and id(t) not in hidden]
    problems = []
    for text in texts:
        b = text.get_window_extent(renderer)
        if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > fig.bbox.width + 0.5 or b.y1 > fig.bbox.height + 0.5:
            problems.append(f"cut off: {text.get_text()!r}")
    for ax in fig.axes:
        flat = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and t.get_rotation() == 0]
        problems += [f"x tick labels overlap at {a.x1:.0f} px" for a, b in zip(flat, flat[1:]) if a.overlaps(b)]
    return problems


def test_charts_show_every_text_whole_and_long_class_names_apart(monkeypatch):
    # (found by an audit: the ablation chart's title was cut off at both sides, and four class names,
    # one of them long, were written over each other under the rows-per-class chart)
    from setforge.tools import plots

    figures, png = [], plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or png(fig))
    classes = ["$\\alpha$ cost", "<b>bold<", "a_very_long_class_name_that_goes_on_and_on", "plain_$5 it's"]
    plots.class_distribution(classes, {c: 10 for c in classes}, {c: {"real": 10, "augmented": 5} for c in classes})
    plots.class_distribution(["cat", "dog", "bird"], {"cat": 9, "dog": 3, "bird": 2}, {"cat": {"real": 9}})
    plots.ablation_chart(["raw", "0-affine"], [0.90, 0.91], [0.01, 0.01], "balanced_accuracy")
    plots.ablation_chart(["raw", "0-affine", "1-random-over"], [0.90, 0.91, 0.92], [0.01] * 3, "macro_f1")
    plots.line_chart({"generator": ([10, 20], [0.6, 0.5]), "discriminator": ([10, 20], [1.3, 1.1])},
                     "[2] dcgan: training losses", "iteration", "loss")
    assert [_layout_problems(fig) for fig in figures] == [[]] * len(figures)
    assert [t.get_rotation() for t in figures[1].axes[0].get_xticklabels()] == [0, 0, 0]  # short names stay level


def test_the_headline_judges_the_minority_recall_alike():
    # (what rebalancing is for: the demo's macro-F1 moved within noise, its smallest class's recall beyond it)
    def measure(value, std=None, interval=None):
        return {"value": value, "n": 520, "std": std, **({"interval": interval} if interval else {})}

    measures = {"raw/macro_f1": measure(0.9135, 0.0033), "optimised/macro_f1": measure(0.9264, 0.0025),
                "delta/macro_f1": measure(0.0129, 0.0038, [-0.0064, 0.0331]),
                "raw/minority_recall": measure(0.6346, 0.0192), "optimised/minority_recall": measure(0.8013, 0.0111),
                "delta/minority_recall": measure(0.1667, 0.0111, [0.0704, 0.2885])}
    report = {"evaluators": {"utility": {"name": "utility", "params": {"repeats": 3, "level": 0.95}}},
              "metrics": {"measures": {"utility": measures}}}
    head = headline(report)
    assert head.verdict == "within noise" and head.minority.verdict == "better"
    assert head.text().endswith("(+0.0129, 95% interval -0.0064 to +0.0331): within noise; "
                                "minority recall +0.1667 (95% interval +0.0704 to +0.2885): better")
    measures["delta/minority_recall"]["interval"] = [-0.0100, 0.2885]
    assert headline(report).text().endswith("; minority recall +0.1667 (95% interval -0.0100 to +0.2885): within noise")
    # one seed: neither is judged, and the clause says only the change
    report["evaluators"]["utility"]["params"]["repeats"] = 1
    assert headline(report).text().endswith("to tell a change from noise; minority recall +0.1667 "
                                            "(95% interval -0.0100 to +0.2885)")
    # balanced data has no minority (utility skips it): no clause
    for key in ("raw/minority_recall", "optimised/minority_recall", "delta/minority_recall"):
        del measures[key]
    assert headline(report).minority is None and "minority" not in headline(report).text()
