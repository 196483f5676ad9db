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


def launch(tmp_path: Path, body: dict, nodes: int = 1) -> tuple[list[int], str, str]:
    """`body` (a run file without ``output.dir``) run by 2 torchrun ranks into ``out/run``; returns
    the launchers' exit codes and the processes' standard output and error. With ``nodes=2`` the
    ranks come from two torchrun launchers of one rank each, as on two machines (``--nnodes 2
    --node-rank r``): each rank's ``LOCAL_RANK`` is 0 and only global rank 0 is the main one."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    scratch.mkdir()
    file = tmp_path / "run.yaml"
    output = {**body.get("output", {}), "dir": str(out / "run")}
    file.write_text(yaml.safe_dump({**body, "output": output}), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch), "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    port = str(free_port())
    layouts = [["--nproc-per-node", "2"]] if nodes == 1 else [
        ["--nnodes", str(nodes), "--node-rank", str(r), "--nproc-per-node", str(2 // nodes)] for r in range(nodes)]
    launchers = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *layout, "--master-addr", "127.0.0.1",
                                   "--master-port", port, "-m", "setforge", "run", str(file), "--quiet"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
                 for layout in layouts]
    stdout = stderr = ""
    try:
        for launcher in launchers:
            out_text, err_text = launcher.communicate(timeout=300)
            stdout, stderr = stdout + out_text, stderr + err_text
    finally:  # a launcher that failed leaves the other waiting for it
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
    return [launcher.returncode for launcher in launchers], stdout, stderr


def torchrun(tmp_path: Path, body: dict, nodes: int = 1) -> tuple[dict, str]:
    """`launch`, asserting that it exits 0 and leaves one run folder and no rank's scratch folder;
    returns the run's report and the processes' standard output."""
    codes, stdout, stderr = launch(tmp_path, body, nodes)
    assert codes == [0] * len(codes), stdout[-3000:] + stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["run"]  # one run folder, no <dir>.partial left
    assert not list((tmp_path / "scratch").glob("setforge-*")), "rank 1's scratch folder was left behind"
    return json.loads((out / "run" / "report.json").read_text(encoding="utf-8")), stdout
