"""Launching a run file under ``torchrun --nproc-per-node 2`` (gloo, one thread a rank) for the
distributed tests, and checking what every such run must leave: one run folder, no scratch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path: Path, body: dict) -> tuple[dict, str]:
    """`body` (a run file without ``output.dir``) run by 2 torchrun ranks into ``out/run``; asserts it
    exits 0 and leaves one run folder and no rank's scratch folder, and returns the run's report
    and the processes' standard output."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    scratch.mkdir()
    file = tmp_path / "run.yaml"
    output = {**body.get("output", {}), "dir": str(out / "run")}
    file.write_text(yaml.safe_dump({**body, "output": output}), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch), "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                           "-m", "setforge", "run", str(file), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["run"]  # one run folder, no <dir>.partial left
    assert not list(scratch.glob("setforge-*")), "rank 1's scratch folder was left behind"
    return json.loads((out / "run" / "report.json").read_text(encoding="utf-8")), done.stdout
