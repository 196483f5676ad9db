"""A local plugin for the fault tests, loaded with ``-p`` this file.

Components: ``fault-sleep`` (a resampler that writes ``started`` into its workdir, then sleeps,
keeping every row) and ``fault-disk-full`` (a resampler whose write fails with ENOSPC).

Environment variables make a real ``setforge run`` process stop where a test wants to SIGKILL it:

- ``SETFORGE_TEST_PAUSE=write``: after ``train-00000.npz`` is written (the run folder half written);
- ``SETFORGE_TEST_PAUSE=commit``: between the two renames that replace an old ``<dir>``;
- ``SETFORGE_TEST_KILL_AT_ITERATION=N``: the process SIGKILLs itself at the first GAN
  ``train_progress`` event at or past iteration N (a kill in the middle of training);

writing ``SETFORGE_TEST_MARKER`` (a path) when it gets there. Without them nothing is patched.
``SETFORGE_TEST_EVENTS`` (a path): every event's kind and iteration is appended to that file.
``SETFORGE_TEST_AT_EXIT`` (a path): written by an exit handler (``atexit``), when the process ends
by returning from ``main``, not by a signal's default action.
"""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import time
from pathlib import Path

import torch
from pydantic import Field

from setforge import Resampler, hookimpl

PAUSE = os.environ.get("SETFORGE_TEST_PAUSE")
MARKER = os.environ.get("SETFORGE_TEST_MARKER")
KILL_AT = os.environ.get("SETFORGE_TEST_KILL_AT_ITERATION")
EVENTS = os.environ.get("SETFORGE_TEST_EVENTS")

if AT_EXIT := os.environ.get("SETFORGE_TEST_AT_EXIT"):
    import atexit

    atexit.register(Path(AT_EXIT).write_text, "exit handlers ran\n")


def _stop_here() -> None:
    Path(MARKER).write_text("here\n")
    time.sleep(600)  # the test kills the process long before


if PAUSE == "write":
    import setforge.formats as _formats

    _real_write = _formats.write_npz_file

    def _write_npz_file(path, arrays):  # noqa: ANN001 - the patched function's own signature
        written = _real_write(path, arrays)
        if Path(path).name == "train-00000.npz":
            _stop_here()
        return written

    _formats.write_npz_file = _write_npz_file

if PAUSE == "commit":
    _real_rename = pathlib.Path.rename

    def _rename(self, target):  # noqa: ANN001, ANN202
        moved = _real_rename(self, target)
        if str(target).endswith(".replaced"):
            _stop_here()
        return moved

    pathlib.Path.rename = _rename


class Sleep(Resampler):
    """Writes ``started`` into its workdir, then sleeps; keeps every row."""

    name = "fault-sleep"
    modalities = ("tabular", "image")

    class Params(Resampler.Params):
        seconds: float = Field(0.0, ge=0.0, description="how long to sleep")

    def _resample(self, ds, ctx):  # noqa: ANN001, ANN202
        (ctx.ensure_workdir() / "started").write_text("yes\n")
        time.sleep(self.params.seconds)
        return torch.arange(len(ds), device=ds.device), ds.x[:0], ds.y[:0], ds.y[:0]


class DiskFull(Resampler):
    """Fails to write into its workdir: the disk is full."""

    name = "fault-disk-full"
    modalities = ("tabular", "image")

    def _resample(self, ds, ctx):  # noqa: ANN001, ANN202
        path = ctx.ensure_workdir() / "scratch.bin"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@hookimpl
def setforge_register_resamplers():  # noqa: ANN201
    return [Sleep, DiskFull]


@hookimpl
def setforge_on_event(event):  # noqa: ANN001, ANN201
    if EVENTS:
        with open(EVENTS, "a") as handle:
            handle.write(f"{event.kind} {event.data.get('iteration', '')}\n")
    if KILL_AT and event.kind == "train_progress" and event.data.get("iteration", 0) >= int(KILL_AT):
        os.kill(os.getpid(), signal.SIGKILL)
