"""Files can't do harm. Run files are read with YAML safe loading; checkpoints, weights, resume
snapshots and cached values only with ``torch.load(weights_only=True)`` (checked over the source
and with planted pickles that would ``touch`` a marker); nothing in a run file is imported or
evaluated except the plugins it names; class and file names from data are made safe before they
become paths (no escape via ``../``, absolute paths, odd or over-long characters); every string
from data or config is escaped in report.html (a class named ``<script>alert(1)</script>``).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import sys
import textwrap
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import setforge
from setforge.tools.cli import main
from setforge.runfile import _SafeLoader, read_run_file
from setforge.context import Cache
from setforge.errors import ConfigError
from setforge.plugins.output.files import class_folders

REPO = Path(__file__).resolve().parents[2]
HOOKS = str(Path(__file__).with_name("_fault_hooks.py"))
SOURCE_DIRS = [REPO / "core", REPO / "plugins", REPO / "contrib"]
SCRIPT = "<script>alert(1)</script>"


def python_files() -> list[Path]:
    return sorted(p for folder in SOURCE_DIRS if folder.is_dir() for p in folder.rglob("*.py"))


def calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call with a dotted name (``torch.load``, ``yaml.load``, ``pickle.loads``...)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                parts.append(func.id)
                out.append((".".join(reversed(parts)), node))
    return out


def keyword(node: ast.Call, name: str) -> Any:
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, err.getvalue()


class Evil:
    """Pickled, it calls ``os.system`` when unpickled by anything but a weights-only loader."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"setforge_generator": "dcgan", "key": "x", "payload": Evil(marker)}, path)


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    return tmp_path


# ------------------------------------------------------------------------------ the source
def test_every_torch_load_passes_weights_only_true():
    found = []
    for path in python_files():
        for name, node in calls(ast.parse(path.read_text(encoding="utf-8"))):
            if name == "torch.load":
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
                assert keyword(node, "weights_only") is True, \
                    f"{path}:{node.lineno} torch.load without weights_only=True"
    assert len(found) >= 4, found  # the scan does see them (checkpoints, snapshots, weights, cache)


def test_no_other_way_to_unpickle_or_evaluate_in_setforge_code():
    forbidden = {"pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load", "cloudpickle.load",
                 "marshal.loads", "shelve.open", "eval", "exec", "yaml.unsafe_load", "yaml.full_load",
                 "yaml.load_all", "torch.jit.load"}
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, node in calls(tree):
            assert name not in forbidden, f"{path}:{node.lineno} calls {name}"
            if name in ("np.load", "numpy.load"):
                assert keyword(node, "allow_pickle") is False, \
                    f"{path}:{node.lineno} np.load without allow_pickle=False"
            if name == "yaml.load":
                loader = keyword(node, "Loader")
                assert isinstance(loader, ast.Name) and loader.id in ("_SafeLoader", "SafeLoader"), \
                    f"{path}:{node.lineno} yaml.load with a loader that is not safe"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("Loader", "FullLoader", "UnsafeLoader") and \
                    isinstance(node.value, ast.Name) and node.value.id == "yaml":
                raise AssertionError(f"{path}:{node.lineno} uses yaml.{node.attr}")
    assert issubclass(_SafeLoader, yaml.SafeLoader)


def test_yaml_tags_that_build_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    for tag in (f'!!python/object/apply:os.system ["touch {marker}"]', "!!python/name:os.system",
                f'!!python/object/new:subprocess.Popen [["touch", "{marker}"]]', "!!python/module:os"):
        path = tmp_path / "run.yaml"
        path.write_text(f"source: sklearn-digits\nseed: {tag}\n")
        with pytest.raises(ConfigError, match="safe loading"):
            read_run_file(path)
    assert not marker.exists()


# ---------------------------------------------------------------------- planted pickles
def test_a_checkpoint_that_holds_code_is_refused_and_never_runs(here):
    marker = here / "PWNED"
    plant(here / "generator.pt", marker)
    (here / "run.yaml").write_text(yaml.safe_dump({
        "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
        "pipeline": [{"generate": "dcgan", "guard": "off", "params": {"checkpoint": "generator.pt"}}], "output": {"dir": "out"}}))
    code, err = cli("run", "run.yaml", "--quiet")
    assert code == 3, err
    assert "the checkpoint: cannot read" in err and "weights_only=True" in err
    assert "weights_only=False" not in err and "arbitrary code" not in err  # never advise the unsafe way
    assert not marker.exists() and not (here / "out").exists()


