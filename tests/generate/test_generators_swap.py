"""The three generators swap by the one word after ``generate:`` in a run file: the host's plan
(the rows per class) is the same for each, and the neural ones report their training (the FD
curve, the chosen iteration, collapse warnings) in report.json."""

from __future__ import annotations

import json

import pytest
import yaml

from setforge import Origin
from setforge.config import RunConfig
from setforge.pipeline import run
from setforge.registry import Registry

RUN_FILE = """
seed: 0
device: cpu
source: {{name: sklearn-digits, params: {{imbalance: 4}}}}
split: {{val: 0.1}}
pipeline:
  - generate: {name}
    params: {params}
    target: balance
    guard: "off"
output: {{dir: {out}}}
"""
PARAMS = {
    "dcgan": {"steps": 6, "checkpoint_every": 3, "width": 8, "latent_dim": 8, "embedding_dim": 4, "batch_size": 32,
              "grid_every": 0, "select": "best-fd", "monitor_samples": 200},
    "wgan-gp": {"steps": 6, "checkpoint_every": 3, "width": 8, "latent_dim": 8, "embedding_dim": 4,
                "batch_size": 32, "grid_every": 0, "select": "best-fd", "monitor_samples": 200, "critic_steps": 2},
    "gaussian-mixture": {"max_components": 2, "pca": 16},
}


@pytest.fixture(scope="module")
def registry():
    return Registry(use_env=False).load()


@pytest.mark.parametrize("name", list(PARAMS))
def test_one_word_swaps_the_generator(tmp_path, registry, name):
    text = RUN_FILE.format(name=name, params=json.dumps(PARAMS[name]), out=tmp_path / "run")
    result = run(RunConfig.model_validate(yaml.safe_load(text)), registry, progress=False)
    train = result.train
    real = train.class_counts(Origin.REAL)
    generated = train[train.origin == int(Origin.GENERATED)]
    assert generated.class_counts() == [max(real) - r for r in real]
    assert float(generated.x.min()) >= 0 and float(generated.x.max()) <= 1
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    step = report["steps"][0]
    assert step["name"] == name and (tmp_path / "run" / "steps" / f"00-generate-{name}" / "generator.pt").is_file()
    if name == "gaussian-mixture":
        assert "training" not in step
        return
    training = step["training"]
    assert training["budget"] == {"steps": 6, "rule": "steps: 6 (given)"}
    assert "steps: 6 (given)" in (tmp_path / "run" / "report.html").read_text()
    assert [p["iteration"] for p in training["curve"]] == [3, 6]
    assert training["chosen_iteration"] == min(training["curve"], key=lambda p: p["fd"])["iteration"]
    assert set(training["curve"][0]["by_class"]) == set(train.classes)
    # six steps of training leave every class collapsed: each is a warning in the run's report too
    assert training["warnings"] and all(w in " ".join(report["warnings"]) for w in training["warnings"])
