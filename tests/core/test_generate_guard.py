"""The host's guard on every generate step: a generator whose rows do not look like their class
fails the run (exit 3, named), ``guard: warn`` goes on and says so, a good generator passes, and a
guard with no provider is refused at validate. Tabular data (wine) keeps the judging model small."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from setforge.tools.cli import main

PLUGIN = '''
import torch

import setforge
from setforge import hookimpl


class Noise(setforge.Generator):
    """Rows of uniform noise in the data's range: nothing like any class."""

    name = "guardtest-noise"
    modalities = ("tabular",)

    def _fit(self, ds, ctx):
        self._low, self._high = ds.x.min(0).values, ds.x.max(0).values

    def _sample(self, labels, ctx):
        u = torch.rand(len(labels), self._low.numel(), generator=ctx.rng.torch, device=ctx.device)
        return self._low + u * (self._high - self._low)


class Jitter(setforge.Generator):
    """Real rows of the requested class with a little noise: as recognisable as real rows."""

    name = "guardtest-jitter"
    modalities = ("tabular",)

    def _fit(self, ds, ctx):
        self._rows = {c: ds.x[ds.y == c] for c in range(ds.num_classes)}
        self._scale = ds.x.std(0) * 0.05

    def _sample(self, labels, ctx):
        out = []
        for c in labels.tolist():
            rows = self._rows[c]
            i = int(torch.randint(len(rows), (1,), generator=ctx.rng.torch, device=ctx.device))
            out.append(rows[i])
        x = torch.stack(out)
        return x + torch.randn(x.shape, generator=ctx.rng.torch, device=ctx.device) * self._scale


@hookimpl
def setforge_register_generators():
    return [Noise, Jitter]
'''


def _write(tmp_path, generator, guard=None, name="run"):
    (tmp_path / "guard_plugin.py").write_text(PLUGIN)
    step = {"generate": generator, "per_class": 80}
    if guard is not None:
        step["guard"] = guard
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "device": "cpu", "source": {"name": "sklearn-wine"}, "split": {"test": 0.3, "val": 0.2},
        "plugins": ["guard_plugin.py"], "pipeline": [step], "evaluate": [], "output": {"dir": str(tmp_path / name)}}))
    return path


def test_a_noise_generator_trips_the_guard(tmp_path, capsys):
    assert main(["run", str(_write(tmp_path, "guardtest-noise")), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "pipeline[0] generate 'guardtest-noise'" in err and "guard.min_cas_ratio 0.7" in err
    assert "real val rows" in err and "guard: warn keeps going" in err
    assert not (tmp_path / "run").exists()  # a failed run leaves no finished folder


def test_guard_warn_goes_on_and_says_so(tmp_path, capsys):
    assert main(["run", str(_write(tmp_path, "guardtest-noise", guard="warn")), "--quiet"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    guard = report["steps"][0]["guard"]
    assert guard["passed"] is False and guard["ratio"] < 0.7
    assert guard["ratio"] == pytest.approx(guard["generated"] / guard["reference"])
    assert any("guardtest-noise" in w and "min_cas_ratio" in w for w in report["warnings"])
    assert not any("guard: warn keeps going" in w for w in report["warnings"])  # (it is set already)
    assert "warning: pipeline[0] generate 'guardtest-noise'" in out


def test_a_good_generator_passes_and_the_score_is_recorded(tmp_path):
    assert main(["run", str(_write(tmp_path, "guardtest-jitter", guard={"min_cas_ratio": 0.9})), "--quiet"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    guard = report["steps"][0]["guard"]
    assert guard["passed"] is True and guard["ratio"] >= 0.9 and guard["model"] == "mlp"
    assert set(guard["by_class"]) <= set(report["classes"]) and guard["n_generated"] > 0
    assert not report["warnings"]


def test_guard_off_checks_nothing(tmp_path):
    assert main(["run", str(_write(tmp_path, "guardtest-noise", guard="off")), "--quiet"]) == 0
    assert "guard" not in json.loads((tmp_path / "run" / "report.json").read_text())["steps"][0]


def test_a_guard_without_its_provider_is_refused_at_validate(tmp_path, capsys):
    path = _write(tmp_path, "guardtest-noise")
    assert main(["validate", str(path), "-p", "no:builtin-evaluate"]) == 2
    assert "pipeline[0].guard" in capsys.readouterr().err
    assert main(["validate", str(_write(tmp_path, "guardtest-noise", guard="off", name="off")),
                 "-p", "no:builtin-evaluate"]) == 0


SCORER = '''
from setforge import hookimpl


@hookimpl(tryfirst=True)
def setforge_score_generated(real, generated, val, rng, device):
    return {"generated": 0.2, "reference": 0.8, "model": "fixed", "n_generated": len(generated), "n_reference": len(val)}
