"""memorisation: distance to the closest real training row (DCR) flags planted copies."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from setforge import Origin
from setforge.plugins.evaluate.memorisation import Memorisation
from setforge.testing import check_component
from tests.evaluate._distribution_data import context, derived, flipped, noisy_copies, real_split


def split3(name: str):
    """train (50%), held-out test (25%) and fresh real rows (25%) that neither contains."""
    train, rest = real_split(name, train_share=0.5)
    half = len(rest) // 2
    return train, rest[:half], rest[half:]


def planted(train, fresh, copies: int, seed: int = 0):
    """Generated rows: `copies` exact copies of training rows, then every fresh (never seen) real row."""
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:copies]
    copied = derived(train, train.x[rows], rows, Origin.GENERATED)
    unseen = derived(fresh, fresh.x, torch.arange(len(fresh)), Origin.GENERATED)
    return copied, unseen


def test_conforms():
    check_component(Memorisation)


def test_digits_planted_copies_are_flagged():
    train, test, fresh = split3("digits")
    copied, unseen = planted(train, fresh, copies=150)
    metrics = Memorisation({"feature_space": "raw"}).evaluate(context(train, [copied, unseen], test))
    get = lambda path: metrics.get(f"memorisation/{path}")  # noqa: E731
    n_generated = len(copied) + len(unseen)
    share = get("generated/overall/near_copy_share")
    assert share.n == n_generated
    # Every planted copy (DCR 0) is flagged; unseen real rows only at the held-out rate (about 1%).
    assert len(copied) / n_generated <= share.value <= (len(copied) + 0.05 * len(unseen)) / n_generated
    assert get("holdout/overall/near_copy_share").value == pytest.approx(0.01, abs=0.01)
    assert get("threshold").n == len(test) and get("threshold").value > 0
    # Fresh real rows are as far from the training rows as the held-out rows are.
    clean = Memorisation({"feature_space": "raw"}).evaluate(context(train, [unseen], test))
    ratio = clean.get("memorisation/generated/overall/dcr_ratio").value
    assert 0.8 < ratio < 1.25
    assert clean.get("memorisation/generated/overall/near_copy_share").value < 0.05
    # With copies the median DCR drops below the held-out rows' median.
    assert get("generated/overall/dcr_ratio").value < ratio
    # Per class, against held-out rows of the same class.
    assert "memorisation/generated/by_class/4/near_copy_share" in metrics
    assert "memorisation/holdout/by_class/4/dcr_median" in metrics


def test_near_copies_with_tiny_noise_and_an_absolute_threshold():
    train, test, fresh = split3("digits")
    near = noisy_copies(train, torch.arange(100), 0.0005, Origin.GENERATED)
    unseen = derived(fresh, fresh.x, torch.arange(len(fresh)), Origin.GENERATED)
    ectx = context(train, [near, unseen], test)
    metrics = Memorisation({"feature_space": "raw", "per_class": False}).evaluate(ectx)
    share = metrics.get("memorisation/generated/overall/near_copy_share").value
    assert share >= 100 / (100 + len(fresh))
    fixed = Memorisation({"feature_space": "raw", "per_class": False, "threshold": 1e-9}).evaluate(ectx)
    assert fixed.get("memorisation/threshold").value == 1e-9
    assert fixed.get("memorisation/generated/overall/near_copy_share").value == 0.0


def test_closest_pairs_figures_show_the_copies():
    train, test, fresh = split3("digits")
    copied, unseen = planted(train, fresh, copies=5)
    augmented = flipped(train, torch.arange(40))
    metrics = Memorisation({"feature_space": "raw", "figure_pairs": 6, "per_class": False}).evaluate(
        context(train, [copied, unseen, augmented], test))
    figures = metrics.figures["memorisation"]
    assert set(figures) == {"closest-pairs-generated", "closest-pairs-augmented"}
    image = Image.open(io.BytesIO(figures["closest-pairs-generated"]))
    assert image.format == "PNG" and image.width > 6 * 8 and image.height > 2 * 8
    none = Memorisation({"feature_space": "raw", "figure_pairs": 0}).evaluate(context(train, [copied], test))
    assert not none.figures


def test_breast_cancer_planted_copies_and_tabular_figure():
    train, test, fresh = split3("breast-cancer")
    copied, unseen = planted(train, fresh, copies=40)
    metrics = Memorisation({"min_rows": 10}).evaluate(context(train, [copied, unseen], test))
    share = metrics.get("memorisation/generated/overall/near_copy_share")
    assert share.value >= 40 / (40 + len(fresh))
    assert share.value <= (40 + 0.1 * len(fresh)) / (40 + len(fresh))
    assert {"memorisation/generated/by_class/malignant/dcr_median",
            "memorisation/generated/by_class/benign/dcr_ratio"} <= set(metrics.flat())
    image = Image.open(io.BytesIO(metrics.figures["memorisation"]["closest-pairs-generated"]))
    assert image.format == "PNG"


def test_without_held_out_rows_reports_distances_and_says_why_not_the_rest():
    train, _, fresh = split3("breast-cancer")
    copied, unseen = planted(train, fresh, copies=40)
    metrics = Memorisation({"per_class": False, "figure_pairs": 0}).evaluate(context(train, [copied, unseen]))
    assert metrics.get("memorisation/generated/overall/dcr_median").n == 40 + len(fresh)
    skipped = metrics.skipped["memorisation"]
    assert "0 held-out rows" in skipped["threshold"] and "threshold" in skipped["threshold"]
    assert "no real held-out rows" in skipped["generated/overall/dcr_ratio"]
    assert "generated/overall/near_copy_share" in skipped


def test_too_few_new_rows_get_bootstrap_intervals_or_are_refused():
    train, test, fresh = split3("breast-cancer")
    copied, _ = planted(train, fresh, copies=5)
    small = Memorisation().evaluate(context(train, [copied], test))
    median = small.get("memorisation/generated/overall/dcr_median")
    assert median.n == 5 and median.estimator == "median-bootstrap"
    assert median.interval[0] <= median.value <= median.interval[1]
    ratio = small.get("memorisation/generated/overall/dcr_ratio")
    assert ratio.estimator == "median-ratio-bootstrap-class-weighted" and ratio.interval is not None
    assert small.get("memorisation/generated/overall/near_copy_share").estimator == "share-wilson"
    metrics = Memorisation({"small_sample": False}).evaluate(context(train, [copied], test))
    assert "5 generated rows" in metrics.skipped["memorisation"]["generated/overall"]


def test_held_out_class_paths_are_percent_encoded_like_every_other_class_path():
    # (found by an audit: holdout/by_class/a/b was two path segments)
    from setforge import Dataset, EvalContext

    g = torch.Generator().manual_seed(0)
    classes = ("a/b", "ü%x")
    y = torch.arange(60) % 2
    real = Dataset(x=torch.randn(60, 3, generator=g), y=y, classes=classes, modality="tabular")
    test = Dataset(x=torch.randn(60, 3, generator=g), y=y, classes=classes, modality="tabular")
    new = derived(real, real.x[:20] + 0.1, torch.arange(20), Origin.AUGMENTED)
    ectx = EvalContext.from_seed(0, real, train=Dataset.concat([real, new]), test=test)
    measures = Memorisation({"feature_space": "raw", "figure_pairs": 0}).evaluate(ectx).measures["memorisation"]
    assert "holdout/by_class/a%2Fb/dcr_median" in measures and "holdout/by_class/ü%25x/dcr_median" in measures
    assert not any(path.startswith("holdout/by_class/a/") for path in measures)


def _one_feature(values, labels):
    from setforge import Dataset

    return Dataset(x=torch.tensor(values, dtype=torch.float32).view(-1, 1), y=torch.tensor(labels),
                   classes=("a", "b", "c"), modality="tabular")


def _dcr_case(c_held_out: list[float]):
    """Real training rows at 0, 100, ..., 500; held-out rows at DCR 1, 3 (a), 2, 6 (b) and the
    given rows of class c; generated rows at DCR 10, 20, 30, 40 (a) and 1..12 (c)."""
    train = _one_feature([0, 100, 200, 300, 400, 500], [0, 0, 1, 1, 2, 2])
    test = _one_feature([1, 103, 202, 306, *c_held_out], [0, 0, 1, 1, *[2] * len(c_held_out)])
    values = [10, 20, 130, 140, *range(401, 413)]
    new = derived(train, torch.tensor(values, dtype=torch.float32).view(-1, 1),
                  torch.tensor([0] * 4 + [4] * 12), Origin.GENERATED)
    return context(train, [new], test)


def test_overall_ratio_leaves_no_class_to_a_single_held_out_row():
    # (found by an audit: class 'three' had 26 of 49 generated rows and 1 test row; that one row
    # was the whole class-weighted yardstick, and every stratified resample kept it, so the
    # overall ratio came with a narrow interval while no per-class ratio could be formed)
    params = {"feature_space": "raw", "min_rows": 2, "figure_pairs": 0}
    metrics = Memorisation(params).evaluate(_dcr_case([450]))  # class c: one held-out row, DCR 50
    skipped = metrics.skipped["memorisation"]
    for family in ("generated", "new"):
        assert f"memorisation/{family}/overall/dcr_ratio" not in metrics
        reason = skipped[f"{family}/overall/dcr_ratio"]
        assert "at least 2 held-out test rows of each class" in reason and "'c' (1)" in reason
        assert "match_classes: false" in reason
    assert "1 held-out test rows of class 'c'" in skipped["generated/by_class/c/dcr_ratio"]
    # Per-class ratio by hand: median new DCR of a (10, 20, 30, 40) over median held-out DCR (1, 3).
    assert metrics.get("memorisation/generated/by_class/a/dcr_ratio").value == pytest.approx(25 / 2, rel=1e-4)
    # Without class matching every held-out row counts once: median 8.5 of the 16 new DCRs (1..12,
    # 10, 20, 30, 40) over median 3 of the held-out ones (1, 2, 3, 6, 50).
    plain = Memorisation({**params, "match_classes": False}).evaluate(_dcr_case([450]))
    ratio = plain.get("memorisation/generated/overall/dcr_ratio")
    assert ratio.value == pytest.approx(8.5 / 3, rel=1e-4) and ratio.estimator == "median-ratio"


def test_overall_ratio_weights_held_out_classes_by_their_share_of_the_new_rows():
    # c gets a second held-out row (DCR 40): held-out DCRs 1, 3 of a weigh 4/16 / 2 each, 40 and
    # 50 of c 12/16 / 2 each (b has no new rows and is left out); the weighted median is 40.
    metrics = Memorisation({"feature_space": "raw", "min_rows": 2, "figure_pairs": 0}).evaluate(_dcr_case([450, 460]))
    ratio = metrics.get("memorisation/generated/overall/dcr_ratio")
    assert ratio.value == pytest.approx(8.5 / 40, rel=1e-4) and ratio.n == 16
    assert ratio.estimator == "median-ratio-class-weighted"
    assert metrics.get("memorisation/generated/by_class/c/dcr_ratio").value == pytest.approx(6.5 / 45, rel=1e-4)


def test_too_few_held_out_rows_for_the_threshold_names_what_gives_more():
    # (found by an audit: "give a test or val split" when a test and a val split were given)
    train, test, fresh = split3("breast-cancer")
    copied, _ = planted(train, fresh, copies=30)
    ectx = context(train, [copied], test[:19])
    ectx.val = test[19:19 + 25]
    reason = Memorisation({"figure_pairs": 0}).evaluate(ectx).skipped["memorisation"]["threshold"]
    assert reason.endswith("there are 19 held-out test rows (need 20; a larger test split via run-file key "
                           "split.test, param holdout: val with its 25 rows, a lower param min_rows, or the param "
                           "threshold)"), reason
    ectx.val = test[19:29]  # a val split too small to help is not offered
    reason = Memorisation({"figure_pairs": 0}).evaluate(ectx).skipped["memorisation"]["threshold"]
    assert "there are 19 held-out test rows (need 20; a larger test split via run-file key split.test, a lower " \
           "param min_rows, or the param threshold)" in reason and "holdout" not in reason
    reason = Memorisation({"figure_pairs": 0, "holdout": "val"}).evaluate(ectx).skipped["memorisation"]["threshold"]
    assert "there are 10 held-out val rows (need 20; a larger val split via run-file key split.val, a lower" in reason
