"""tstr (train on synthetic, test on real) and the gradient-boosting downstream model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from setforge import Dataset, EvalContext, Origin, Rng
from setforge.context import StepContext, StepRecord
from setforge.dataset import FeatureInfo
from setforge.plugins._shared.classifiers import BoostedTrees, train_classifier
from setforge.plugins.evaluate.tstr import TrainSyntheticTestReal
from setforge.plugins.source.sklearn import BreastCancerSource
from setforge.testing import check_component


@pytest.fixture(scope="module")
def cancer():
    ds = BreastCancerSource().load(StepContext.from_seed(0))
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    return ds[perm[230:]].replace(row_id=None), ds[perm[:60]], ds[perm[60:230]]


def test_conformance():
    check_component(TrainSyntheticTestReal)


def _as_generated(rows: Dataset, step: int) -> Dataset:
    n = len(rows)
    return rows.replace(origin=torch.full((n,), int(Origin.GENERATED)), step=torch.full((n,), step),
                        parent=torch.full((n,), -1), row_id=None)


def test_tstr_per_step_next_to_train_real(cancer):
    train, val, test = cancer
    # "generated" rows: step 0 copies the real rows (as good as real), step 1 shuffles their labels (useless)
    copies = _as_generated(train, 0)
    noise = _as_generated(train.replace(y=train.y[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))]), 1)
    after0 = Dataset.concat([train, copies])
    after1 = Dataset.concat([after0, noise])
    steps = [StepRecord(0, "generate", "copy", after0), StepRecord(1, "generate", "noise", after1)]
    ectx = EvalContext.from_seed(0, raw_train=train, train=after1, val=val, test=test, steps=steps)
    metrics = TrainSyntheticTestReal({"model": "gradient-boosting"}).evaluate(ectx)
    m = metrics.measures["tstr"]
    assert m["real/macro_f1"].n == len(test) and m["real/macro_f1"].value > 0.9
    # copies of the real rows teach the same model exactly as much as the real rows
    assert m["step/0/macro_f1"].value == pytest.approx(m["real/macro_f1"].value)
    assert m["step/0/ratio/macro_f1"].value == pytest.approx(1.0)
    assert m["step/0/train_rows"].value == len(train)
    assert m["step/1/balanced_accuracy"].value < 0.7  # shuffled labels teach next to nothing
    assert m["generated/train_rows"].value == 2 * len(train)
    # the real reference is the same model utility trains (sklearn's own, same seed and settings)
    model = HistGradientBoostingClassifier(max_iter=100, early_stopping=True, n_iter_no_change=10,
                                           random_state=ectx.shared_rng.spawn(0).sk_seed())
    model.fit(train.x.double().numpy(), train.y.numpy(), X_val=val.x.double().numpy(), y_val=val.y.numpy())
    from sklearn.metrics import f1_score
    assert m["real/macro_f1"].value == pytest.approx(f1_score(test.y.numpy(), model.predict(test.x.double().numpy()),
                                                              average="macro"))


def test_the_real_reference_is_utilitys_raw_model_when_kind_and_options_agree(cancer, monkeypatch):
    from setforge.plugins.evaluate import _downstream
    from setforge.plugins.evaluate.utility import Utility

    trained: list[int] = []
    monkeypatch.setattr(_downstream, "train_classifier",
                        lambda kind, rows, *args, **kw: trained.append(len(rows)) or train_classifier(kind, rows, *args, **kw))

    train, val, test = cancer
    generated = _as_generated(train[:100], 0)
    optimised = Dataset.concat([train, generated])
    ectx = EvalContext.from_seed(3, raw_train=train, train=optimised, val=val, test=test,
                                 steps=[StepRecord(0, "generate", "copy", optimised)])
    options = {"model": "mlp", "epochs": 3, "patience": 2}
    utility = Utility(options).evaluate(ectx).measures["utility"]
    tstr = TrainSyntheticTestReal(options).evaluate(ectx).measures["tstr"]
    for score in ("macro_f1", "balanced_accuracy"):
        assert tstr[f"real/{score}"].value == utility[f"raw/{score}"].value
    # utility: raw and optimised; tstr: only the generated rows' model (the real one is utility's raw)
    assert trained == [len(train), len(optimised), len(generated)]


def test_generated_rows_missing_a_class_are_skipped_by_name(cancer):
    train, val, test = cancer
    only = _as_generated(train[train.y == 0], 0)
    out = Dataset.concat([train, only])
    ectx = EvalContext.from_seed(0, raw_train=train, train=out, val=val, test=test,
                                 steps=[StepRecord(0, "generate", "g", out)])
    metrics = TrainSyntheticTestReal({"model": "logistic-regression", "epochs": 5}).evaluate(ectx)
    assert "generated" in metrics.skipped["tstr"] and "'benign'" in metrics.skipped["tstr"]["generated"]
    assert "real/macro_f1" in metrics.measures["tstr"]


def test_gradient_boosting_splits_categorical_columns_natively():
    rng = np.random.default_rng(0)
    n = 600
    # the label is a parity of a 6-category column: native categorical splits find it at once
    code = rng.integers(6, size=n)
    x = np.stack([code, rng.normal(size=n)], axis=1).astype(np.float32)
    y = np.isin(code, [0, 3, 4]).astype(np.int64)
    features = FeatureInfo(names=("code", "noise"), categorical={"code": tuple("abcdef")})
    ds = Dataset(x=torch.from_numpy(x), y=torch.from_numpy(y), classes=("no", "yes"), modality="tabular",
                 features=features)
    model = train_classifier("gradient-boosting", ds[:400], None, Rng(0), epochs=1)
    assert isinstance(model, BoostedTrees) and model.model.is_categorical_.tolist() == [True, False]
    # one boosting iteration with a categorical split already separates the classes
    assert float((model.predict(ds.x[400:]) == ds.y[400:]).double().mean()) == 1.0
    again = train_classifier("gradient-boosting", ds[:400], None, Rng(0), epochs=1)
    assert torch.equal(model.predict_proba(ds.x), again.predict_proba(ds.x))
    single = train_classifier("gradient-boosting", ds[:400][ds.y[:400] == 1], None, Rng(0))
    assert single.predict(ds.x[:5]).tolist() == [1] * 5 and single.predict_proba(ds.x[:5]).shape == (5, 2)


def test_a_ratio_to_a_real_model_that_scores_zero_is_skipped_with_its_reason(monkeypatch):
    # (found by an audit: the ratio paths were left out without a word)
    import setforge.plugins.evaluate.tstr as tstr

    g = torch.Generator().manual_seed(0)
    y = torch.arange(80) % 2
    real = Dataset(x=torch.randn(80, 2, generator=g) + 3 * y[:, None], y=y, classes=("a", "b"), modality="tabular")
    test = Dataset(x=real.x.clone(), y=1 - y, classes=("a", "b"), modality="tabular")  # swapped labels
    generated = _as_generated(Dataset(x=real.x.clone(), y=1 - y, classes=("a", "b"), modality="tabular"), 0)
    train = Dataset.concat([real, generated])
    ectx = EvalContext.from_seed(0, raw_train=real, train=train, test=test,
                                 steps=[StepRecord(0, "generate", "g", train)])
    metrics = TrainSyntheticTestReal({"model": "logistic-regression", "epochs": 50}).evaluate(ectx)
    assert metrics.get("tstr/real/macro_f1").value == 0.0
    assert metrics.get("tstr/generated/macro_f1").value > 0.9
    assert "no ratio" in metrics.skipped["tstr"]["generated/ratio/macro_f1"]
