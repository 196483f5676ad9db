"""Shared material for the run-file tests: a local plugin with tiny components of every kind,
and a good run file that uses them, so the tests do not depend on the built-in plugins."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

PLUGIN = '''
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

import setforge
from setforge import hookimpl


class Tiny(setforge.Source):
    """A tiny test source."""

    name = "cfgtest-tiny"

    class Params(setforge.Source.Params):
        path: Path | None = Field(None, description="a data file")
        rows: int = Field(10, ge=1, description="rows")


class Scale(setforge.Preprocessor):
    """Scales values."""

    name = "cfgtest-scale"

    class Params(setforge.Preprocessor.Params):
        factor: float = Field(1.0, gt=0)


class Flip(setforge.Augmenter):
    """Flips."""

    name = "cfgtest-flip"


class Affine(setforge.Augmenter):
    """Rotates."""

    name = "cfgtest-affine"

    class Params(setforge.Augmenter.Params):
        degrees: float = Field(0.0, ge=0, le=180)
        cache: Path | None = Field(None, description="a path that need not exist")


class Smote(setforge.Resampler):
    """Over-samples."""

    name = "cfgtest-smote"

    class Params(setforge.Resampler.Params):
        k: int = Field(5, ge=1)


class Gan(setforge.Generator):
    """Generates."""

    name = "cfgtest-gan"

    class Params(setforge.Generator.Params):
        epochs: int = Field(10, ge=1)
        lr: float = Field(1e-3, gt=0)
        weight: float = Field(1.0, description="no bounds: only finiteness stops a NaN")


class Score(setforge.Evaluator):
    """Scores."""

    name = "cfgtest-score"


class Files(setforge.Source):
    """A source whose path has a default."""

    name = "cfgtest-files"

    class Params(setforge.Source.Params):
        path: Path = Field(Path("data/rows.csv"), description="relative to the run file")


class Odd(setforge.Evaluator):
    """An evaluator whose params JSON Schema cannot describe."""

    name = "cfgtest-odd"

    class Params(setforge.Evaluator.Params):
        model_config = {**setforge.Evaluator.Params.model_config, "arbitrary_types_allowed": True}
        hook: Callable[[int], int] = abs


class Memo(setforge.Evaluator):
    """Memorisation."""

    name = "cfgtest-memo"

    class Params(setforge.Evaluator.Params):
        k: int = Field(1, ge=1)


@hookimpl
def setforge_register_sources():
    return [Tiny, Files]


@hookimpl
def setforge_register_preprocessors():
    return [Scale]


@hookimpl
def setforge_register_augmenters():
    return [Flip, Affine]


@hookimpl
def setforge_register_resamplers():
    return [Smote]


@hookimpl
def setforge_register_generators():
    return [Gan]


@hookimpl
def setforge_register_evaluators():
    return [Score, Memo, Odd]
'''

GOOD = """\
seed: 3
plugins: [cfg_plugin.py]
source: {name: cfgtest-tiny, params: {path: data/rows.csv}}
split: {test: 0.3, val: 0.1}
preprocess: [cfgtest-scale]
pipeline:
  - augment: cfgtest-affine
    params: {degrees: 10}
    copies: 2
    minority: true
  - augment: [cfgtest-flip, {name: cfgtest-affine, params: {degrees: 5}}]
  - resample: cfgtest-smote
  - generate: cfgtest-gan
    params: {epochs: 3}
    guard: "off"
evaluate: [cfgtest-score, {name: cfgtest-memo, params: {k: 2}}]
output: {dir: runs/x}
"""


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the test plugin's components: every installed entry point is disabled."""
    names = sorted({ep.name for ep in importlib.metadata.entry_points(group="setforge")})
    monkeypatch.setenv("SETFORGE_DISABLE_PLUGINS", ",".join(names))


@pytest.fixture
def folder(tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run-file folder holding the test plugin and a data file; the current folder is another one."""
    home = tmp_path / "project"
    (home / "data").mkdir(parents=True)
    (home / "cfg_plugin.py").write_text(PLUGIN)
    (home / "data" / "rows.csv").write_text("a,label\n1,x\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return home


def files_under(*roots: Path) -> set[Path]:
    """Every file under `roots` (bytecode caches aside)."""
    return {p for root in roots for p in root.rglob("*") if "__pycache__" not in p.parts}
