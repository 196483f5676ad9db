"""ablation: the downstream model after each step and with each step left out, verdicts by the interval,
one raw baseline per run shared with utility and cas."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from setforge import Dataset, EvalContext, Origin
from setforge.tools.cli import main
from setforge.context import Cache, StepContext, StepRecord
from setforge.plugins._shared import classifiers
from setforge.plugins.evaluate._stats import Estimate
from setforge.plugins.evaluate.ablation import Ablation, verdict
from setforge.plugins.evaluate.utility import Utility
from setforge.plugins.source.sklearn import DigitsSource
from setforge.testing import check_component

FAST = {"model": "logistic-regression", "epochs": 30, "patience": 3, "repeats": 3}


@pytest.fixture(scope="module")
def digits():
    """Long-tailed digits: (train, val, test)."""
    splits = DigitsSource({"imbalance": 10}).load(StepContext.from_seed(0))
    perm = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    return splits.train[perm[40:]].replace(row_id=None), splits.train[perm[:40]], splits.test


def _oversample(ds: Dataset) -> Dataset:
    """Every class copied up to the largest (what random over-sampling does)."""
    counts = ds.class_counts()
    index = torch.cat([(ds.y == c).nonzero().flatten()[torch.arange(max(counts) - n) % n]
                       for c, n in enumerate(counts)])
    copies = ds[index].replace(origin=torch.full((len(index),), int(Origin.RESAMPLED)), parent=index, row_id=None)
    return Dataset.concat([ds, copies])


def _mislabel(ds: Dataset) -> Dataset:
    """Two thirds of the rows moved to the next class: a step that must hurt."""
    rows = torch.arange(len(ds)) % 3 != 0
    return ds.replace(y=torch.where(rows, (ds.y + 1) % ds.num_classes, ds.y))


STEPS = [_oversample, _mislabel]


def _context(digits, steps=STEPS, replay=True):
    train, val, test = digits
    records, ds = [], train
    for i, step in enumerate(steps):
        ds = step(ds)
        records.append(StepRecord(i, "resample", step.__name__.strip("_"), ds))

    def run_only(indices):
        out = train
        for i in sorted(indices):
            out = steps[i](out)
        return out

    return EvalContext.from_seed(0, train, ds, val=val, test=test, steps=records, name="ablation",
                                 replay=run_only if replay else None)


def test_conformance():
    check_component(Ablation)


def test_verdict_reads_the_interval_of_the_change():
    assert verdict(Estimate(0.05, interval=(0.01, 0.09))) == "helped"
    assert verdict(Estimate(-0.05, interval=(-0.09, -0.01))) == "hurt"
    assert verdict(Estimate(0.04, interval=(-0.01, 0.09))) == "within noise"
    assert verdict(Estimate(0.04, interval=(0.0, 0.09))) == "within noise"  # an interval that reaches 0 holds it
    assert verdict(Estimate(0.04)) == "within noise"  # no interval: nothing to judge by


def test_cumulative_and_leave_one_out_match_models_trained_by_hand(digits):
    ectx = _context(digits)
    metrics = Ablation(FAST).evaluate(ectx)
    get = lambda path: metrics.get(f"ablation/{path}")  # noqa: E731
    train, val, test = digits
    options = dict(FAST)
    repeats = options.pop("repeats")
    options.pop("model")

    def by_hand(ds):
        values = []
        for r in range(repeats):
            model = classifiers.train_classifier("logistic-regression", ds, val, ectx.shared_rng.spawn(r), "cpu",
                                                 **options)
            values.append(classifiers.classification_scores(test.y, model.predict(test.x), 10)["balanced_accuracy"])
        return torch.tensor(values, dtype=torch.float64)

    raw, over = by_hand(train), by_hand(_oversample(train))
    mislabelled_only = by_hand(_mislabel(train))
    assert get("cumulative/0/balanced_accuracy").value == pytest.approx(float(raw.mean()))
    assert get("cumulative/0/balanced_accuracy").std == pytest.approx(float(raw.std()))
    assert get("cumulative/1/balanced_accuracy").value == pytest.approx(float(over.mean()))
    assert get("step/0-oversample/gain/balanced_accuracy").value == pytest.approx(float((over - raw).mean()))
    gain = get("step/0-oversample/gain/balanced_accuracy")  # with the interval its verdict reads
    assert gain.estimator == "paired-bootstrap" and gain.interval[0] <= gain.value <= gain.interval[1]
    assert get("step/0-oversample/without/balanced_accuracy").interval is None  # a score, not a change
    # leaving out step 0 re-runs step 1 alone on the raw rows
    assert get("step/0-oversample/without/balanced_accuracy").value == pytest.approx(float(mislabelled_only.mean()))
    final = get("cumulative/2/balanced_accuracy").value
    assert get("step/1-mislabel/loo/balanced_accuracy").value == pytest.approx(final - float(over.mean()))
    assert get("cumulative/2/accuracy").n == len(test)
    table = metrics.tables["ablation"]["steps"]
    assert table["rows"][0][0] == "raw" and [r[0] for r in table["rows"][1:]] == ["0-oversample", "1-mislabel"]
    # moving two thirds of the labels to another class hurts, added or left in
    assert table["rows"][2][3] == "hurt" and table["rows"][2][6] == "hurt"


def test_without_replay_only_the_cumulative_numbers(digits):
    metrics = Ablation(FAST).evaluate(_context(digits, replay=False))
    assert "ablation/cumulative/2/accuracy" in metrics
    assert "ablation/step/0-oversample/without/accuracy" not in metrics
    assert "replay" in metrics.skipped["ablation"]["step"]


def test_the_raw_baseline_trains_once_for_utility_and_ablation(digits, monkeypatch):
    calls = []
    real_train = classifiers.train_classifier

    def counting(kind, train, *args, **kwargs):
        calls.append(train.fingerprint())
        return real_train(kind, train, *args, **kwargs)

    monkeypatch.setattr("setforge.plugins.evaluate._downstream.train_classifier", counting)
    ectx = _context(digits, steps=STEPS[:1])
    cache = Cache()
    for evaluator in (Utility(FAST), Ablation(FAST)):
        # what the host does: one cache and one shared Rng per run, each evaluator its own Rng
        scoped = EvalContext(raw_train=ectx.raw_train, train=ectx.train, val=ectx.val, test=ectx.test,
                             steps=ectx.steps, cache=cache, shared_rng=ectx.shared_rng,
                             rng=ectx.shared_rng.spawn(evaluator.name), name=evaluator.name)
        result = evaluator.evaluate(scoped)
        if evaluator.name == "utility":
            utility = result
        else:
            ablation = result
    raw_fp = ectx.raw_train.fingerprint()
    assert calls.count(raw_fp) == 3  # three seeds, each trained once for both evaluators
    assert len(calls) == 6  # raw and optimised, three seeds each: ablation trained nothing new
    assert ablation.get("ablation/cumulative/0/accuracy").value == utility.get("utility/raw/accuracy").value
    assert ablation.get("ablation/cumulative/1/accuracy").value == utility.get("utility/optimised/accuracy").value


def _run(tmp_path, config, capsys):
    """`setforge run` of `config` (output in tmp_path/out): what it printed and its report.json."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    return capsys.readouterr().out, json.loads((tmp_path / "out" / "report.json").read_text())


