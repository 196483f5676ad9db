"""The balance evaluator: counts per class and origin, imbalance ratio, normalised entropy."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from setforge import Dataset, EvalContext, Origin, StepRecord
from setforge.plugins.evaluate.balance import Balance, imbalance_ratio, normalised_entropy
from setforge.testing import check_component


def _dataset(counts, origins=None) -> Dataset:
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    origin = None if origins is None else torch.tensor(origins)
    return Dataset(x=torch.zeros(len(y), 2), y=y, classes=tuple(f"k{i}" for i in range(len(counts))),
                   modality="tabular", origin=origin, parent=None if origins is None else
                   torch.where(torch.tensor(origins) == 0, -1, 0))


def test_conformance():
    check_component(Balance)


@pytest.mark.parametrize("counts", [[50, 30, 20], [10, 10], [7, 1, 1, 40]])
def test_entropy_and_ratio_against_references(counts):
    assert imbalance_ratio(counts) == max(counts) / min(counts)
    assert normalised_entropy(counts) == pytest.approx(scipy.stats.entropy(counts) / math.log(len(counts)), rel=1e-12)


def test_edge_cases():
    assert normalised_entropy([5, 5, 5]) == pytest.approx(1.0)
    assert imbalance_ratio([4, 0]) == math.inf
    assert math.isnan(normalised_entropy([3]))


def test_before_and_after_by_class_and_origin():
    raw = _dataset([6, 3, 1])
    origins = [0] * 10 + [int(Origin.RESAMPLED)] * 3 + [int(Origin.GENERATED)] * 5
    optimised = Dataset.concat([raw, _dataset([0, 3, 5]).replace(
        origin=torch.tensor(origins[10:]), parent=torch.tensor([0, 0, 0, -1, -1, -1, -1, -1]), row_id=None)])
    ectx = EvalContext.from_seed(0, raw, train=optimised,
                                 steps=[StepRecord(0, "resample", "x", optimised)])
    metrics = Balance().evaluate(ectx)
    value = lambda path: metrics.get(f"balance/{path}").value  # noqa: E731
    assert [value(f"raw/by_class/k{i}") for i in range(3)] == [6, 3, 1]
    assert [value(f"optimised/by_class/k{i}") for i in range(3)] == [6, 6, 6]
    assert value("raw/imbalance_ratio") == 6.0 and value("optimised/imbalance_ratio") == 1.0
    assert value("change/imbalance_ratio") == -5.0
    assert value("optimised/entropy") == pytest.approx(1.0)
    assert value("change/entropy") == pytest.approx(1.0 - scipy.stats.entropy([6, 3, 1]) / math.log(3))
    assert value("optimised/by_origin/resampled") == 3 and value("optimised/by_origin/generated") == 5
    assert value("optimised/by_class_origin/k2/generated") == 5 and value("optimised/by_class_origin/k2/real") == 1
    assert value("steps/0/imbalance_ratio") == 1.0
    assert metrics.get("balance/optimised/rows").n == 18


def test_an_empty_class_is_reported_not_crashed():
    raw = _dataset([4, 0])
    metrics = Balance().evaluate(EvalContext.from_seed(0, raw))
    assert metrics.get("balance/raw/imbalance_ratio").value == math.inf
    assert "change/imbalance_ratio" in metrics.skipped["balance"]


def test_class_names_that_differ_only_by_a_slash_keep_their_own_paths():
    # ('a/b' and 'a_b' shared the path segment a_b: one class's numbers overwrote the other's)
    from setforge.plugins.evaluate._comparison import path_segment

    names = ("a/b", "a_b", "100%", "100%25")
    assert len({path_segment(n) for n in names}) == 4 and "/" not in "".join(path_segment(n) for n in names)
    ds = _dataset([6, 4, 3, 2]).replace(classes=names)
    measures = Balance().evaluate(EvalContext.from_seed(0, ds)).measures["balance"]
    counts = {path: m.value for path, m in measures.items() if path.startswith("raw/by_class/")}
    assert counts == {"raw/by_class/a%2Fb": 6, "raw/by_class/a_b": 4, "raw/by_class/100%25": 3, "raw/by_class/100%2525": 2}