def test_planted_training_checkpoints_and_resume_snapshots_never_run(here):
    """A partial run folder with pickles planted in place of the GAN checkpoint and the resume
    snapshots: ``--resume`` refuses or recomputes them, and never runs them."""
    marker = here / "PWNED"
    gan = {"generate": "dcgan", "guard": "off", "params": {"steps": 6, "checkpoint_every": 2, "batch_size": 16, "width": 4,
                                           "latent_dim": 4, "embedding_dim": 2, "grid_every": 0}, "multiply": 0.2}
    config = {"device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
              "pipeline": [{"resample": "random-over"}, gan, {"resample": "fault-disk-full"}],
              "output": {"dir": "out"}}
    (here / "run.yaml").write_text(yaml.safe_dump(config))
    code, err = cli("run", "run.yaml", "--quiet", "-p", HOOKS)
    assert code == 5, err  # the last step fails: the partial folder stays for --resume
    steps = here / "out.partial" / "steps"
    for snapshot in steps.glob("*/_setforge_output.pt"):
        plant(snapshot, marker)
    for checkpoint in steps.glob("01-generate-dcgan/training-*.pt"):
        plant(checkpoint, marker)
    code, err = cli("run", "run.yaml", "--quiet", "-p", HOOKS, "--resume")
    assert code == 3, err
    assert "cannot read the checkpoint" in err and "only tensors and plain values are loaded" in err, err
    assert "weights_only=False" not in err
    assert not marker.exists()

    # Snapshots alone: the steps run again (with a warning), the run finishes.
    for checkpoint in steps.glob("01-generate-dcgan/training-*.pt"):
        checkpoint.unlink()
    config["pipeline"][2] = {"resample": "random-over"}
    (here / "run.yaml").write_text(yaml.safe_dump(config))
    code, err = cli("run", "run.yaml", "--quiet", "-p", HOOKS, "--resume")
    assert code == 0, err
    warnings = json.loads((here / "out" / "report.json").read_text())["warnings"]
    assert any("resume snapshot could not be read" in w for w in warnings), warnings
    assert not marker.exists()


def test_a_planted_cache_file_is_computed_afresh_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    cache = Cache(tmp_path / "cache")
    key = Cache.key("features", "abc")
    plant(tmp_path / "cache" / f"{key}.pt", marker)
    value = cache.get_or_compute(key, lambda: torch.arange(3))
    assert torch.equal(value, torch.arange(3)) and not marker.exists()
    # what it keeps on disk reads back weights-only in a new cache; a module stays in memory only
    assert torch.equal(Cache(tmp_path / "cache").get_or_compute(key, lambda: None), torch.arange(3))
    module_key = Cache.key("module")
    Cache(tmp_path / "cache").get_or_compute(module_key, lambda: torch.nn.Linear(2, 2))
    assert not (tmp_path / "cache" / f"{module_key}.pt").exists()


# ------------------------------------------------------------------ nothing is evaluated
def test_nothing_in_a_run_file_is_imported_or_evaluated_but_named_plugins(here, monkeypatch):
    marker = here / "PWNED"
    trap = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
    (here / "sfplug_trap.py").write_text(trap)
    monkeypatch.syspath_prepend(str(here))
    payload = f"__import__('os').system('touch {marker}')"
    (here / "run.yaml").write_text(yaml.safe_dump({
        "device": "cpu", "source": {"name": "sfplug_trap", "params": {"path": payload}},
        "pipeline": [{"resample": "os.system", "params": {"k": payload}}, {"generate": "sfplug_trap:main"}],
        "evaluate": [payload, "sfplug_trap"], "output": {"dir": payload}}))
    code, err = cli("validate", "run.yaml", "--set", f"seed={payload}", "--set", "plugins_deny=[sfplug_trap]")
    assert code == 2
    assert "unknown source 'sfplug_trap'" in err and "unknown resample 'os.system'" in err
    assert not marker.exists() and "sfplug_trap" not in sys.modules
    # ... while a plugin the run file names in `plugins` is imported: that is what naming it means
    (here / "named.yaml").write_text(yaml.safe_dump({"source": "sklearn-wine", "plugins": ["sfplug_trap"]}))
    code, err = cli("validate", "named.yaml")
    assert code == 0, err
    assert marker.read_text() == "imported"
    sys.modules.pop("sfplug_trap", None)


# -------------------------------------------------------------------------- names as paths
EVIL_NAMES = ["../escape", "..", ".", "/etc/passwd", "a/b", "a_b", "a\\b", "C:\\win", "nul\x00byte", "con",
              "CON.txt", "", " ", "A", "a", "\u4e2d" * 120, "\U0001d518" * 100, SCRIPT, "\n\t", "~", ".hidden",
              "x" * 300, "e\u0301", "\u00e9", "\u202eevil\u202c", "$(touch x)", "*", "?"]


def test_class_folders_are_single_safe_distinct_names():
    folders = class_folders(EVIL_NAMES)
    assert len(folders) == len(EVIL_NAMES)
    assert len({f.lower() for f in folders}) == len(folders)  # distinct, even on case-insensitive systems
    for name, folder in zip(EVIL_NAMES, folders):
        assert folder not in ("", ".", "..") and not folder.startswith("."), (name, folder)
        assert "/" not in folder and "\\" not in folder and ":" not in folder, (name, folder)
        assert all(unicodedata.category(ch)[0] != "C" for ch in folder), (name, folder)  # no control characters
        assert len(folder.encode("utf-8")) <= 255, (name, len(folder.encode("utf-8")))
        assert Path(folder).name == folder and not Path(folder).is_absolute()


