"""The utility evaluator and the shared classifiers it trains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, f1_score, recall_score

from setforge import ConfigError, DataError, Dataset, EvalContext, Origin, Rng
from setforge.plugins._shared.classifiers import (Classifier, calibration_scores, classification_scores,
                                                  fit_classifier, train_classifier)
from setforge.plugins.evaluate.utility import Utility
from setforge.plugins.source.sklearn import BreastCancerSource, DigitsSource
from setforge.context import StepContext
from setforge.testing import check_component


@pytest.fixture(scope="module")
def digits():
    """Long-tailed digits: (train, val, test)."""
    splits = DigitsSource({"imbalance": 10}).load(StepContext.from_seed(0))
    perm = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    return splits.train[perm[40:]].replace(row_id=None), splits.train[perm[:40]], splits.test


def test_conformance():
    check_component(Utility)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_scores_match_scikit_learn(seed):
    g = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, 4, (60,), generator=g)
    y_pred = torch.where(torch.rand(60, generator=g) < 0.6, y_true, torch.randint(0, 5, (60,), generator=g))
    y_true[y_true == 3] = 0  # class 3 absent from the truth, class 4 only predicted
    scores = classification_scores(y_true, y_pred, 5)
    assert scores["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert scores["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    recalls = recall_score(y_true, y_pred, labels=[0, 1, 2], average=None, zero_division=0)
    assert scores["recall"][:3] == pytest.approx(list(recalls)) and scores["recall"][3] is None


@pytest.mark.parametrize("kind", ["logistic-regression", "mlp"])
def test_classifiers_learn_and_are_deterministic(digits, kind):
    train, val, test = digits
    model = train_classifier(kind, train, val, Rng(3), "cpu")
    again = train_classifier(kind, train, val, Rng(3), "cpu")
    assert torch.equal(model.predict_logits(test.x), again.predict_logits(test.x))
    accuracy = float((model.predict(test.x) == test.y).double().mean())
    assert accuracy > 0.8
    assert model.features(test.x[:3]).shape == (3, model.feature_dim)
    assert model.predict_proba(test.x[:3]).sum(1).allclose(torch.ones(3))
    assert model.history.stopped_early and model.history.best_epoch < model.history.epochs_run
    other = train_classifier(kind, train, val, Rng(4), "cpu")
    assert not torch.equal(other.predict_logits(test.x), model.predict_logits(test.x))


def test_cnn_trains_on_images_and_refuses_tabular(digits):
    train, val, test = digits
    model = train_classifier("cnn", train, val, Rng(0), "cpu", epochs=3)
    assert model.predict(test.x).shape == (len(test),) and model.embed(test.x).shape == (len(test), 128)
    tabular = BreastCancerSource().load(StepContext.from_seed(0))
    with pytest.raises(DataError, match="cnn"):
        train_classifier("cnn", tabular, None, Rng(0), "cpu")


def _procedural_shapes():
    """benchmarks/_shapes.py's five shapes (random colours, positions, sizes), drawn at 16x16."""
    spec = importlib.util.spec_from_file_location("_shapes", Path(__file__).parents[2] / "benchmarks" / "_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.draw_shapes


def test_cnn_learns_small_long_tailed_rgb_shapes():
    # Issue 25's case, small: RGB shapes, train long-tailed 12:1 (118 rows, under one batch), val and
    # test balanced. A cnn stuck at the class prior predicts the largest class (macro-F1 0.067).
    draw_shapes, g = _procedural_shapes(), np.random.default_rng(0)

    def part(counts):
        y = np.repeat(np.arange(5), counts)
        return torch.from_numpy(draw_shapes(y, g, 16)), torch.from_numpy(y)

    (x, y), (x_val, y_val), (x_test, y_test) = part([60, 30, 15, 8, 5]), part([10] * 5), part([20] * 5)
    model = fit_classifier("cnn", x, y, 5, Rng(1), x_val=x_val, y_val=y_val)
    scores = classification_scores(y_test, model.predict(x_test), 5)
    assert scores["macro_f1"] > 0.8 and min(scores["recall"]) > 0.5, scores


def test_normalisation_lives_inside_the_model():
    # Columns on wildly different scales: the model sees them standardised, callers pass raw units.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g) * torch.tensor([1000.0, 0.001]) + torch.tensor([5e4, -3.0])
    y = (x[:, 1] > -3.0).long()
    model = fit_classifier("logistic-regression", x, y, 2, Rng(0), epochs=60)
    assert float((model.predict(x) == y).double().mean()) > 0.95
    assert torch.allclose(model.mean, x.mean(0), rtol=1e-4)


def test_without_val_training_runs_every_epoch(digits):
    train, _, _ = digits
    model = train_classifier("logistic-regression", train, None, 0, "cpu", epochs=7)
    assert model.history.epochs_run == 7 and not model.history.stopped_early and isinstance(model, Classifier)


def test_utility_compares_raw_and_optimised_on_the_test_split(digits):
    train, val, test = digits
    # An "optimised" set that duplicates each minority row until every class matches the largest.
    counts = train.class_counts()
    extra = []
    for c, n in enumerate(counts):
        rows = (train.y == c).nonzero().flatten()
        extra.append(rows[torch.arange(max(counts) - n) % n])
    index = torch.cat(extra)
    copies = train[index].replace(origin=torch.full((len(index),), int(Origin.RESAMPLED)), parent=index, row_id=None)
    optimised = Dataset.concat([train, copies])
    ectx = EvalContext.from_seed(0, train, train=optimised, val=val, test=test)
    metrics = Utility({"epochs": 40}).evaluate(ectx)
    get = lambda path: metrics.get(f"utility/{path}").value  # noqa: E731
    for score in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert get(f"delta/{score}") == pytest.approx(get(f"optimised/{score}") - get(f"raw/{score}"))
        assert metrics.get(f"utility/raw/{score}").n == len(test)
    # the raw model is exactly the model a plain training gives (same seed, same data)
    raw_model = train_classifier("logistic-regression", train, val, ectx.rng.spawn(0), "cpu", epochs=40)
    expected = classification_scores(test.y, raw_model.predict(test.x), 10)
    assert get("raw/accuracy") == pytest.approx(expected["accuracy"])
    assert get("raw/recall/9") == pytest.approx(expected["recall"][9])
    assert metrics.get("utility/raw/recall/9").n == int((test.y == 9).sum())
    assert get("delta/recall/9") == pytest.approx(get("optimised/recall/9") - get("raw/recall/9"))
    # the same data on both sides gives a zero difference: the two models share everything else
    same = Utility({"epochs": 40}).evaluate(EvalContext.from_seed(0, train, train=train, val=val, test=test))
    assert same.get("utility/delta/accuracy").value == 0.0
    # calibration of the same raw model, and the recall of the smallest training class (9)
    calibration = calibration_scores(test.y, raw_model.predict_proba(test.x))
    assert get("raw/ece") == pytest.approx(calibration["ece"], rel=1e-5)
    assert get("raw/brier") == pytest.approx(calibration["brier"], rel=1e-5)
    assert get("delta/brier") == pytest.approx(get("optimised/brier") - get("raw/brier"))
    assert get("raw/minority_recall") == pytest.approx(expected["recall"][9])
    assert get("optimised/minority_recall") == get("optimised/recall/9")
    table = metrics.tables["utility"]["per_class"]
    assert table["header"][:4] == ["class", "train raw", "train optimised", "test rows"]
    assert [row[0] for row in table["rows"]] == [str(c) for c in range(9)] + ["9 (minority)"]
    nine = table["rows"][9]
    assert nine[1:4] == [str(counts[9]), str(max(counts)), str(int((test.y == 9).sum()))]
    assert float(nine[4]) == pytest.approx(expected["recall"][9], abs=1e-4)


def reference_ece(y_true: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Guo et al.'s ECE, row by row: bins (lo, hi] of the top probability (0 goes in the first)."""
    confidence, predicted = probabilities.max(1), probabilities.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for b in range(bins):
        inside = (confidence > edges[b]) & (confidence <= edges[b + 1]) | ((b == 0) & (confidence == 0))
        if inside.any():
            total += inside.mean() * abs((predicted[inside] == y_true[inside]).mean() - confidence[inside].mean())
    return total


def test_balanced_data_has_no_minority(digits):
    # (found by an audit: with equal class counts every class was marked "(minority)" and
    # minority_recall was the balanced accuracy under another name)
    train, val, test = digits
    smallest = min(train.class_counts())
    rows = torch.cat([(train.y == c).nonzero().flatten()[:smallest] for c in range(train.num_classes)])
    balanced = train[rows]
    metrics = Utility({"epochs": 5}).evaluate(EvalContext.from_seed(0, balanced, train=balanced, val=val, test=test))
    assert "raw/minority_recall" in metrics.skipped["utility"] and "no minority" in metrics.skipped["utility"]["raw/minority_recall"]
    table = metrics.tables["utility"]["per_class"]
    assert not any("(minority)" in str(row[0]) for row in table["rows"])


def test_a_class_without_test_rows_has_no_per_class_scores(digits):
    # (found by an audit: its F1 showed 0.0000 for both models while its recall showed "-")
    train, val, test = digits
    without_nine = test[test.y != 9]
    metrics = Utility({"epochs": 5}).evaluate(EvalContext.from_seed(0, train, val=val, test=without_nine))
    rows = {row[0].split(" ")[0]: row for row in metrics.tables["utility"]["per_class"]["rows"]}
    assert rows["9"][3:] == ["0", "-", "-", "-", "-", "-"]
    assert all(cell != "-" for cell in rows["8"][4:])  # a class with test rows keeps its scores
    assert "raw/recall/9" in metrics.skipped["utility"]


@pytest.mark.parametrize(("classes", "bins", "seed"), [(2, 10, 0), (3, 15, 1), (10, 15, 2), (4, 1, 3)])
def test_calibration_scores_match_the_reference_formulas_and_scikit_learn(classes, bins, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(300, classes)) * 2
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y_true = np.array([rng.choice(classes, p=p) if rng.random() < 0.7 else rng.integers(classes)
                       for p in probabilities])
    scores = calibration_scores(torch.tensor(y_true), torch.tensor(probabilities), bins)
    assert scores["ece"] == pytest.approx(reference_ece(y_true, probabilities, bins), abs=1e-12)
    if classes == 2:  # the classic binary Brier score on the positive class
        expected = brier_score_loss(y_true, probabilities[:, 1])
    else:
        expected = brier_score_loss(y_true, probabilities, labels=list(range(classes)))
    assert scores["brier"] == pytest.approx(expected, rel=1e-12)
    # a perfect, certain classifier: both 0
    perfect = calibration_scores(torch.tensor(y_true), torch.nn.functional.one_hot(torch.tensor(y_true), classes))
    assert perfect == {"ece": 0.0, "brier": 0.0}


def test_repeats_give_a_spread_and_no_test_split_is_skipped(digits):
    train, val, test = digits
    ectx = EvalContext.from_seed(0, train, val=val, test=test[:100])
    metrics = Utility({"epochs": 5, "repeats": 3}).evaluate(ectx)
    # the mean and the sample standard deviation (n - 1, as ablation's) of the three seeds' accuracies
    from setforge.plugins.evaluate._downstream import model_options, test_probabilities

    options = model_options(Utility({"epochs": 5}).params)
    accuracies = [float((test_probabilities(ectx, options, train, r).argmax(1) == test[:100].y).double().mean())
                  for r in range(3)]
    measure = metrics.get("utility/raw/accuracy")
    assert measure.value == pytest.approx(np.mean(accuracies)) and measure.std == pytest.approx(np.std(accuracies, ddof=1))
    assert np.std(accuracies, ddof=1) > 0
    empty = Utility({"epochs": 2}).evaluate(EvalContext.from_seed(0, train))
    assert "raw" in empty.skipped["utility"] and not empty.measures


def test_the_deltas_of_the_headline_scores_carry_the_paired_bootstrap_interval(digits):
    from setforge.plugins.evaluate._downstream import model_options, paired_deltas, test_probabilities

    train, val, test = digits
    optimised = Dataset.concat([train, train[train.y == 9]])  # the smallest class twice
    ectx = EvalContext.from_seed(0, train, optimised, val=val, test=test)
    params = {"epochs": 5, "repeats": 2, "bootstrap": 300, "level": 0.9}
    metrics = Utility(params).evaluate(ectx)
    options = model_options(Utility(params).params)
    predicted = [torch.stack([test_probabilities(ectx, options, ds, r).argmax(1) for r in range(2)])
                 for ds in (train, optimised)]
    minority = [9]  # the smallest class of the raw training split
    expected = paired_deltas(test.y, *predicted, test.num_classes, 300, ectx.rng.spawn("delta").torch, 0.9, minority)
    paths = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "macro_f1": "macro_f1",
             "minority_recall": "minority_recall", **{f"recall/{c}": f"recall/{test.classes[c]}" for c in range(10)}}
    for key, path in paths.items():
        measure = metrics.get(f"utility/delta/{path}")
        assert measure.estimator == "paired-bootstrap" and measure.interval == expected[key].interval, path
        assert measure.value == pytest.approx(expected[key].value, abs=1e-12)
        assert measure.interval[0] <= measure.value <= measure.interval[1]
    # calibration needs the probabilities: the seeds' std only; `bootstrap: 0` turns the intervals off
    assert metrics.get("utility/delta/ece").interval is None
    assert Utility({**params, "bootstrap": 0}).evaluate(ectx).get("utility/delta/macro_f1").interval is None


class NearestCentroidModel:
    """A contributed downstream model for tests: nearest class centroid of the flattened rows."""

    modalities = ("tabular", "text")

    def __init__(self, options):
        self.options = options

    def fit(self, train, val, rng, device):
        x = self._rows(train)
        self.centroids = torch.stack([x[train.y == c].mean(0) for c in range(train.num_classes)])

    def predict(self, ds):
        return torch.cdist(self._rows(ds), self.centroids).argmin(1)

    @staticmethod
    def _rows(ds):
        if ds.modality == "text":  # two numbers per text: its length and its count of the letter e
            return torch.tensor([[len(s), s.count("e")] for s in ds.x], dtype=torch.float32)
        return ds.x.flatten(1)


@pytest.fixture
def contributed_model(monkeypatch):
    """A `setforge.models` entry point named `nearest-centroid`, as an installed plugin would add."""
    import importlib.metadata

    from setforge.plugins.evaluate import _downstream, utility

    entry = importlib.metadata.EntryPoint(name="nearest-centroid", group=utility.MODEL_ENTRY_POINT_GROUP,
                                          value=f"{__name__}:NearestCentroidModel")
    # (the one lookup every evaluator with a `model` param resolves names through)
    monkeypatch.setattr(_downstream, "downstream_models", lambda: {"nearest-centroid": entry})
    return entry


def test_a_contributed_model_is_chosen_by_name_and_scored(contributed_model):
    from setforge.testing import sample_dataset

    table = sample_dataset("tabular")
    ectx = EvalContext.from_seed(0, table, test=table)
    metrics = Utility({"model": "nearest-centroid"}).evaluate(ectx)
    model = NearestCentroidModel({})
    model.fit(table, None, Rng(0), "cpu")
    expected = classification_scores(table.y, model.predict(table), table.num_classes)["accuracy"]
    assert metrics.get("utility/raw/accuracy").value == pytest.approx(expected)
    texts = sample_dataset("text")
    metrics = Utility({"model": "nearest-centroid"}).evaluate(EvalContext.from_seed(0, texts, test=texts))
    assert 0.0 <= metrics.get("utility/optimised/accuracy").value <= 1.0
    check_component(Utility, {"model": "nearest-centroid"}, modalities=("tabular",))


def test_unknown_model_lists_the_contributed_ones(contributed_model):
    from setforge import ConfigError

    with pytest.raises(ConfigError, match="unknown model 'tfidf'.*logistic-regression, mlp, cnn, gradient-boosting, nearest-centroid"):
        Utility({"model": "tfidf"})


def test_text_with_a_builtin_model_names_a_model_that_takes_text(contributed_model):
    from setforge.testing import sample_dataset

    texts = sample_dataset("text")
    with pytest.raises(DataError, match="'logistic-regression' takes.*not text; choose model: nearest-centroid"):
        Utility().evaluate(EvalContext.from_seed(0, texts, test=texts))


def test_a_builtin_model_that_cannot_take_the_data_is_refused_at_validate_naming_those_that_can():
    # (found by a user-journey audit: the hint offered every built-in model, gradient-boosting for
    # audio and cnn for tables, and gradient-boosting on images failed only after every step)
    problems = Utility.check_params(Utility.Params(model="gradient-boosting"), "image")
    assert problems == [("model", "'gradient-boosting' needs tabular data, and the source gives image data; use "
                                  "'logistic-regression' or 'mlp' or 'cnn'")]
    [(place, message)] = Utility.check_params(Utility.Params(model="cnn"), "tabular")
    assert place == "model" and message.endswith("use 'logistic-regression' or 'mlp' or 'gradient-boosting'")
    assert Utility.check_params(Utility.Params(model="mlp"), "audio") == []
    with pytest.raises(DataError, match=r"takes \['tabular'\] data, not audio; choose model: logistic-regression or mlp"):
        Utility({"model": "gradient-boosting"}).model_kind("audio")


def _centroid_predictions(train, ds):
    model = NearestCentroidModel({})
    model.fit(train, None, Rng(0), "cpu")
    return model.predict(ds)


def test_every_evaluator_with_a_model_param_takes_a_contributed_model(contributed_model):
    # (found by an audit: only utility took a `setforge.models` model; ablation, cas and tstr
    # refused 'nearest-centroid' as not one of their built-in names)
    from setforge.context import StepRecord
    from setforge.plugins.evaluate.ablation import Ablation
    from setforge.plugins.evaluate.cas import ClassAgreementScore
    from setforge.plugins.evaluate.tstr import TrainSyntheticTestReal
    from setforge.testing import sample_dataset

    table = sample_dataset("tabular")
    train, test = table[::2], table[1::2]
    n, m = len(train), len(test)
    generated = test.replace(origin=torch.full((m,), int(Origin.GENERATED)), step=torch.zeros(m, dtype=torch.int64),
                             parent=torch.full((m,), -1), row_id=None)
    optimised = Dataset.concat([train, generated])
    steps = [StepRecord(0, "generate", "copy", optimised)]
    ectx = EvalContext.from_seed(0, raw_train=train, train=optimised, test=test, steps=steps)
    expected = float((_centroid_predictions(train, test) == test.y).double().mean())
    cas = ClassAgreementScore({"model": "nearest-centroid"}).evaluate(ectx)
    agree = _centroid_predictions(train, generated) == generated.y
    assert cas.get("cas/overall").value == pytest.approx(float(agree.double().mean()))
    assert cas.get("cas/reference/overall").value == pytest.approx(expected)
    tstr = TrainSyntheticTestReal({"model": "nearest-centroid"}).evaluate(ectx)
    scores = classification_scores(test.y, _centroid_predictions(train, test), test.num_classes)
    assert tstr.get("tstr/real/macro_f1").value == pytest.approx(scores["macro_f1"])
    assert tstr.get("tstr/real/train_rows").value == n
    ablation = Ablation({"model": "nearest-centroid", "repeats": 2}).evaluate(ectx)
    assert ablation.get("ablation/cumulative/0/accuracy").value == pytest.approx(expected)
    for cls in (Ablation, ClassAgreementScore, TrainSyntheticTestReal):
        with pytest.raises(ConfigError, match="unknown model 'nearest'; choose one of .*boosting, nearest-centroid"):
            cls({"model": "nearest"})


def test_every_evaluator_with_a_model_param_refuses_at_validate_a_model_that_cannot_take_the_data(contributed_model):
    # (ablation and tstr had no check: gradient-boosting on images failed only after every step)
    from setforge.plugins.evaluate.ablation import Ablation
    from setforge.plugins.evaluate.cas import ClassAgreementScore
    from setforge.plugins.evaluate.tstr import TrainSyntheticTestReal

    for cls in (Utility, Ablation, ClassAgreementScore, TrainSyntheticTestReal):
        assert cls.check_params(cls.Params(model="gradient-boosting"), "image") == [
            ("model", "'gradient-boosting' needs tabular data, and the source gives image data; use "
                      "'logistic-regression' or 'mlp' or 'cnn'")], cls.name
        # a contributed model is read for its modalities too; one that takes the data is named
        assert cls.check_params(cls.Params(model="nearest-centroid"), "image") == [
            ("model", "'nearest-centroid' needs tabular or text data, and the source gives image data; use "
                      "'logistic-regression' or 'mlp' or 'cnn'")], cls.name
        assert cls.check_params(cls.Params(model="cnn"), "tabular")[0][1].endswith(
            "use 'logistic-regression' or 'mlp' or 'gradient-boosting' or 'nearest-centroid'")
        assert cls.check_params(cls.Params(model="nearest-centroid"), "tabular") == []
    for cls in (ClassAgreementScore, TrainSyntheticTestReal):
        assert cls.check_params(cls.Params(), "audio") == []  # auto takes any data
    with pytest.raises(DataError, match=r"evaluate 'cas': model 'nearest-centroid' takes \['tabular', 'text'\] data, "
                                        r"not image; choose model: logistic-regression or mlp or cnn"):
        ClassAgreementScore({"model": "nearest-centroid"}).model_kind("image")


def test_validate_names_the_place_of_a_model_that_cannot_take_the_source_s_data(tmp_path, capsys):
    from setforge.tools.cli import main

    run_file = tmp_path / "run.yaml"
    run_file.write_text("source: sklearn-digits\nevaluate:\n  - {name: tstr, params: {model: gradient-boosting}}\n"
                        "  - {name: ablation, params: {model: gradient-boosting}}\n"
                        "  - {name: cas, params: {model: cnn}}\n")
    assert main(["validate", str(run_file)]) == 2
    err = capsys.readouterr().err
    for index in (0, 1):
        assert (f"evaluate[{index}].params.model: 'gradient-boosting' needs tabular data, and the source gives image "
                "data; use 'logistic-regression' or 'mlp' or 'cnn'") in err
    assert "evaluate[2]" not in err


def test_a_contributed_model_that_fails_to_load_is_named_with_the_evaluator_that_asked_for_it(monkeypatch):
    import importlib.metadata

    from setforge import PluginError
    from setforge.plugins.evaluate import _downstream
    from setforge.plugins.evaluate.tstr import TrainSyntheticTestReal

    entry = importlib.metadata.EntryPoint(name="gone", group=_downstream.MODEL_ENTRY_POINT_GROUP,
                                          value="sfplug_nowhere_at_all:Model")
    monkeypatch.setattr(_downstream, "downstream_models", lambda: {"gone": entry})
    params = TrainSyntheticTestReal.Params(model="gone")  # the name is installed: accepted
    with pytest.raises(PluginError, match="evaluate 'tstr': model 'gone' \\(unknown\\) failed to load: No module named"):
        TrainSyntheticTestReal.check_params(params, "tabular")
    assert TrainSyntheticTestReal.check_params(params, None) == []  # (data not known: nothing loaded)


def test_a_class_without_training_rows_is_never_predicted():
    # (an mlp's output unit of a class it never saw could win: a class of 0 train and 0 test rows
    # entered macro F1 at 0, 0.4/3 instead of 0.4/2)
    from setforge.plugins._shared.classifiers import fit_classifier

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = (x[:, 0] > 0).long()
    for kind in ("logistic-regression", "mlp"):
        model = fit_classifier(kind, x, y, 3, 0, epochs=5)
        probe = torch.randn(2000, 4, generator=g) * 5  # far outside the training rows too
        assert int((model.predict(probe) == 2).sum()) == 0
        assert float(model.predict_proba(probe)[:, 2].max()) < 1e-30


def test_compare_runs_pairs_nothing_from_a_damaged_predictions_file(tmp_path):
    from setforge.plugins.evaluate.utility import PREDICTIONS_FILE

    y = np.array([0, 0, 1, 1, 2, 2] * 5)
    runs = {name: tmp_path / name for name in ("a", "b")}

    def save(run, **changed):
        run.mkdir(exist_ok=True)
        arrays = {"y": y, "classes": np.array(["a", "b", "c"]), "test": "fingerprint", "minority": np.array([2]),
                  "raw": np.stack([y, y]), "optimised": np.stack([y, y]), "bootstrap": 200, "level": 0.95}
        np.savez_compressed(run / PREDICTIONS_FILE, **{**arrays, **changed})

    save(runs["a"])
    save(runs["b"], optimised=np.stack([np.roll(y, 1), y]))
    assert Utility.compare_runs(runs["a"], runs["b"])["optimised/macro_f1"]["interval"]
    (runs["b"] / PREDICTIONS_FILE).write_bytes(b"")  # (a run killed while writing it)
    assert Utility.compare_runs(runs["a"], runs["b"]) == {}
    save(runs["b"], optimised=np.stack([y + 5, y]))  # labels that are no class index
    assert Utility.compare_runs(runs["a"], runs["b"]) == {}
    save(runs["b"], optimised=np.stack([y, y]).astype(float) + 0.5)
    assert Utility.compare_runs(runs["a"], runs["b"]) == {}


def test_compare_runs_does_not_pair_runs_of_one_seed(tmp_path):
    # With one seed the interval covers the test rows only, not which seed trained each model: compare read
    # "better (paired: ...)" where each run's headline says it cannot judge (one seed).
    from setforge.plugins.evaluate.utility import PREDICTIONS_FILE

    y = np.array([0, 1] * 50)
    for name, optimised, seeds in (("a", y ^ (np.arange(100) < 40), 1), ("b", y, 1), ("c", y ^ (np.arange(100) < 40), 2),
                                    ("d", y, 2)):
        (tmp_path / name).mkdir()
        np.savez_compressed(tmp_path / name / PREDICTIONS_FILE, y=y, classes=np.array(["a", "b"]), test="fingerprint",
                            minority=np.array([], dtype=np.int64), raw=np.stack([y] * seeds), bootstrap=200,
                            optimised=np.stack([optimised] * seeds), level=0.95)
    assert Utility.compare_runs(tmp_path / "a", tmp_path / "b") == {}
    paired = Utility.compare_runs(tmp_path / "c", tmp_path / "d")["optimised/accuracy"]
    assert paired["value"] == pytest.approx(0.4) and paired["interval"][0] > 0


def test_one_seed_gives_no_interval(digits):
    # (the test rows' noise alone would look surer than the change is: the headline cannot judge one seed)
    train, val, test = digits
    optimised = Dataset.concat([train, train[train.y == 9]])
    ectx = EvalContext.from_seed(0, train, optimised, val=val, test=test)
    metrics = Utility({"epochs": 5, "repeats": 1}).evaluate(ectx)
    for path in ("delta/macro_f1", "delta/minority_recall", f"delta/recall/{test.classes[9]}"):
        assert metrics.get(f"utility/{path}").interval is None and metrics.get(f"utility/{path}").estimator is None
