"""The paired bootstrap behind utility's and ablation's verdicts: the batched scores against the
per-row ones, the rounds against a plain loop, and the interval's coverage under no change."""

from __future__ import annotations

import pytest
import torch

from setforge.plugins._shared.classifiers import classification_scores, summary_scores
from setforge.plugins.evaluate._downstream import SCORES, paired_deltas
from setforge.plugins.evaluate._stats import bootstrap_counts


def _predictions(y: torch.Tensor, seeds: int, right: float, classes: int, generator: torch.Generator) -> torch.Tensor:
    """``(seeds, N)`` labels, each right with probability `right`, else a uniform class."""
    keep = torch.rand(seeds, len(y), generator=generator) < right
    return torch.where(keep, y, torch.randint(classes, (seeds, len(y)), generator=generator))


@pytest.mark.parametrize("seed", range(4))
def test_batched_scores_of_weighted_confusions_are_the_scores_of_the_repeated_rows(seed):
    g = torch.Generator().manual_seed(seed)
    classes, n = 5, 60
    y = torch.randint(classes - 1, (n,), generator=g)  # the last class is never true: macro-F1 counts it when predicted
    predicted = torch.randint(classes, (n,), generator=g)
    counts = bootstrap_counts(n, 7, g)  # many rows drawn 0 times, so classes drop out of some rounds
    confusion = torch.zeros(7, classes * classes, dtype=torch.float64).index_add_(1, y * classes + predicted, counts)
    batched = summary_scores(confusion.view(7, classes, classes))
    for r in range(7):
        rows = torch.repeat_interleave(torch.arange(n), counts[r].long())
        expected = classification_scores(y[rows], predicted[rows], classes)
        for score in SCORES:
            assert float(batched[score][r]) == pytest.approx(expected[score], abs=1e-12), (score, r)


def _statistic(scores, key, minority=()):
    """`key` of `paired_deltas` from `classification_scores`' result."""
    if key.startswith("recall/"):
        return scores["recall"][int(key.split("/")[1])]
    if key == "minority_recall":
        return sum(scores["recall"][c] for c in minority) / len(minority)
    return scores[key]


def _plain_bootstrap(y, before, after, classes, rounds, seed, rounds_a_piece=None, keys=SCORES, minority=()):
    """The reference: the same draws as `paired_deltas` (the seeds, then the rows within each class,
    piece by piece), each round scored row by row with `classification_scores`."""
    n, seeds = len(y), len(before)
    replay = torch.Generator().manual_seed(seed)
    seed_counts = bootstrap_counts(seeds, rounds, replay)
    step = rounds_a_piece or rounds
    rows = torch.cat([bootstrap_counts(n, min(step, rounds - start), replay, strata=y)
                      for start in range(0, rounds, step)])
    values = {}
    for key in keys:
        per_round = []
        for r in range(rounds):
            drawn = torch.repeat_interleave(torch.arange(n), rows[r].long())
            differences = [_statistic(classification_scores(y[drawn], after[s][drawn], classes), key, minority)
                           - _statistic(classification_scores(y[drawn], before[s][drawn], classes), key, minority)
                           for s in range(seeds)]
            per_round.append(sum(w * d for w, d in zip(seed_counts[r].tolist(), differences)) / seeds)
        values[key] = torch.tensor(per_round, dtype=torch.float64)
    return values, rows


def _check_against_the_reference(result, values, y, before, after, classes, minority=()):
    for score in values:
        point = sum(_statistic(classification_scores(y, after[s], classes), score, minority)
                    - _statistic(classification_scores(y, before[s], classes), score, minority)
                    for s in range(len(before))) / len(before)
        estimate = result[score]
        assert estimate.value == pytest.approx(point, abs=1e-12) and estimate.estimator == "paired-bootstrap"
        assert estimate.interval == pytest.approx(tuple(torch.quantile(values[score], torch.tensor(
            [0.025, 0.975], dtype=torch.float64)).tolist()), abs=1e-12)
        assert estimate.std == pytest.approx(float(values[score].std()), abs=1e-12)


def test_the_rounds_are_a_plain_paired_bootstrap_of_rows_and_seeds():
    g = torch.Generator().manual_seed(0)
    n, classes, seeds, rounds = 300, 4, 3, 60
    y = torch.randint(classes, (n,), generator=g)
    before, after = _predictions(y, seeds, 0.7, classes, g), _predictions(y, seeds, 0.75, classes, g)
    result = paired_deltas(y, before, after, classes, rounds, torch.Generator().manual_seed(5))
    values, rows = _plain_bootstrap(y, before, after, classes, rounds, 5)
    _check_against_the_reference(result, values, y, before, after, classes)
    # every class keeps its size in every round: the split's strata
    assert torch.equal(torch.zeros(rounds, classes, dtype=torch.float64).index_add_(1, y, rows),
                       torch.bincount(y, minlength=classes).double().expand(rounds, classes))


def test_each_class_recall_and_the_minority_recall_are_paired_alike():
    g = torch.Generator().manual_seed(4)
    n, classes, seeds, rounds = 240, 5, 2, 40
    y = torch.randint(classes - 1, (n,), generator=g)  # class 4 has no test rows: no recall of its own
    before, after = _predictions(y, seeds, 0.6, classes, g), _predictions(y, seeds, 0.7, classes, g)
    result = paired_deltas(y, before, after, classes, rounds, torch.Generator().manual_seed(1), minority=[2, 3, 4])
    keys = (*SCORES, "recall/0", "recall/1", "recall/2", "recall/3", "minority_recall")
    assert sorted(result) == sorted(keys)
    values, _ = _plain_bootstrap(y, before, after, classes, rounds, 1, keys=keys, minority=(2, 3))
    _check_against_the_reference(result, values, y, before, after, classes, minority=(2, 3))


