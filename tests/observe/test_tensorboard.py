"""The ``tensorboard`` observer from a run file and from ``--observe``: the event file is
read back with TensorBoard's own reader (losses per iteration, sample grids, metrics)."""

from __future__ import annotations

import json

import pytest
import yaml

from setforge.testing import check_component
from setforge.tools.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from setforge.plugins.observe.tensorboard import TensorBoard  # noqa: E402


def _run_file(tmp_path, observe=None):
    path = tmp_path / "run.yaml"
    config = {"seed": 0, "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 5}},
              "pipeline": [{"generate": "dcgan", "guard": "off", "target": "balance",
                            "params": {"steps": 20, "batch_size": 32, "log_every": 5, "grid_every": 10}}],
              "evaluate": ["balance"], "output": {"dir": str(tmp_path / "out")}}
    if observe is not None:
        config["observe"] = observe
    path.write_text(yaml.safe_dump(config))
    return path


def _read(folder):
    files = list(folder.rglob("events.out.tfevents.*"))
    assert len(files) == 1
    events = EventAccumulator(str(files[0]), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_observe_tensorboard_writes_losses_grids_and_metrics(tmp_path):
    assert main(["run", str(_run_file(tmp_path, ["tensorboard"])), "--quiet"]) == 0
    events = _read(tmp_path / "out" / "observe" / "tensorboard")
    tags = events.Tags()
    assert {"0-dcgan/loss/discriminator", "0-dcgan/loss/generator"} <= set(tags["scalars"])
    losses = events.Scalars("0-dcgan/loss/generator")
    assert [e.step for e in losses] == [5, 10, 15, 20]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    curve = report["steps"][0]["training_log"]["losses"]["generator"]
    assert [e.value for e in losses] == pytest.approx(curve, rel=1e-6)  # the same numbers as the report's curve
    assert "0-dcgan/samples" in tags["images"] and len(events.Images("0-dcgan/samples")) >= 2
    entropy = events.Scalars("metrics/balance/optimised/entropy")
    assert entropy[0].value == pytest.approx(report["metrics"]["measures"]["balance"]["optimised/entropy"]["value"])
    assert {e.value for e in events.Scalars("rows/0-dcgan/9")} == {report["counts"]["optimised"]["by_class"]["9"]}
    assert any(c["kind"] == "observe" and c["name"] == "tensorboard" for c in report["components"])


def test_the_observe_flag_adds_the_observer_with_its_folder(tmp_path):
    spec = f"{{name: tensorboard, params: {{log_dir: {tmp_path / 'tb'}}}}}"
    assert main(["run", str(_run_file(tmp_path)), "--quiet", "--observe", spec]) == 0
    assert "0-dcgan/loss/discriminator" in _read(tmp_path / "tb").Tags()["scalars"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["observe"] == [{"name": "tensorboard", "params": {"log_dir": str(tmp_path / "tb")}}]


def test_an_unknown_observer_is_a_run_file_problem(tmp_path, capsys):
    assert main(["validate", str(_run_file(tmp_path, ["tensorbored"]))]) == 2
    assert "observe[0]" in capsys.readouterr().err


def test_the_observer_passes_the_conformance_kit(tmp_path):
    check_component(TensorBoard, {"log_dir": str(tmp_path / "kit")})


RECORDER = '''
import json

import setforge
from setforge import hookimpl


class Recorder(setforge.Observer):
    """Writes the kinds of the events it sees, in order."""

    name = "obstest-recorder"

    def _open(self, ctx):
        self.kinds = []
        self.folder = ctx.ensure_workdir()

    def _observe(self, event):
        self.kinds.append(event.kind)

    def _close(self):
        (self.folder / "kinds.json").write_text(json.dumps(self.kinds))


@hookimpl
def setforge_register_observers():
    return [Recorder]
'''


def test_a_third_party_observer_sees_the_run_and_closes_inside_the_folder(tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    path = _run_file(tmp_path, ["obstest-recorder"])
    config = yaml.safe_load(path.read_text())
    config["plugins"] = ["recorder.py"]
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    kinds = json.loads((tmp_path / "out" / "observe" / "obstest-recorder" / "kinds.json").read_text())
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert "train_progress" in kinds and "samples" in kinds and kinds.count("step_finished") == 1


FAILING = '''
import setforge
from setforge import hookimpl


class Failing(setforge.Observer):
    """Raises on a step's end, the run's end and closing."""

    name = "obstest-failing"

    def _observe(self, event):
        if event.kind in ("step_finished", "run_finished", "train_progress"):
            raise RuntimeError(f"boom on {event.kind}")

    def _close(self):
        raise RuntimeError("boom on close")


@hookimpl
def setforge_register_observers():
    return [Failing]
'''


def test_an_observer_that_fails_never_stops_the_run_and_every_failure_is_in_the_report(tmp_path):
    # (the failures on run_finished and close came after report.json was written, so it lacked them)
    (tmp_path / "failing.py").write_text(FAILING)
    path = _run_file(tmp_path, ["obstest-failing"])
    config = yaml.safe_load(path.read_text())
    config["plugins"] = ["failing.py"]
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    warnings = json.loads((tmp_path / "out" / "report.json").read_text())["warnings"]
    failed = [w for w in warnings if "observer failed" in w]
    assert any("boom on step_finished" in w for w in failed) and any("boom on run_finished" in w for w in failed)
    assert any("failed to close" in w and "boom on close" in w for w in failed)
    # the same failure on each of the 4 train_progress events is one warning, not 4 (found by an audit)
    assert len([w for w in failed if "boom on train_progress" in w]) == 1


def test_a_replayed_step_does_not_draw_over_the_steps_own_curve(tmp_path):
    # (found by an audit: ablation retrains a generate step after its step_finished, with the same
    # step index and iterations, and the observer wrote both trainings under one tag: 12 points
    # for 6 iterations, two curves zigzagging in one line)
    import torch

    from setforge.context import Event, StepContext

    observer = TensorBoard({"log_dir": str(tmp_path / "tb")}).open(StepContext.from_seed(0, device="cpu"))
    try:
        observer.observe(Event("step_started", step=1, name="dcgan", data={"kind": "generate"}))
        for iteration, loss in ((10, 1.0), (20, 2.0)):
            observer.observe(Event("train_progress", step=1, name="dcgan",
                                   data={"iteration": iteration, "total": 20, "losses": {"generator": loss}}))
        observer.observe(Event("samples", step=1, name="dcgan",
                               data={"iteration": 20, "images": torch.rand(4, 1, 8, 8), "labels": torch.arange(4)}))
        observer.observe(Event("step_finished", step=1, name="dcgan",
                               data={"kind": "generate", "rows_in": 4, "rows_out": 8,
                                     "counts": {"by_class": {"0": 4, "1": 4}}}))
        for iteration, loss in ((10, 5.0), (20, 6.0)):  # ablation's replay of step 1
            observer.observe(Event("train_progress", step=1, name="dcgan",
                                   data={"iteration": iteration, "total": 20, "losses": {"generator": loss}}))
        observer.observe(Event("samples", step=1, name="dcgan",
                               data={"iteration": 20, "images": torch.rand(4, 1, 8, 8), "labels": torch.arange(4)}))
    finally:
        observer.close()
    events = _read(tmp_path / "tb")
    assert [(e.step, e.value) for e in events.Scalars("1-dcgan/loss/generator")] == [(10, 1.0), (20, 2.0)]
    assert len(events.Images("1-dcgan/samples")) == 1
    assert [e.value for e in events.Scalars("rows/1-dcgan/1")] == [4.0]
