"""fid: Fréchet distance between real and new rows, by origin, overall and per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from setforge import Origin
from setforge.plugins.evaluate.fid import FrechetDistance
from setforge.testing import check_component
from tests.evaluate._distribution_data import context, flipped, noisy_copies, real_split


def reference_fid(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> float:
    """pytorch-fid: numpy moments and scipy sqrtm (the first set's moments weighted by `weights`)."""
    mu1, mu2 = np.average(a, axis=0, weights=weights), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False, aweights=weights), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2)).real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def standardised(train, x):
    flat = train.x.reshape(len(train), -1).double()
    std = flat.std(0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return ((x.reshape(len(x), -1).double() - flat.mean(0)) / std).float().double().numpy()


def test_conforms():
    check_component(FrechetDistance)


# Digits have always-blank pixels, so the reference's covariances are singular and scipy warns.
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_digits_generated_and_augmented_rows():
    train, test = real_split("digits")
    generated = noisy_copies(train, torch.arange(600), 0.05, Origin.GENERATED)
    augmented = flipped(train, torch.arange(600, 900))
    params = {"feature_space": "raw", "min_rows": 30}
    metrics = FrechetDistance(params).evaluate(context(train, [generated, augmented], test))
    gen, aug, new = (metrics.get(f"fid/{g}/overall") for g in ("generated", "augmented", "new"))
    assert (gen.n, aug.n, new.n) == (600, 300, 900)
    # Noisy copies of real rows sit much closer to the real rows than mirrored digits do.
    assert 0 < gen.value < aug.value
    # Overall: the real rows weighted so that each class counts as much as among the generated rows.
    real_y, new_y = train.y.numpy(), generated.y.numpy()
    shares = np.bincount(new_y, minlength=10) / len(new_y)
    weights = shares[real_y] / np.bincount(real_y, minlength=10)[real_y]
    assert gen.value == pytest.approx(reference_fid(standardised(train, train.x), standardised(train, generated.x),
                                                    weights), rel=1e-5)
    assert gen.estimator == "frechet-class-weighted"
    plain = FrechetDistance({**params, "match_classes": False}).evaluate(context(train, [generated], test))
    assert plain.get("fid/generated/overall").value == pytest.approx(
        reference_fid(standardised(train, train.x), standardised(train, generated.x)), rel=1e-5)
    assert plain.get("fid/generated/overall").estimator == "frechet"
    # Per class: each class of the generated rows against the real rows of that class.
    three = metrics.get("fid/generated/by_class/3")
    real3 = train.x[train.y == 3]
    assert three.n == int((generated.y == 3).sum())
    assert three.value == pytest.approx(reference_fid(standardised(train, real3),
                                                      standardised(train, generated.x[generated.y == 3])), rel=1e-5)
    assert three.estimator == "frechet" and three.interval is None
    # A class with fewer than min_rows augmented rows gets the small-sample estimate, named, with an interval.
    small = {p: m for p, m in metrics.flat().items() if p.startswith("fid/augmented/by_class/") and m.n < 30}
    assert small and all(m.estimator.startswith("frechet-pca") and m.interval[0] <= m.value <= m.interval[1]
                         for m in small.values())
    assert not metrics.skipped.get("fid")


def test_noisier_copies_are_further():
    train, test = real_split("digits")
    rows = torch.arange(500)
    values = []
    for scale in (0.02, 0.1, 0.3):
        ectx = context(train, [noisy_copies(train, rows, scale, Origin.GENERATED)], test)
        values.append(FrechetDistance({"feature_space": "raw", "per_class": False}).evaluate(ectx)
                      .get("fid/generated/overall").value)
    assert values[0] < values[1] < values[2]


def test_single_origin_new_equals_that_origin():
    train, test = real_split("breast-cancer")
    generated = noisy_copies(train, torch.arange(200), 0.3, Origin.GENERATED)
    metrics = FrechetDistance({"min_rows": 20}).evaluate(context(train, [generated], test))
    assert metrics.get("fid/new/overall") == metrics.get("fid/generated/overall")
    assert metrics.get("fid/new/by_class/benign") == metrics.get("fid/generated/by_class/benign")


def test_breast_cancer_resampled_and_generated_rows():
    train, test = real_split("breast-cancer")
    close = noisy_copies(train, torch.arange(150), 0.1, Origin.RESAMPLED)
    far = noisy_copies(train, torch.arange(150, 300), 1.5, Origin.GENERATED)
    metrics = FrechetDistance({"min_rows": 20}).evaluate(context(train, [close, far], test))
    assert 0 < metrics.get("fid/resampled/overall").value < metrics.get("fid/generated/overall").value
    assert {"fid/generated/by_class/malignant", "fid/generated/by_class/benign"} <= set(metrics.flat())


def test_small_groups_get_the_small_sample_estimate_or_are_refused():
    train, test = real_split("breast-cancer")
    generated = noisy_copies(train, torch.arange(10), 0.3, Origin.GENERATED)
    small = FrechetDistance().evaluate(context(train, [generated], test)).get("fid/generated/overall")
    # 10 new rows: the distance in 9 principal dimensions, class-weighted, with its bootstrap interval.
    assert small.n == 10 and small.estimator == "frechet-pca9-bootstrap-class-weighted"
    assert small.interval[0] <= small.value <= small.interval[1] and small.std > 0
    metrics = FrechetDistance({"small_sample": False}).evaluate(context(train, [generated], test))
    assert not metrics.measures
    reason = metrics.skipped["fid"]["generated/overall"]
    assert "10 generated rows" in reason and "at least 50" in reason and "min_rows" in reason
    nothing = FrechetDistance().evaluate(context(train, [], test))
    assert "no augmented, resampled or generated rows" in nothing.skipped["fid"]["new/overall"]


def test_default_feature_space_for_images_is_the_trained_cnn(monkeypatch):
    from setforge.plugins._shared import classifiers

    trained = []
    real_train = classifiers.train_classifier
    monkeypatch.setattr(classifiers, "train_classifier",
                        lambda kind, *args, **kw: trained.append(kind) or real_train(kind, *args, **kw))
    train, test = real_split("digits", train_share=0.4)
    rows = torch.arange(400)
    params = {"cnn_epochs": 3, "per_class": False}
    from setforge import Cache

    cache = Cache()
    values = []
    for scale in (0.02, 0.5):
        ectx = context(train, [noisy_copies(train, rows, scale, Origin.GENERATED)], test)
        ectx.cache = cache
        values.append(FrechetDistance(params).evaluate(ectx).get("fid/generated/overall").value)
    assert 0 < values[0] < values[1]
    assert trained == ["cnn"]  # the trained-cnn space: one network, trained once for both measurements