def test_a_run_with_ablation_gives_verdicts_in_the_report_and_summary(tmp_path, capsys):
    config = {
        "seed": 0, "device": "cpu",
        "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
        "split": {"val": 0.1},
        "pipeline": [{"resample": "random-over"}, {"resample": "random-under"}],
        "evaluate": [{"name": "utility", "params": {**FAST}},
                     {"name": "ablation", "params": {**FAST}}],
        "output": {"dir": str(tmp_path / "out")},
    }
    printed, report = _run(tmp_path, config, capsys)
    measures = report["metrics"]["measures"]
    assert measures["ablation"]["cumulative/0/accuracy"]["value"] == measures["utility"]["raw/accuracy"]["value"]
    assert measures["ablation"]["cumulative/2/accuracy"]["value"] == measures["utility"]["optimised/accuracy"]["value"]
    # step 1 left out is the run's own prefix; step 0 left out re-ran random-under on the raw rows
    assert "step/0-random-over/without/accuracy" in measures["ablation"]
    table = report["metrics"]["tables"]["ablation"]["steps"]
    assert all(row[3] in ("helped", "hurt", "within noise") for row in table["rows"][1:])
    assert "ablation: steps" in printed and "1-random-under" in printed
    assert (tmp_path / "out" / "report.html").read_text().count("ablation: steps") == 1


