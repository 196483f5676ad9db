"""cas: the share of generated rows that a classifier trained on real rows assigns to the requested class."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from setforge import Dataset, EvalContext, Origin
from setforge.plugins._shared.classifiers import train_classifier
from setforge.plugins.evaluate.cas import ClassAgreementScore
from setforge.testing import check_component

FAST = {"model": "mlp", "epochs": 15, "patience": 3}


def _digits() -> dict[str, Dataset]:
    bunch = load_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    classes = tuple(str(c) for c in range(10))
    part = lambda a, b: Dataset(x=x[a:b], y=y[a:b], classes=classes, modality="image")  # noqa: E731
    return {"train": part(0, 700), "val": part(700, 900), "test": part(900, 1200), "pool": part(1200, 1500)}


def _with_generated(train: Dataset, x: torch.Tensor, y: torch.Tensor) -> Dataset:
    generated = Dataset(x=x, y=y, classes=train.classes, modality="image",
                        origin=torch.full_like(y, int(Origin.GENERATED)), step=torch.zeros_like(y),
                        parent=torch.full_like(y, -1), row_id=torch.full_like(y, -1))
    return Dataset.concat([train, generated])


def _evaluate(parts: dict[str, Dataset], optimised: Dataset, test: bool = True, **params):
    ectx = EvalContext.from_seed(0, parts["train"], optimised, val=parts["val"], test=parts["test"] if test else None,
                                 name="cas")
    return ClassAgreementScore({**FAST, **params}).evaluate(ectx), ectx


def test_numbers_match_a_classifier_trained_by_hand_on_the_real_rows():
    parts = _digits()
    pool = parts["pool"]
    # "generated" rows: unseen real digits, half labelled right, the rest shifted to the next class
    y = torch.where(torch.arange(len(pool)) % 2 == 0, pool.y, (pool.y + 1) % 10)
    metrics, ectx = _evaluate(parts, _with_generated(parts["train"], pool.x, y))
    model = train_classifier("mlp", parts["train"], parts["val"], ectx.shared_rng.spawn(0), "cpu",
                             epochs=15, patience=3, batch_size=128, lr=None, hidden=128)
    predicted = model.predict(pool.x)
    agree = predicted == y
    assert metrics.get("cas/overall").value == pytest.approx(float(agree.double().mean()))
    assert metrics.get("cas/overall").n == len(pool)
    for c in range(10):
        rows = y == c
        measure = metrics.get(f"cas/by_class/{c}")
        assert measure.value == pytest.approx(float(agree[rows].double().mean())) and measure.n == int(rows.sum())
    test = parts["test"]
    assert metrics.get("cas/reference/overall").value == pytest.approx(float((model.predict(test.x) == test.y).double().mean()))
    # real digits labelled right score about as well as the test rows; the mislabelled half near zero
    right = float(agree[::2].double().mean())
    assert right > 0.85 and abs(right - metrics.get("cas/reference/overall").value) < 0.08
    assert float(agree[1::2].double().mean()) < 0.1


def test_only_classes_with_generated_rows_are_reported():
    parts = _digits()
    pool = parts["pool"]
    keep = pool.y < 2
    metrics, _ = _evaluate(parts, _with_generated(parts["train"], pool.x[keep], pool.y[keep]))
    flat = metrics.flat()
    assert {p for p in flat if p.startswith("cas/by_class/")} == {"cas/by_class/0", "cas/by_class/1"}
    assert metrics.get("cas/overall").value > 0.7  # digits 0 and 1 labelled right (a quick mlp)


def test_no_generated_rows_is_skipped_with_a_reason():
    parts = _digits()
    metrics, _ = _evaluate(parts, parts["train"])
    assert not metrics.flat()
    assert "no generated rows" in metrics.skipped["cas"]["overall"]


def test_without_a_test_split_the_reference_is_skipped():
    parts = _digits()
    pool = parts["pool"]
    metrics, _ = _evaluate(parts, _with_generated(parts["train"], pool.x, pool.y), test=False)
    assert "cas/overall" in metrics and "reference" in metrics.skipped["cas"]


def test_auto_model_is_a_cnn_for_images():
    parts = _digits()
    pool = parts["pool"]
    ectx = EvalContext.from_seed(0, parts["train"], _with_generated(parts["train"], pool.x[:50], pool.y[:50]),
                                 val=parts["val"])
    evaluator = ClassAgreementScore({"epochs": 2, "patience": 1})
    model = evaluator._classifier(ectx, parts["train"])
    assert model.kind == "cnn"
    # cached by content: asked again, the same model comes back without training
    assert evaluator._classifier(ectx, parts["train"]) is model


def test_conforms_to_the_kit():
    check_component(ClassAgreementScore)


def test_a_resumed_run_reads_the_classifier_back_from_the_cache_folder(tmp_path, monkeypatch):
    from setforge.context import Cache
    from setforge.plugins.evaluate import _downstream

    parts = _digits()
    optimised = _with_generated(parts["train"], parts["pool"].x, parts["pool"].y)

    def evaluate():
        ectx = EvalContext.from_seed(0, parts["train"], optimised, val=parts["val"], test=parts["test"], name="cas",
                                     cache=Cache(tmp_path / "cache"))  # a fresh Cache, as a resumed run makes
        return ClassAgreementScore(FAST).evaluate(ectx)

    first = evaluate()
    assert list((tmp_path / "cache").glob("*.pt")), "the classifier is kept on disk as plain tensors"

    def refuse(*args, **kwargs):
        raise AssertionError("the classifier was trained again")

    monkeypatch.setattr(_downstream, "train_classifier", refuse)
    second = evaluate()
    assert second.get("cas/overall") == first.get("cas/overall")
    assert second.get("cas/reference/overall") == first.get("cas/reference/overall")