def test_a_change_of_one_row_in_hundreds_is_within_noise_even_when_every_seed_agrees():
    # A model that predicts alike whatever its seed: the seeds' std of the change is 0, so by the spread
    # over seeds alone one row's difference in 500 read "better". The test rows say it is noise.
    g = torch.Generator().manual_seed(1)
    y = torch.randint(3, (500,), generator=g)
    before = _predictions(y, 1, 0.8, 3, g).expand(3, -1).clone()
    after = before.clone()
    wrong = int((before[0] != y).nonzero()[0])
    after[:, wrong] = y[wrong]
    change = paired_deltas(y, before, after, 3, 1000, torch.Generator().manual_seed(0))["accuracy"]
    assert change.value == pytest.approx(1 / 500)
    low, high = change.interval
    assert low <= 0 < high
    # forty rows put right is beyond the test rows' noise
    after[:, (before[0] != y).nonzero()[:40].flatten()] = y[(before[0] != y).nonzero()[:40].flatten()]
    assert paired_deltas(y, before, after, 3, 1000, torch.Generator().manual_seed(0))["accuracy"].interval[0] > 0


@pytest.mark.parametrize("seeds_agree, at_least, at_most", [(True, 0.83, 0.96), (False, 0.86, 0.99)])
def test_under_no_change_the_interval_holds_zero_about_as_often_as_its_level_says(seeds_agree, at_least, at_most):
    # before and after drawn alike, row by row: the expected change is 0 for every score. With seeds that
    # agree (a deterministic model) only the test rows vary: near the nominal 90% (a binomial(200, 0.9)
    # lies in 0.83-0.96 with probability above 0.99). With seeds that each add row-level noise, both
    # levels of the bootstrap count that noise: the interval errs wide, never narrow.
    g = torch.Generator().manual_seed(2)
    held = {score: 0 for score in SCORES}
    trials = 200
    for trial in range(trials):
        y = torch.randint(4, (200,), generator=g)
        before, after = ((_predictions(y, 1, 0.7, 4, g).expand(2, -1) for _ in range(2)) if seeds_agree
                         else (_predictions(y, 2, 0.7, 4, g) for _ in range(2)))
        result = paired_deltas(y, before, after, 4, 400, torch.Generator().manual_seed(trial), level=0.9)
        for score in SCORES:
            low, high = result[score].interval
            held[score] += low <= 0 <= high
    for score in SCORES:
        assert at_least <= held[score] / trials <= at_most, (score, held[score])


def test_large_test_splits_are_scored_a_few_rounds_at_a_time(monkeypatch):
    from setforge.plugins.evaluate import _downstream

    g = torch.Generator().manual_seed(3)
    y = torch.randint(6, (400,), generator=g)
    before, after = _predictions(y, 2, 0.6, 6, g), _predictions(y, 2, 0.65, 6, g)
    monkeypatch.setattr(_downstream, "_BOOTSTRAP_CHUNK_BYTES", 8 * 400 * 7)  # 7 rounds of 400 row weights a piece
    result = paired_deltas(y, before, after, 6, 50, torch.Generator().manual_seed(0))
    values, _ = _plain_bootstrap(y, before, after, 6, 50, 0, rounds_a_piece=7)
    _check_against_the_reference(result, values, y, before, after, 6)


def test_mismatched_predictions_are_refused():
    y = torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match="predictions before"):
        paired_deltas(y, torch.zeros(2, 10), torch.zeros(3, 10), 2, 10, torch.Generator())


def test_torchs_default_device_is_not_used():
    # (a training loop's torch.set_default_device: every tensor of the bootstrap stays on the CPU)
    g = torch.Generator().manual_seed(5)
    y = torch.randint(3, (90,), generator=g)
    before, after = _predictions(y, 2, 0.6, 3, g), _predictions(y, 2, 0.7, 3, g)
    expected = paired_deltas(y, before, after, 3, 30, torch.Generator().manual_seed(0), minority=[2])
    with torch.device("meta"):
        result = paired_deltas(y, before, after, 3, 30, torch.Generator().manual_seed(0), minority=[2])
    assert result == expected


def test_a_class_with_one_test_row_that_changed_gives_no_certain_interval():
    # Stratified rounds keep a class's one test row in every round: that row put right read as a certain
    # gain, +1 to +1 on its recall and +0.3333 to +0.3333 on balanced accuracy, "better" from one row.
    y = torch.tensor([0] * 20 + [1] * 20 + [2])
    before = torch.stack([y.clone(), y.clone()])
    before[:, -1] = 0
    after = torch.stack([y.clone(), y.clone()])
    result = paired_deltas(y, before, after, 3, 500, torch.Generator().manual_seed(0), minority=[2])
    for key in (*SCORES, "recall/2", "minority_recall"):
        assert result[key].interval is None and result[key].std is None, key
        assert result[key].estimator == "paired-bootstrap"
    assert result["recall/2"].value == 1.0 and result["balanced_accuracy"].value == pytest.approx(1 / 3)
    assert result["recall/0"].interval == (0.0, 0.0)  # (the classes whose rows are redrawn keep theirs)
    # a one-row class predicted alike on both sides adds no change of its own: the intervals stand
    after[:, -1] = 0
    after[0, :5] = 1
    result = paired_deltas(y, before, after, 3, 500, torch.Generator().manual_seed(0), minority=[2])
    assert all(result[key].interval is not None for key in (*SCORES, "recall/0", "recall/2", "minority_recall"))
