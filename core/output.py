"""The run folder: built in ``<dir>.partial/``, renamed to ``<dir>`` in one step, read back with `load`.

While a run works everything goes to ``<dir>.partial/`` (per-step workdirs with checkpoints and
sample grids, caches, the data files); at the end that folder is renamed to ``<dir>``, so a
``<dir>`` that exists is complete. An existing ``<dir>`` is replaced only with ``force`` (and only
if it is a setforge run folder); ``resume`` continues in ``<dir>.partial/``.

Contents of a finished folder: the data files of ``output.format`` (see `setforge.formats`),
``splits.npz`` (which source rows went to which split), ``preprocess/NN-NAME.pt`` (fitted
preprocessor state), ``steps/NN-KIND-NAME/`` (what steps kept: checkpoints, sample grids),
``figures/`` (evaluator figures), ``report.json``, ``timings.json`` and ``report.html``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # (Windows: no lock against a second run on the same folder)
    fcntl = None  # type: ignore[assignment]

from .errors import ConfigError
from .formats import SPLITS, get_format
from .record import REPORT_FILE, read_report

__all__ = ["RunFolder", "load", "read_report", "write_data", "MARKER"]

#: The file that marks a folder as made by setforge (only such folders are ever deleted or replaced).
MARKER = ".setforge-run"
_RESUME_FILES = ("_setforge_output.pt",)
#: What ``--resume`` keeps of ``<dir>.partial/``: the work of steps, evaluators and replays, and the
#: caches; a try's data files, preprocessor state, figures and report are written anew.
_KEPT_ON_RESUME = frozenset({MARKER, "steps", "source", "evaluate", "replay", "observe", "cache"})


def _safe_part(text: str) -> str:
    """A file-name part made from a component or figure name: nothing that could leave the folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return cleaned[:80] or "_"


