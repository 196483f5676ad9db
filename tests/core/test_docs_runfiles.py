"""The complete run files in the evaluator, preprocessing and resampler guides validate (so they cannot rot)."""

import re
from pathlib import Path

import pytest
import yaml

from setforge.tools.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = ("evaluators.md", "preprocessing.md", "resamplers.md")
BUILTIN_EVALUATORS = {"utility", "ablation", "balance", "fid", "kid", "prdc", "memorisation", "cas", "leakage", "tstr"}


def run_files(guide: str) -> list[str]:
    """The ```yaml blocks of a guide that are whole run files (a top-level ``source:``)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / guide).read_text(encoding="utf-8"), flags=re.S)
    return [block for block in blocks if re.search(r"^source:", block, flags=re.M)]


CASES = [pytest.param(guide, i, id=f"{guide}[{i}]") for guide in GUIDES for i in range(len(run_files(guide)))]


def test_each_guide_has_complete_run_files():
    assert len(run_files("evaluators.md")) >= 1
    assert len(run_files("preprocessing.md")) >= 3
    assert len(run_files("resamplers.md")) >= 1


@pytest.mark.parametrize(("guide", "index"), CASES)
def test_run_file_in_guide_validates(guide, index, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(run_files(guide)[index], encoding="utf-8")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_the_evaluator_guide_example_uses_every_builtin_evaluator():
    config = yaml.safe_load(run_files("evaluators.md")[0])
    names = {item if isinstance(item, str) else item["name"] for item in config["evaluate"]}
    assert names == BUILTIN_EVALUATORS


def test_the_resampler_guide_example_runs_smote_on_the_torch_backend():
    config = yaml.safe_load(run_files("resamplers.md")[0])
    assert config["pipeline"][0]["resample"] == "smote"
    assert config["pipeline"][0]["params"]["backend"] == "torch"
    names = {item if isinstance(item, str) else item["name"] for item in config["evaluate"]}
    assert names == {"balance", "utility"}