def images(n: int, classes: list[str]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"x": rng.random((n, 1, 8, 8)).astype(np.float32), "y": np.arange(n) % len(classes),
            "classes": np.array(classes)}


def test_class_names_from_data_cannot_escape_the_run_folder(here):
    classes = EVIL_NAMES[:12] + EVIL_NAMES[15:]
    np.savez(here / "data.npz", **images(6 * len(classes), classes))
    (here / "run.yaml").write_text(yaml.safe_dump({
        "device": "cpu", "source": {"name": "npz", "params": {"path": "data.npz"}}, "split": {"test": 0.2, "val": 0.0},
        "output": {"dir": "nest/out", "format": "image-folder"}}))
    before = {p for p in here.rglob("*")}
    code, err = cli("run", "run.yaml", "--quiet")
    assert code == 0, err
    out = (here / "nest" / "out").resolve()
    created = {p for p in here.rglob("*")} - before
    for path in created:
        assert path.resolve() == out or out in path.resolve().parents or path == here / "nest", path
    assert not any(p.is_symlink() for p in created)
    pngs = list((out / "train").rglob("*.png"))
    assert pngs and all(p.parent.parent == out / "train" for p in pngs)  # one folder level per class, no deeper
    assert setforge.load(out).classes == tuple(classes)  # the names themselves survive, in the manifest
    assert setforge.load(out, split="test").classes == tuple(classes)


TAG_SOUP = textwrap.dedent('''
    import io
    from PIL import Image
    from setforge import Evaluator, Metrics, hookimpl


    def png():
        buffer = io.BytesIO()
        Image.new("L", (4, 4)).save(buffer, format="PNG")
        return buffer.getvalue()


    class TagSoup(Evaluator):
        """Names its measures, skips and figures with HTML."""
        name = "tag-soup"

        def _evaluate(self, ectx):
            metrics = Metrics()
            for c in ectx.train.classes:
                metrics.add(f"rows/{c}", float((ectx.train.y == ectx.train.classes.index(c)).sum()), n=len(ectx.train))
            metrics.add("raw/<b>bold</b>", 1.0, n=1)
            metrics.add("optimised/<b>bold</b>", 2.0, n=1)
            metrics.skip("<i>why</i>", "<img src=x onerror=alert(2)>")
            metrics.figure("<svg onload=alert(3)>", png())
            metrics.figure("../../../escape", png())
            metrics.figure("..%2F..%2Fescape", png())
            return metrics


    @hookimpl
    def setforge_register_evaluators():
        return [TagSoup]


    @hookimpl
    def setforge_on_event(event):
        if event.kind == "run_started":
            raise RuntimeError("<script>alert(4)</script>")
''')


def test_report_html_escapes_every_string_from_data_and_config(here):
    classes = [SCRIPT, "b&b", "\"q'", "<!--"]
    data_file = "<img src=x onerror=alert(5)>.npz"
    np.savez(here / data_file, **images(48, classes))
    (here / "tag_soup.py").write_text(TAG_SOUP)
    (here / "run.yaml").write_text(yaml.safe_dump({
        "device": "cpu", "source": {"name": "npz", "params": {"path": data_file}}, "split": {"test": 0.25, "val": 0.0},
        "pipeline": [{"resample": "random-over", "params": {"sampling_strategy": {SCRIPT: 20}}}],
        "evaluate": ["balance", "tag-soup", {"name": "utility", "params": {"epochs": 2}}],
        "plugins": ["tag_soup.py"], "output": {"dir": "out", "format": "image-folder"}}))
    code, err = cli("run", "run.yaml", "--quiet")
    assert code == 0, err
    out = here / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == classes and any("alert(4)" in w for w in report["warnings"])
    assert SCRIPT in json.dumps(report["config"])  # the evil strings reached the report ...
    for page in ((out / "report.html").read_text(), None):
        if page is None:  # ... and `setforge report` renders the page again, just as safely
            assert cli("report", str(out))[0] == 0
            page = (out / "report.html").read_text()
        for raw in ("<script", "<img src=x", "<svg", "<b>", "<i>", "<!--", "\"q'"):
            assert raw not in page, raw  # (figures are <img alt='...' src='data:...'>, made by setforge)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "b&amp;b" in page
        assert "&lt;svg onload=alert(3)&gt;" in page  # the figure's caption, escaped
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert len(figures) == 3 and all(p.resolve().parent == (out / "figures").resolve()
                                     for p in (out / "figures").iterdir())
    assert not (here / "escape").exists() and not (here.parent / "escape").exists()