'''


def test_a_third_party_scorer_answers_first(tmp_path, capsys):
    (tmp_path / "scorer.py").write_text(SCORER)
    path = _write(tmp_path, "guardtest-jitter", guard={"on_fail": "warn", "min_cas_ratio": 0.5})
    text = path.read_text().replace("plugins: [guard_plugin.py]", "plugins: [guard_plugin.py, scorer.py]")
    if "scorer.py" not in text:
        text = text.replace("- guard_plugin.py", "- guard_plugin.py\n- scorer.py")
    path.write_text(text)
    assert main(["run", str(path), "--quiet"]) == 0
    guard = json.loads((tmp_path / "run" / "report.json").read_text())["steps"][0]["guard"]
    assert guard["model"] == "fixed" and guard["ratio"] == pytest.approx(0.25) and guard["passed"] is False


def test_a_judge_that_learnt_nothing_is_named_not_the_generator(tmp_path, capsys):
    (tmp_path / "scorer.py").write_text(SCORER.replace('"reference": 0.8', '"reference": 0.0'))
    path = _write(tmp_path, "guardtest-jitter")
    text = path.read_text().replace("plugins: [guard_plugin.py]", "plugins: [guard_plugin.py, scorer.py]")
    if "scorer.py" not in text:
        text = text.replace("- guard_plugin.py", "- guard_plugin.py\n- scorer.py")
    path.write_text(text)
    assert main(["run", str(path), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "cannot judge the generated rows" in err and "recalls 0.000 of the real val rows" in err
    assert not (tmp_path / "run").exists()
    # under guard: warn the run goes on and records no ratio (a NaN ratio crashed report.json: exit 1)
    config = yaml.safe_load(path.read_text())
    config["pipeline"][0]["guard"] = "warn"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    guard = json.loads((tmp_path / "run" / "report.json").read_text())["steps"][0]["guard"]
    assert guard["ratio"] is None and guard["passed"] is False and guard["reference"] == 0.0


def _blobs(counts, at=None):
    """Tabular rows of classes a, b, c (ids 0-2), each at its own corner (`at`: the corner each
    class's rows sit at, to make rows that look like another class), tightly spread."""
    import torch

    from setforge import Dataset

    corners = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    at = at or {}
    y = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    where = torch.tensor([at.get(int(c), int(c)) for c in y], dtype=torch.int64)
    noise = torch.randn(len(y), 2, generator=torch.Generator().manual_seed(len(y))) * 0.1
    return Dataset(x=corners[where] + noise, y=y, classes=("a", "b", "c"), modality="tabular")


def test_the_guard_scores_the_share_of_generated_rows_against_val_rows_of_the_same_classes():
    # rwine2: 48 rows of a class without val rows scored 0.0, 9 of another 1.0, and the guard reported
    # the mean of the two classes (0.500) against a val reference that left the first class out
    import torch

    from setforge import Dataset
    from setforge.plugins.evaluate._guard import NO_VAL_ROWS, score_generated
    from setforge.rng import Rng

    real = _blobs([60, 60, 60])
    # val: no row of c; half of b's rows look like a, so b's real recall is 0.5
    val = Dataset.concat([_blobs([8, 4, 0]), _blobs([0, 4, 0], at={1: 0})])
    # generated: 30 good rows of a, 10 rows of b that look like a (all wrong), 20 of c (no val rows)
    generated = _blobs([30, 10, 20], at={1: 0, 2: 0})
    score = score_generated(real, generated, val, Rng(0), "cpu", model="logistic-regression")
    # the share of the compared generated rows (a and b): 30 of 40, not the mean over classes (0.5)
    assert score["generated"] == pytest.approx(30 / 40)
    # real rows of the same classes in the same mix: a's recall 1.0 on 30 rows, b's 0.5 on 10
    assert score["reference"] == pytest.approx((30 * 1.0 + 10 * 0.5) / 40)
    assert score["n_generated"] == 40 and score["n_reference"] == 16
    assert score["left_out"] == {"c": NO_VAL_ROWS} and "no real val rows" in NO_VAL_ROWS
    c = score["by_class"]["c"]
    assert c["reference"] is None and c["n_generated"] == 20 and c["generated"] == 0.0 and c["left_out"]
    assert score["by_class"]["b"] == {"generated": 0.0, "reference": 0.5, "n_generated": 10, "n_reference": 8}
    # nothing to compare with: no number, rather than one over rows no reference covers
    alone = score_generated(real, _blobs([0, 0, 5]), val, Rng(0), "cpu", model="logistic-regression")
    assert math.isnan(alone["generated"]) and math.isnan(alone["reference"]) and alone["n_generated"] == 0


def test_classes_left_out_of_the_guard_are_named_and_a_guard_with_none_left_checks_nothing():
    # (rows of a class without real val rows were left out of the comparison in silence, and with
    # every class left out the guard failed the run on a NaN: "recalls nan of the real val rows")
    import torch as _torch

    from setforge.config import GuardConfig
    from setforge.dataset import Dataset, Origin
    from setforge.steps import guard_generated

    ds = Dataset(x=_torch.rand(6, 2), y=_torch.tensor([0, 0, 0, 1, 1, 1]), classes=("a", "b"), modality="tabular")
    made = ds.replace(origin=_torch.full((6,), int(Origin.GENERATED)))

    class Scorer:
        def __init__(self, score):
            self.score = score

        def first_result(self, hook, **kwargs):
            return self.score

    from setforge import Rng

    rng = Rng(0)
    some = {"generated": 1.0, "reference": 1.0, "by_class": {"a": {}, "b": {"left_out": "no real val rows"}},
            "left_out": {"b": "no real val rows"}}
    warnings: list[str] = []
    result = guard_generated(GuardConfig(), "pipeline[0]", "dcgan", ds, made, ds, Scorer(some), warnings, rng)
    assert result["passed"] and warnings == [
        "pipeline[0] guard: the generated rows of 'b' were not checked: no real val rows of that class to compare "
        "with (a larger split.val gives some)"]
    none = {"generated": float("nan"), "reference": float("nan"),
            "by_class": {c: {"left_out": "no real val rows"} for c in "ab"}, "left_out": dict.fromkeys("ab", "x")}
    warnings.clear()
    assert guard_generated(GuardConfig(), "pipeline[0]", "dcgan", ds, made, ds, Scorer(none), warnings, rng) is None
    assert len(warnings) == 1 and "'a', 'b' were not checked" in warnings[0]