@pytest.mark.parametrize("ablation_first", [False, True], ids=["utility-listed-first", "ablation-listed-first"])
def test_ablation_with_defaults_trains_utilitys_model_and_seeds(tmp_path, capsys, ablation_first):
    # r7: utility {model: mlp, repeats: 5} and a bare ablation: ablation trained logistic regression with
    # 3 seeds, so its last cumulative macro F1 (0.8569) was not utility's optimised one (0.8763).
    # Listed before utility, ablation still trains utility's model: utility runs first (runs_first).
    utility = {"model": "mlp", "repeats": 2, "epochs": 8, "patience": 2, "hidden": 32}
    config = {
        "seed": 0, "device": "cpu",
        "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
        "split": {"val": 0.1},
        "pipeline": [{"resample": "random-over"}],
        "evaluate": [{"name": "utility", "params": utility}, "ablation"][::-1 if ablation_first else 1],
        "output": {"dir": str(tmp_path / "out")},
    }
    printed, report = _run(tmp_path, config, capsys)
    listed = [e if isinstance(e, str) else e["name"] for e in report["config"]["evaluate"]]
    assert listed == (["ablation", "utility"] if ablation_first else ["utility", "ablation"])
    measures = report["metrics"]["measures"]
    for score in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert measures["ablation"][f"cumulative/1/{score}"] == measures["utility"][f"optimised/{score}"]
        assert measures["ablation"][f"cumulative/0/{score}"] == measures["utility"][f"raw/{score}"]
    params = report["evaluators"]["ablation"]["params"]  # what it trained with
    assert {k: params[k] for k in utility} == utility and params["score"] == "balanced_accuracy"
    assert report["evaluators"]["ablation"]["summary"] == "model mlp"
    headline = next(line for line in printed.splitlines() if line.startswith("headline:"))
    assert " rows, 2 seeds)" in headline and "step 0-random-over" in headline and "not utility's" not in headline


def test_ablation_takes_the_utility_params_its_own_leave_unset():
    from setforge.plugins.evaluate._downstream import publish_model

    train = Dataset(x=torch.zeros(4, 2), y=torch.tensor([0, 0, 1, 1]), classes=("a", "b"), modality="tabular")

    def params(ablation, *utilities):
        ectx = EvalContext.from_seed(0, train)
        for given in utilities:
            publish_model(ectx, Utility(given).params)
        return Ablation(ablation)._model_params(ectx)

    mlp = {"model": "mlp", "repeats": 5, "epochs": 7, "lr": 0.01, "hidden": 16}
    taken = params({}, mlp, {"model": "gradient-boosting", "repeats": 9})  # (the first utility of the run)
    assert (taken.model, taken.repeats, taken.epochs, taken.lr, taken.hidden) == ("mlp", 5, 7, 0.01, 16)
    own = params({"model": "logistic-regression", "repeats": 4, "epochs": 3}, mlp)  # its own params win
    assert (own.model, own.repeats, own.epochs, own.lr, own.hidden) == ("logistic-regression", 4, 3, 0.01, 16)
    assert params({}, {"model": "mlp"}).repeats == 3  # utility's one seed gives no spread: its own default
    alone = params({})  # no utility before it: its own defaults
    assert (alone.model, alone.repeats, alone.epochs) == ("logistic-regression", 3, 100)
    # what it trains with is what report.json records; a second evaluation starts from the run file's params
    ablation = Ablation({})
    ectx = EvalContext.from_seed(0, train)
    publish_model(ectx, Utility(mlp).params)
    ablation.evaluate(ectx)  # (no test split: everything skipped, nothing trained)
    assert ablation.params.model == "mlp" and ablation.params.repeats == 5
    ablation.evaluate(EvalContext.from_seed(0, train))
    assert ablation.params.model == "logistic-regression" and ablation.params.repeats == 3


def test_the_old_noise_param_is_refused_at_validate_naming_what_replaced_it(tmp_path, capsys):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"source": {"name": "sklearn-digits"}, "pipeline": [{"resample": "random-over"}],
                                        "evaluate": ["utility", {"name": "ablation", "params": {"noise": 2.0}}],
                                        "output": {"dir": str(tmp_path / "out")}}))
    assert main(["validate", str(run_file)]) == 2
    err = capsys.readouterr().err
    assert "evaluate[1].params: `noise` (a multiple of the seeds' std) is gone" in err and "set `level`" in err