class RunFolder:
    """``<dir>`` and its ``<dir>.partial/`` working copy."""

    def __init__(self, final: str | Path):
        self.final = Path(final)
        if self.final.name in ("", ".", ".."):
            raise ConfigError(problems=[("output.dir", f"{str(final)!r} is not a folder name a run can own")])
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.replaced = self.final.with_name(self.final.name + ".replaced")
        self._lock: Any = None

    # --------------------------------------------------------------------------- checks
    @staticmethod
    def is_run_folder(path: Path) -> bool:
        return path.is_dir() and ((path / MARKER).is_file() or (path / REPORT_FILE).is_file())

    def recover(self) -> bool:
        """Put the previous run back after a kill between the two renames of a replacement (which
        leaves it in ``<dir>.replaced`` and no ``<dir>``); True if it did."""
        if self.final.exists() or self.final.is_symlink() or not self.is_run_folder(self.replaced):
            return False
        self.replaced.rename(self.final)
        return True

    def check(self, force: bool) -> None:
        """Before any work: an existing ``<dir>`` needs ``force``, and must be a run folder to be replaced.
        A previous run left in ``<dir>.replaced`` by a kill is put back first."""
        self.recover()
        if self.final.exists() or self.final.is_symlink():
            if not force:
                raise ConfigError(problems=[("output.dir", f"{self.final} exists; pass --force (or output.force: true) "
                                                           "to replace it, or choose another output.dir")])
            if not self.is_run_folder(self.final) and not (self.final.is_dir() and not any(self.final.iterdir())):
                raise ConfigError(problems=[("output.dir", f"{self.final} exists and is not a setforge run folder "
                                                           "(no report.json); not replacing it, even with --force")])
        for folder in (self.partial, self.replaced):  # (a run left in <dir>.replaced is back in <dir> by now)
            if folder.exists() and not self.is_run_folder(folder):
                raise ConfigError(problems=[("output.dir", f"{folder} exists and was not made by setforge; "
                                                           "move it away first")])
        if self._lock is None and fcntl is not None and (self.partial / MARKER).is_file():
            with (self.partial / MARKER).open("a") as other:  # (the process writing it holds a lock on it)
                try:
                    fcntl.lockf(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (BlockingIOError, PermissionError):
                    raise ConfigError(problems=[("output.dir", f"another setforge run is writing {self.partial}; "
                                                 "wait for it to end, or choose another output.dir")]) from None

    def open(self, force: bool = False, resume: bool = False) -> Path:
        """Make ``<dir>.partial/`` ready: kept with ``resume``, else started afresh."""
        self.check(force)
        if self.partial.exists() and not resume:
            shutil.rmtree(self.partial)
        for path in list(self.partial.iterdir()) if self.partial.is_dir() else []:  # resume: what a try wrote at
            if path.name not in _KEPT_ON_RESUME:  # its end (data, state, figures) goes; steps and caches stay
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        self.partial.mkdir(parents=True, exist_ok=True)
        (self.partial / MARKER).write_text("setforge run folder\n", encoding="utf-8")
        # locked while this process lives (a POSIX lock: another process's run is refused, a retry in
        # this one, after a failed run whose objects live on, is not)
        self._lock = (self.partial / MARKER).open("a")
        if fcntl is not None:
            fcntl.lockf(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self.partial

    # -------------------------------------------------------------------------- places
    def step_dir(self, index: int, kind: str, name: str) -> Path:
        return self.partial / "steps" / f"{index:02d}-{kind}-{_safe_part(name)}"

    def evaluator_dir(self, name: str) -> Path:
        return self.partial / "evaluate" / _safe_part(name)

    @property
    def cache_dir(self) -> Path:
        return self.partial / "cache"

    # -------------------------------------------------------------------------- finish
    @staticmethod
    def _prune_empty(folder: Path) -> None:
        """Remove empty work folders (steps that kept nothing), deepest first."""
        if not folder.is_dir():
            return
        for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(path.iterdir()):
                path.rmdir()
        if not any(folder.iterdir()):
            folder.rmdir()

    def commit(self, force: bool = False) -> Path:
        """Rename ``<dir>.partial/`` to ``<dir>`` (replacing an old ``<dir>`` with `force`).

        What only a resume needs (step snapshots, caches) is removed first. A kill between the
        two renames of a replacement leaves the old run in ``<dir>.replaced`` and no ``<dir>``;
        the next run puts it back (`recover`) before anything else.
        """
        for name in _RESUME_FILES:
            for path in (self.partial / "steps").glob(f"*/{name}"):
                path.unlink()
        if self.cache_dir.exists():
            shutil.rmtree(self.cache_dir)
        for top in ("source", "steps", "evaluate", "replay"):
            self._prune_empty(self.partial / top)
        if self.is_run_folder(self.replaced):  # (a symbolic link to a folder goes as a link)
            self.replaced.unlink() if self.replaced.is_symlink() else shutil.rmtree(self.replaced)
        if self.final.exists() or self.final.is_symlink():
            self.check(force)
            self.final.rename(self.replaced)
        try:
            self.partial.rename(self.final)
        except OSError:
            self.recover()  # the previous run stays where it was
            raise
        with contextlib.suppress(OSError):
            self.replaced.unlink() if self.replaced.is_symlink() else shutil.rmtree(self.replaced)
        self._lock.close()
        return self.final


# ------------------------------------------------------------------------------- reading
def load(run_dir: str | Path, split: str = "train", device: Any = "cpu", registry: Any = None) -> Any:
    """A run folder's data as a `Dataset`: the optimised training set (``split="train"``, with
    ``origin``, ``step`` and ``parent``) or the real ``"val"`` and ``"test"`` parts.

    `registry` finds the run's ``output.format`` (default: the installed plugins); a format from
    the run file's ``plugins`` needs one that loads them, ``setforge.Registry(local=[...]).load()``.

    >>> train = setforge.load("runs/demo")
    >>> test = setforge.load("runs/demo", split="test")
    """
    if split not in SPLITS:
        raise ConfigError(problems=[("split", f"must be one of {list(SPLITS)}, got {split!r}")])
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    fmt = get_format(report.get("output", {}).get("format", "npz"), registry)
    return fmt.read(run_dir, split).to(device)


# ------------------------------------------------------------------------------- writing
def write_data(partial: Path, fmt: Any, parts: Mapping[str, Any], shard_rows: int, rows: Any, split: Any,
               figures: Mapping[str, Mapping[str, bytes]]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Write a run's data files (`parts` ``train`` / ``val`` / ``test``, in the original units), its
    ``splits.npz`` (which source rows went where, `rows` and `split`) and the evaluators'
    `figures` into `partial`; returns the SHA-256 of each data file and the figure files by evaluator."""
    import numpy as np

    from .formats import write_npz_file
    from .record import file_hash

    files: list[Path] = []
    for name, ds in parts.items():
        files += fmt.write(partial, name, ds, shard_rows=shard_rows)
    arrays = {"source_parts": np.asarray(rows.part_names, dtype=np.str_),
              "source_part_sizes": np.asarray(rows.part_sizes, dtype=np.int64),
              "source_part": rows.part_of.astype(np.int64), "source_y": rows.all.y.cpu().numpy().astype(np.int64)}
    for name in ("train", "val", "test"):
        arrays[f"{name}_index"] = split.index[name].astype(np.int64)
    arrays["duplicate_index"] = split.duplicate_index.astype(np.int64)
    arrays["leaked_index"] = split.leaked_index.astype(np.int64)
    if rows.all.groups is not None:
        arrays["source_groups"] = rows.all.groups.cpu().numpy().astype(np.int64)
    files.append(write_npz_file(partial / "splits.npz", arrays))
    written: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    for evaluator, named in sorted(figures.items()):
        for name, png in sorted(named.items()):
            stem, n = f"figures/{_safe_part(evaluator)}-{_safe_part(name)}", 1
            relpath = f"{stem}.png"
            while relpath.lower() in used:  # names that differ only in characters a file name cannot hold
                n += 1
                relpath = f"{stem}-{n}.png"
            used.add(relpath.lower())
            (partial / "figures").mkdir(exist_ok=True)
            (partial / relpath).write_bytes(png)
            written.setdefault(evaluator, {})[name] = relpath
    return {str(p.relative_to(partial)): file_hash(p) for p in sorted(files)}, written
