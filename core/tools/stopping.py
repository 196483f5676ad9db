"""SIGTERM handled as Ctrl-C while a command runs a pipeline.

A process ended by SIGTERM's default action runs no ``finally`` block and no exit handler, so a
stopped run left what only those clean up: a torchrun rank's scratch folder in the system's
temporary folder (`setforge.distributed.scratch_dir`), open observers' files, the process group.
Inside `sigterm_as_interrupt` SIGTERM raises `Terminated`, a ``KeyboardInterrupt``, so the run
unwinds as after Ctrl-C: ``<dir>.partial/`` stays for ``--resume``, and the command exits 143
(128 + SIGTERM, as a process killed by it). Python runs the handler between bytecodes of the main
thread, so a rank blocked inside a collective gets it when the collective returns or fails.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["Terminated", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by `sigterm_as_interrupt`'s handler."""

    exit_status = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises `Terminated`; the previous handler is back after (nothing is changed
    outside the main thread, where Python cannot install a handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
