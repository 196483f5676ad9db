"""The ctgan generator: the kit (save/load round trip included), labels, categories, the example run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from setforge import StepContext
from setforge.registry import Registry
from setforge.testing import check_component, sample_dataset
from setforge_ctgan.generator import CtganGenerator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ctgan.yaml"
TINY = dict(CtganGenerator.testing_params)


def test_passes_the_conformance_kit():
    check_component(CtganGenerator)


def test_mixed_columns_labels_and_a_checkpoint(tmp_path):
    ds = sample_dataset("tabular", categorical="some")
    generator = CtganGenerator(TINY).fit(ds, StepContext.from_seed(0))
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    rows = generator.sample(labels, StepContext.from_seed(1))
    assert rows.shape == ds.shape
    codes = rows.x[:, :3]
    assert bool(((codes == 0) | (codes == 1) | (codes == 2)).all())  # categorical columns stay codes
    path = generator.save(tmp_path / "ctgan.pt")
    loaded = CtganGenerator({**TINY, "checkpoint": str(path)}).fit(ds, StepContext.from_seed(5))
    assert torch.equal(loaded.sample(labels, StepContext.from_seed(1)).x, rows.x)


def test_listed_with_distribution_and_version():
    registry = Registry(use_env=False).load()
    info = registry.get("generate", "ctgan")
    assert (info.distribution, info.version) == ("setforge-ctgan", "0.1.0")


def test_the_example_run_file_runs(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "ctgan.yaml")
    result = subprocess.run([sys.executable, "-m", "setforge", "run", "ctgan.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "ctgan" / "report.json").read_text())
    assert "raw/accuracy" in report["metrics"]["measures"]["utility"]
    assert "generated" in json.dumps(report)


def test_sampled_rows_are_distinct_when_redraws_run_out():
    # (rows that kept the wrong label after the last redraw were taken from the head of that draw, which
    # holds the rows already kept: 33 distinct rows of 40 with max_redraws 0)
    ds = sample_dataset("tabular", categorical="some")
    for redraws in (0, 2):
        generator = CtganGenerator({**TINY, "max_redraws": redraws}).fit(ds, StepContext.from_seed(0))
        generator.model.set_random_state(123)
        rows = generator._rows_of_class(0, 40)
        assert len(rows) == 40 and not rows.duplicated().any()  # (each draw numbers its rows from 0)
        out = generator.sample(torch.zeros(40, dtype=torch.int64), StepContext.from_seed(1)).x
        assert len(torch.unique(out, dim=0)) == 40


def test_redraws_raise_the_share_of_rows_with_the_requested_label():
    # (an audit's mutation that took the first conditional draw as it was passed every test: the
    # tiny model gives the requested label to 26-38% of a first draw)
    from setforge_ctgan.generator import LABEL_COLUMN

    ds = sample_dataset("tabular", categorical="some")
    shares = []
    for redraws in (0, 10):
        generator = CtganGenerator({**TINY, "max_redraws": redraws}).fit(ds, StepContext.from_seed(0))
        generator.model.set_random_state(7)
        drawn = generator.model.sample(200, condition_column=LABEL_COLUMN, condition_value=1)
        generator.model.set_random_state(7)
        kept = generator._rows_of_class(1, 200)
        shares.append((float((drawn[LABEL_COLUMN] == 1).mean()), float((kept[LABEL_COLUMN] == 1).mean())))
    assert shares[0][1] == shares[0][0] < 0.9  # no redraw: the first draw as it came
    assert shares[1][1] > 0.9 and shares[1][1] > shares[1][0]  # redraws replace the rows of other labels


def test_samples_follow_the_steps_generator():
    # (an audit's mutation that ignored the step's generator, so that a step's batches of one
    # class came out equal, passed every test)
    ds = sample_dataset("tabular", categorical="some")
    generator = CtganGenerator(TINY).fit(ds, StepContext.from_seed(0))
    labels = torch.zeros(30, dtype=torch.int64)
    first = generator.sample(labels, StepContext.from_seed(1)).x
    assert torch.equal(generator.sample(labels, StepContext.from_seed(1)).x, first)
    assert not torch.equal(generator.sample(labels, StepContext.from_seed(2)).x, first)
