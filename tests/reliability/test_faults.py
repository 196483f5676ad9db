"""Faults lose nothing: a real ``setforge run`` process SIGKILLed in a slow step, while the run
folder is half written, or between the two renames that replace an old run, leaves the previous
``<dir>`` (or none), never a half-written one; ``--resume`` continues from ``<dir>.partial/``; a
permission error or a full disk while writing is reported (exit 5, `OutputError`) and leaves no
``<dir>``. (A kill in the middle of GAN training, resumed to the same bytes, is in
test_determinism.py.)
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import setforge.formats
import setforge.record
from setforge.tools.cli import main

from .test_determinism import files_of

REPO = Path(__file__).resolve().parents[2]
HOOKS = str(Path(__file__).with_name("_fault_hooks.py"))


def write_run_file(folder: Path, name: str = "run.yaml", seed: int = 0, pipeline: list[Any] | None = None,
                   out: str = "out") -> Path:
    config = {"seed": seed, "device": "cpu", "source": "sklearn-wine", "split": {"test": 0.2, "val": 0.1},
              "pipeline": pipeline or [], "evaluate": ["balance"], "output": {"dir": out, "shard_rows": 40}}
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file of a run folder (timings and the page that shows them apart); in
    report.json each step's ``resumed`` flag (which says whether a resume reused it) is left out."""
    return files_of(folder, without_resumed=True)


