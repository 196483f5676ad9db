"""Collapse warnings name the classes a generate step generates: the generator is fitted on every
class, the warnings are narrowed to the classes sampled, and a generated class PRDC cannot
measure (too few real rows) is named as not checked rather than left out."""

from __future__ import annotations

import json
import re

import torch
import yaml

from setforge import StepContext
from setforge.config import RunConfig
from setforge.pipeline import run
from setforge.plugins.generate.dcgan import DCGAN
from setforge.registry import Registry
from setforge.testing import sample_dataset

# collapse_coverage 1.0: two steps of training leave no class covering all of its real rows
PARAMS = {"steps": 2, "checkpoint_every": 2, "batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4,
          "grid_every": 0, "monitor": True, "monitor_samples": 120, "collapse_coverage": 1.0}


def _named(warnings):
    return [re.match(r"(?:step \d+ \(generate \S+\): )?class '([^']+)'", w).group(1) for w in warnings]


def test_the_warnings_follow_the_classes_sampled(tmp_path):
    ds = sample_dataset("image")  # classes '0', '1', '2' with 18, 12, 6 rows; keep 4 of class '2'
    ds = ds[torch.cat([(ds.y != 2).nonzero().flatten(), (ds.y == 2).nonzero().flatten()[:4]])]
    generator = DCGAN(PARAMS)
    ctx = StepContext.from_seed(0, workdir=tmp_path, val=ds)
    generator.fit(ds, ctx)
    report = generator.training_report
    assert report["unchecked"] == {"2": "it has 4 real training rows and PRDC coverage (k=5) needs more than 5"}
    assert sorted(_named(report["warnings"])) == ["0", "1", "2"]  # fitted, not sampled yet: every class
    generator.sample(torch.ones(5, dtype=torch.int64), ctx)
    assert report["sampled_classes"] == ["1"] and _named(report["warnings"]) == ["1"]
    assert "looks collapsed at iteration 2" in report["warnings"][0]
    generator.sample(torch.full((5,), 2), ctx)
    assert report["sampled_classes"] == ["1", "2"] and _named(report["warnings"]) == ["1", "2"]
    assert report["warnings"][1] == ("class '2' was not checked for collapse: it has 4 real training rows and PRDC "
                                     "coverage (k=5) needs more than 5")


def test_a_step_restricted_to_some_classes_warns_about_those_only(tmp_path):
    text = f"""
seed: 0
device: cpu
source: {{name: sklearn-digits, params: {{imbalance: 4}}}}
split: {{val: 0.2}}
pipeline:
  - generate: dcgan
    params: {json.dumps(PARAMS)}
    per_class: 200
    classes: ['3', '7']
    guard: "off"
output: {{dir: {tmp_path / "run"}}}
"""
    run(RunConfig.model_validate(yaml.safe_load(text)), Registry(use_env=False).load(), progress=False)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    training = report["steps"][0]["training"]
    assert len(training["curve"][0]["by_class"]) == 10  # the monitor measured every class it was fitted on
    assert training["sampled_classes"] == ["3", "7"] and _named(training["warnings"]) == ["3", "7"]
    assert _named([w for w in report["warnings"] if "collapse" in w]) == ["3", "7"]