def cli(*argv: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, "--quiet", "-p", HOOKS])
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, err.getvalue()


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("SETFORGE_DISABLE_PLUGINS", "SETFORGE_TEST_PAUSE", "SETFORGE_TEST_KILL_AT_ITERATION"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def previous(here) -> dict[str, str]:
    """A finished run in ``out``: what every fault below must leave as it was."""
    code, err = cli("run", str(write_run_file(here, "previous.yaml", seed=7)))
    assert code == 0, err
    return digest(here / "out")


def kill_when_there(run_file: Path, cwd: Path, marker: Path, *extra: str, sig: int = signal.SIGKILL,
                    status: int = -signal.SIGKILL, **env: str) -> str:
    """Start ``setforge run`` as a process, wait until it writes `marker`, send it `sig` (SIGKILL),
    check that it ends with `status`, and return what it wrote to stderr."""
    environment = {k: v for k, v in os.environ.items() if k != "SETFORGE_DISABLE_PLUGINS"}
    environment.update(PYTHONPATH=str(REPO), SETFORGE_TEST_MARKER=str(marker), **env)
    process = subprocess.Popen([sys.executable, "-m", "setforge", "run", str(run_file), "--quiet", "-p", HOOKS,
                                *extra], cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               # (a process started in the background ignores SIGINT: give it Python's Ctrl-C back)
                               preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if sig == signal.SIGINT else None)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the process never got there"
            time.sleep(0.1)
        process.send_signal(sig)
        assert process.wait(timeout=60) == status
        return process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def fresh(here: Path, pipeline: list[Any]) -> dict[str, str]:
    """The same run uninterrupted, in a folder of its own (same relative output.dir)."""
    other = here / "fresh"
    other.mkdir()
    os.chdir(other)
    try:
        code, err = cli("run", str(write_run_file(here, "run.yaml", pipeline=pipeline)))
        assert code == 0, err
        return digest(other / "out")
    finally:
        os.chdir(here)


# ---------------------------------------------------------------------------------- kills
def test_a_kill_in_a_slow_step_leaves_the_previous_run_and_resume_finishes_it(here, previous):
    steps = [{"resample": "random-over"}, {"resample": "fault-sleep", "params": {"seconds": 600}}]
    run_file = write_run_file(here, pipeline=steps)
    started = here / "out.partial" / "steps" / "01-resample-fault-sleep" / "started"
    kill_when_there(run_file, here, started, "--force")
    assert digest(here / "out") == previous  # the previous run, untouched
    assert (here / "out.partial" / "steps" / "00-resample-random-over").is_dir()  # what was done is kept

    steps[1]["params"]["seconds"] = 0
    run_file = write_run_file(here, pipeline=steps)
    code, err = cli("run", str(run_file), "--resume", "--force")
    assert code == 0, err
    assert not (here / "out.partial").exists()
    assert digest(here / "out") == fresh(here, steps)


def test_sigterm_in_a_slow_step_unwinds_as_ctrl_c_and_resume_finishes_it(here, previous):
    # SIGTERM's default action ended the process without its exit handlers (a torchrun rank's
    # scratch folder was left in the temporary folder); now the run unwinds and exits 143
    steps = [{"resample": "random-over"}, {"resample": "fault-sleep", "params": {"seconds": 600}}]
    run_file = write_run_file(here, pipeline=steps)
    started = here / "out.partial" / "steps" / "01-resample-fault-sleep" / "started"
    at_exit = here / "at-exit"
    stderr = kill_when_there(run_file, here, started, "--force", sig=signal.SIGTERM, status=128 + signal.SIGTERM,
                             SETFORGE_TEST_AT_EXIT=str(at_exit))
    assert "setforge: interrupted (stopped by SIGTERM)" in stderr and "Traceback" not in stderr
    assert f"out.partial/ keeps what was done; `setforge run {run_file} -p {HOOKS} --force --resume` continues it" in stderr
    assert at_exit.read_text() == "exit handlers ran\n"
    assert digest(here / "out") == previous
    assert (here / "out.partial" / "steps" / "00-resample-random-over").is_dir()  # kept for --resume
    steps[1]["params"]["seconds"] = 0
    code, err = cli("run", str(write_run_file(here, pipeline=steps)), "--resume", "--force")
    assert code == 0, err
    assert digest(here / "out") == fresh(here, steps)


def test_ctrl_c_in_a_slow_step_says_where_the_work_is_kept_and_how_to_resume_it(here):
    # Ctrl-C printed only "setforge: interrupted": nothing said that out.partial/ keeps the work done,
    # nor that only --resume reuses it (a plain rerun removes it)
    steps = [{"resample": "random-over"}, {"resample": "fault-sleep", "params": {"seconds": 600}}]
    run_file = write_run_file(here, pipeline=steps)
    started = here / "out.partial" / "steps" / "01-resample-fault-sleep" / "started"
    # (the command it gives repeats the --set values and -p plugins: without them it resumed
    # another run, or refused the checkpoint)
    stderr = kill_when_there(run_file, here, started, "--set", "split.val=0.1", sig=signal.SIGINT, status=130)
    assert stderr.splitlines()[-2:] == [
        "setforge: interrupted",
        f"  {Path('out.partial')}/ keeps what was done; `setforge run {run_file} --set split.val=0.1 -p {HOOKS} "
        "--resume` continues it; a rerun without --resume removes it"], stderr
    steps[1]["params"]["seconds"] = 0
    code, err = cli("run", str(write_run_file(here, pipeline=steps)), "--resume")
    assert code == 0, err
    assert not (here / "out.partial").exists()
    assert json.loads((here / "out" / "report.json").read_text())["steps"][0]["resumed"] is True


def test_an_interrupted_demo_says_where_its_work_is_kept(here, monkeypatch):
    import setforge.tools.demo as demo

    def interrupted(**_: Any) -> None:
        if started:
            (here / "runs" / "demo.partial").mkdir(parents=True)
        raise KeyboardInterrupt

    def cli_demo() -> tuple[int, str]:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            return main(["demo", "--quiet"]), err.getvalue()

    monkeypatch.setattr(demo, "run_demo", interrupted)
    started = False  # before the run folder was made: nothing to point to
    code, err = cli_demo()
    assert code == 130 and err == "setforge: interrupted\n"
    started = True
    code, err = cli_demo()
    assert code == 130 and err == (f"setforge: interrupted\n  {Path('runs/demo.partial')}/ keeps what was done; the demo "
                                   "cannot resume: `setforge demo` starts it afresh and removes it\n")


def test_a_kill_while_writing_leaves_the_previous_run_and_resume_finishes_it(here, previous):
    run_file = write_run_file(here, pipeline=[{"resample": "random-over"}])
    marker = here / "writing"
    kill_when_there(run_file, here, marker, "--force", SETFORGE_TEST_PAUSE="write")
    assert digest(here / "out") == previous
    assert (here / "out.partial" / "train-00000.npz").is_file()  # half written, and only as .partial
    assert not (here / "out.partial" / "report.json").exists()

    code, err = cli("run", str(run_file), "--resume", "--force")
    assert code == 0, err
    assert digest(here / "out") == fresh(here, [{"resample": "random-over"}])
    assert not (here / "out.partial").exists() and not (here / "out.replaced").exists()


def test_a_kill_between_the_renames_of_a_replacement_puts_the_previous_run_back(here, previous):
    run_file = write_run_file(here)
    kill_when_there(run_file, here, here / "renaming", "--force", SETFORGE_TEST_PAUSE="commit")
    assert not (here / "out").exists()  # none, never a half-written one
    assert (here / "out.replaced" / "report.json").is_file()

    # The next run puts the previous one back before anything else (and, without --force, stops there).
    code, err = cli("run", str(run_file))
    assert code == 2 and "exists; pass --force" in err, err
    assert digest(here / "out") == previous and not (here / "out.replaced").exists()
    code, err = cli("run", str(run_file), "--force")
    assert code == 0, err
    assert digest(here / "out") != previous


# ------------------------------------------------------------------------- write errors
def test_a_full_disk_while_writing_is_reported_and_leaves_no_half_written_folder(here, previous, monkeypatch):
    real = setforge.formats.write_npz_file

    def full(path: Path, arrays: Any) -> Path:
        if Path(path).name == "train-00001.npz":
            Path(f"{path}.tmp").write_bytes(b"PK\x03\x04 half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{path}.tmp")
        return real(path, arrays)

    monkeypatch.setattr(setforge.formats, "write_npz_file", full)
    run_file = write_run_file(here, pipeline=[{"resample": "random-over"}])
    code, err = cli("run", str(run_file), "--force")
    assert code == 5, err
    assert err.startswith("setforge: cannot write the run folder: ")
    for words in ("train-00001.npz.tmp", "No space left on device", "was left as it was", "out.partial",
                  "--resume"):
        assert words in err, (words, err)
    assert digest(here / "out") == previous

    monkeypatch.setattr(setforge.formats, "write_npz_file", real)
    code, err = cli("run", str(run_file), "--force", "--resume")
    assert code == 0, err
    assert digest(here / "out") == fresh(here, [{"resample": "random-over"}])


@pytest.mark.parametrize("layout", ["dangling", "loop"])
def test_an_output_dir_under_a_broken_link_is_an_output_error(tmp_path, layout):
    # (found by an audit: a link to an unmounted folder, or a loop of links, was a traceback, exit 1)
    if layout == "dangling":
        (tmp_path / "runs").symlink_to(tmp_path / "not-mounted" / "runs")
    else:
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
    out = tmp_path / ("runs/x" if layout == "dangling" else "a/x")
    code, err = cli("run", str(write_run_file(tmp_path, out=str(out))))
    assert code == 5, err
    assert err.startswith("setforge: cannot write the run folder: cannot write ") and "was left as it was" in err


def test_a_full_disk_inside_a_plugin_is_an_output_error_naming_it(here, capsys):
    code, err = cli("run", str(write_run_file(here, pipeline=[{"resample": "fault-disk-full"}])))
    assert code == 5, err
    for words in ("resample 'fault-disk-full'", "plugin '_fault_hooks'", "No space left on device", "scratch.bin",
                  "--resume"):
        assert words in err, (words, err)
    assert not (here / "out").exists()


def test_a_permission_error_while_writing_is_reported(here, previous, monkeypatch):
    real = setforge.record.write_text

    def refuse(path: Path, text: str) -> None:
        if Path(path).name == "report.json":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real(path, text)

    monkeypatch.setattr(setforge.record, "write_text", refuse)
    code, err = cli("run", str(write_run_file(here)), "--force")
    assert code == 5, err
    assert "report.json: Permission denied" in err and "was left as it was" in err
    assert digest(here / "out") == previous


def test_a_run_folder_that_cannot_be_created_is_reported_before_any_work(here, monkeypatch):
    """What a read-only parent does for a user who is not root (simulated, so it runs as root too)."""
    import pathlib

    real_mkdir = pathlib.Path.mkdir

    def refuse(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name.endswith(".partial"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    code, err = cli("run", str(write_run_file(here, pipeline=[{"resample": "fault-sleep", "params": {"seconds": 0}}])))
    assert code == 5, err
    assert "out.partial: Permission denied" in err and "choose an output.dir you can write to" in err
    assert sorted(p.name for p in here.iterdir()) == ["run.yaml"]  # no step ran, nothing was written


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_parent_is_reported_before_any_work(here):
    parent = here / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code, err = cli("run", str(write_run_file(here, out="locked/out")))
    finally:
        parent.chmod(0o755)
    assert code == 5, err
    assert "Permission denied" in err and "locked" in err
    assert list(parent.iterdir()) == []


def test_an_output_dir_that_cannot_exist_is_reported(here):
    """Works as root too: a file where a folder should be, and a read-only system folder."""
    (here / "afile").write_text("not a folder")
    code, err = cli("run", str(write_run_file(here, out="afile/out")))
    assert code == 5 and "Not a directory" in err, err
    readonly = Path("/sys/setforge-test-out")
    if Path("/sys/kernel").is_dir():
        code, err = cli("run", str(write_run_file(here, out=str(readonly))))
        assert code == 5 and str(readonly) in err, err
    assert not readonly.exists()


def test_resume_reuses_every_finished_step_of_tabular_data(here):
    # (a restored step's features came back with their dtypes in sorted key order, so the restored data
    # hashed differently and every finished step after the first ran again)
    steps = [{"resample": "random-over"}, {"augment": "feature-noise", "copies": 1}]
    code, err = cli("run", str(write_run_file(here, pipeline=[*steps, {"resample": "fault-disk-full"}])))
    assert code == 5, err
    code, err = cli("run", str(write_run_file(here, pipeline=[*steps, {"resample": "random-under"}])), "--resume")
    assert code == 0, err
    report = json.loads((here / "out" / "report.json").read_text())
    assert [step["resumed"] for step in report["steps"]] == [True, True, False]
