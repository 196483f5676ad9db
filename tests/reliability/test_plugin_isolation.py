"""Plugins can't break the engine. A third-party distribution ("setforge-mischief 6.6.6", made
with tests/core/plugin_dists.py, nothing installed) brings plugins that raise at import (even
``sys.exit``), in their hooks, in ``__init__`` and mid-step, and components that return the
wrong type, shape, dtype, device or range. Each is named with its distribution in the error
(exit 4; 3 for a `DataError`); the other plugins (the same distribution's good ones included)
and the engine keep working in the same process; ``plugins list`` shows each failure;
``plugins_allow``, ``plugins_deny`` and ``SETFORGE_DISABLE_PLUGINS`` choose what loads.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from setforge.tools.cli import main
from setforge.registry import Registry
from tests.core.plugin_dists import install, make_distribution

DIST = "setforge-mischief 6.6.6"

COMPONENTS = textwrap.dedent('''
    import math
    import torch
    from setforge import (Augmenter, DataError, Evaluator, Generator, Metrics, Preprocessor, Resampler, Source,
                          hookimpl)


    def keep(ds):
        return torch.arange(len(ds), device=ds.device), ds.x[:0], ds.y[:0], ds.y[:0]


    def one_more(ds, x):
        return torch.arange(len(ds), device=ds.device), x, ds.y[:1], ds.y[:1] * 0


    class Good(Resampler):
        """Keeps every row (this distribution's one well-behaved component)."""
        name = "mis-good"
        modalities = ("tabular", "image")
        def _resample(self, ds, ctx):
            return keep(ds)


    class BadInit(Good):
        """Raises in __init__."""
        name = "mis-init"
        def __init__(self, params=None):
            super().__init__(params)
            raise ValueError("cannot start without a licence key")


    class Crash(Good):
        """Raises mid-step."""
        name = "mis-crash"
        def _resample(self, ds, ctx):
            return 1 / 0


    class Data(Good):
        """Raises a DataError mid-step."""
        name = "mis-data"
        def _resample(self, ds, ctx):
            raise DataError("class '2' is too small for this sampler; give it at least 6 rows")


    class WrongType(Good):
        """Returns a string."""
        name = "mis-type"
        def _resample(self, ds, ctx):
            return "all fine"


    class WrongShape(Good):
        """Returns new rows of the wrong width."""
        name = "mis-shape"
        def _resample(self, ds, ctx):
            return one_more(ds, torch.zeros(1, ds.x.shape[1] + 1))


    class WrongDtype(Good):
        """Returns float64 rows."""
        name = "mis-dtype"
        def _resample(self, ds, ctx):
            return one_more(ds, ds.x[:1].double())


    class WrongDevice(Good):
        """Returns rows on the meta device (no data at all)."""
        name = "mis-device"
        def _resample(self, ds, ctx):
            return one_more(ds, ds.x[:1].to("meta"))


    class OutOfRange(Augmenter):
        """Returns images outside [0, 1]."""
        name = "mis-range"
        def _transform(self, x, y, params):
            return x * 3 + 1


    class NotFinite(Augmenter):
        """Returns NaN."""
        name = "mis-nan"
        def _transform(self, x, y, params):
            return x * math.nan


    class OtherDevice(Augmenter):
        """Returns a batch on the meta device."""
        name = "mis-aug-device"
        def _transform(self, x, y, params):
            return x.to("meta")


    class BadGenerator(Generator):
        """Samples images brighter than white."""
        name = "mis-gen-range"
        modalities = ("image",)
        def _fit(self, ds, ctx):
            pass
        def _sample(self, labels, ctx):
            return torch.full((len(labels), *self.row_shape), 2.0, device=ctx.device)


    class Float64Generator(BadGenerator):
        """Samples float64 rows."""
        name = "mis-gen-dtype"
        def _sample(self, labels, ctx):
            return torch.zeros((len(labels), *self.row_shape), dtype=torch.float64, device=ctx.device)


    class DictEvaluator(Evaluator):
        """Returns a dict instead of Metrics."""
        name = "mis-eval"
        def _evaluate(self, ectx):
            return {"accuracy": 1.0}


    class DictSource(Source):
        """Returns a dict instead of a Dataset."""
        name = "mis-source"
        def _load(self, ctx):
            return {"x": [1, 2, 3]}


    class Dropper(Preprocessor):
        """Drops half the rows in transform."""
        name = "mis-drop"
        modalities = ("tabular",)
        def _transform(self, ds):
            return ds[: len(ds) // 2]


    @hookimpl
    def setforge_register_resamplers():
        return [Good, BadInit, Crash, Data, WrongType, WrongShape, WrongDtype, WrongDevice]


    @hookimpl
    def setforge_register_augmenters():
        return [OutOfRange, NotFinite, OtherDevice]


    @hookimpl
    def setforge_register_generators():
        return [BadGenerator, Float64Generator]


    @hookimpl
    def setforge_register_evaluators():
        return [DictEvaluator]


    @hookimpl
    def setforge_register_sources():
        return [DictSource]


    @hookimpl
    def setforge_register_preprocessors():
        return [Dropper]


    @hookimpl
    def setforge_on_event(event):
        raise RuntimeError("the observer tripped over " + event.kind)
''')

MODULES = {
    "sfplug_mis_components": COMPONENTS,
    "sfplug_mis_import": "raise ImportError('needs libfoo, which is not installed')\n",
    "sfplug_mis_exit": "import sys\nsys.exit(3)\n",
    "sfplug_mis_hook": textwrap.dedent('''
        from setforge import hookimpl

        @hookimpl
        def setforge_register_augmenters():
            raise RuntimeError("boom in the hook")
    '''),
    "sfplug_mis_name": textwrap.dedent('''
        from setforge import Resampler, hookimpl

        class Shouting(Resampler):
            """A name that is not kebab-case."""
            name = "NOT_KEBAB"

        @hookimpl
        def setforge_register_resamplers():
            return [Shouting]
    '''),
}
ENTRY_POINTS = {"mis-components": "sfplug_mis_components", "mis-import": "sfplug_mis_import",
                "mis-exit": "sfplug_mis_exit", "mis-hook": "sfplug_mis_hook", "mis-name": "sfplug_mis_name"}
BROKEN = {"mis-import": "ImportError: needs libfoo", "mis-exit": "SystemExit: 3", "mis-hook": "boom in the hook",
          "mis-name": "must be kebab-case"}


@pytest.fixture
def mischief(tmp_path, monkeypatch) -> Path:
    root = make_distribution(tmp_path / "dist", "setforge-mischief", "6.6.6", ENTRY_POINTS, MODULES)
    install(monkeypatch, root)
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(folder: Path, capsys, extra: list[str] = (), **config: Any) -> tuple[int, str]:
    data = {"seed": 0, "device": "cpu", "source": "sklearn-wine", "split": {"test": 0.2, "val": 0.0},
            "evaluate": [], "output": {"dir": str(folder / "out"), "force": True}, **config}
    (folder / "run.yaml").write_text(yaml.safe_dump(data))
    code = main(["run", str(folder / "run.yaml"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


IMAGES = {"name": "sklearn-digits", "params": {"imbalance": 5}}
CASES = [
    # (what, run-file changes, exit code, words in the message)
    ("raises in __init__", {"pipeline": [{"resample": "mis-init"}]}, 4,
     ["resample 'mis-init'", "failed in __init__", "ValueError: cannot start without a licence key"]),
    ("raises mid-step", {"pipeline": [{"resample": "mis-crash"}]}, 4,
     ["resample 'mis-crash'", "failed in resample", "ZeroDivisionError"]),
    ("raises a DataError", {"pipeline": [{"resample": "mis-data"}]}, 3,
     ["resample 'mis-data'", "class '2' is too small"]),
    ("returns the wrong type", {"pipeline": [{"resample": "mis-type"}]}, 4,
     ["resample 'mis-type'", "must return (kept_index, new_x, new_y, new_parent)"]),
    ("returns the wrong shape", {"pipeline": [{"resample": "mis-shape"}]}, 4,
     ["resample 'mis-shape'", "(1, 14)", "expected (1, 13) float32"]),
    ("returns the wrong dtype", {"pipeline": [{"resample": "mis-dtype"}]}, 4,
     ["resample 'mis-dtype'", "torch.float64", "float32"]),
    ("returns rows on another device", {"pipeline": [{"resample": "mis-device"}]}, 4,
     ["resample 'mis-device'", "meta"]),
    ("augments out of range", {"source": IMAGES, "pipeline": [{"augment": "mis-range"}]}, 4,
     ["augment 'mis-range'", "outside [0, 1]"]),
    ("augments to NaN", {"source": IMAGES, "pipeline": [{"augment": "mis-nan"}]}, 4,
     ["augment 'mis-nan'", "NaN or infinite"]),
    ("augments onto another device", {"source": IMAGES, "pipeline": [{"augment": "mis-aug-device"}]}, 4,
     ["augment 'mis-aug-device'", "on meta, expected", "on cpu"]),
    ("generates out of range", {"source": IMAGES, "pipeline": [{"generate": "mis-gen-range"}]}, 4,
     ["generate 'mis-gen-range'", "invalid rows", "[0, 1]"]),
    ("generates float64", {"source": IMAGES, "pipeline": [{"generate": "mis-gen-dtype"}]}, 4,
     ["generate 'mis-gen-dtype'", "torch.float64", "float32"]),
    ("evaluates to a dict", {"evaluate": ["mis-eval"]}, 4, ["evaluate 'mis-eval'", "not Metrics"]),
    ("loads a dict", {"source": "mis-source"}, 4, ["source 'mis-source'", "not a Dataset or Splits"]),
    ("preprocesses rows away", {"preprocess": ["mis-drop"]}, 4, ["preprocess 'mis-drop'", "must keep every row"]),
]


@pytest.mark.parametrize("what, changes, code, words", CASES, ids=[c[0] for c in CASES])
def test_a_misbehaving_component_is_named_with_its_distribution(mischief, capsys, what, changes, code, words):
    got, err = run(mischief, capsys, **changes)
    assert got == code, err
    assert err.startswith("setforge: " + ("bad data" if code == 3 else "plugin failure") + ": "), err
    for word in [*words, "plugin 'mis-components'", DIST]:
        assert word in err, (word, err)
    assert not (mischief / "out").exists()
    # the engine, the same distribution's good component and the built-ins go on working, in this process
    good, err = run(mischief, capsys, pipeline=[{"resample": "mis-good"}, {"resample": "random-over"}],
                    evaluate=["balance"])
    assert good == 0, err
    report = json.loads((mischief / "out" / "report.json").read_text())
    assert any("the observer tripped over" in w and "mis-components" in w for w in report["warnings"])


def test_plugins_list_shows_each_failure_with_its_distribution(mischief, capsys):
    assert main(["plugins", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    status = {row["plugin"]: row for row in rows if row["name"] == "-"}
    for plugin, words in BROKEN.items():
        assert status[plugin]["distribution"] == "setforge-mischief" and status[plugin]["version"] == "6.6.6"
        assert status[plugin]["status"].startswith("broken") and words in status[plugin]["status"], status[plugin]
    names = {(row["kind"], row["name"]) for row in rows if row["status"] == "ok"}
    assert {("resample", "mis-good"), ("resample", "smote"), ("generate", "dcgan")} <= names
    assert main(["plugins", "list"]) == 0
    table = capsys.readouterr().out
    assert "mis-import" in table and "broken: failed to import: ImportError" in table


def test_a_name_from_a_broken_plugin_points_to_plugins_list(mischief, capsys):
    code, err = run(mischief, capsys, pipeline=[{"augment": "from-the-broken-hook"}])
    assert code == 2
    assert "pipeline[0].augment" in err and "mis-hook" in err and "setforge plugins list" in err


def test_strict_makes_a_broken_plugin_fatal_unless_it_is_denied(mischief, capsys):
    code, err = run(mischief, capsys, ["--strict"], pipeline=[{"resample": "mis-good"}])
    assert code == 4 and "setforge-mischief 6.6.6" in err and "mis-import" in err, err
    code, err = run(mischief, capsys, ["--strict"], pipeline=[{"resample": "mis-good"}],
                    plugins_deny=["mis-import", "mis-exit", "mis-hook", "mis-name"])
    assert code == 0, err


def test_plugins_allow_loads_only_the_named_third_party_plugins(mischief, capsys):
    code, err = run(mischief, capsys, ["--strict"], pipeline=[{"resample": "mis-good"}, {"resample": "smote"}],
                    plugins_allow=["mis-components"])
    assert code == 0, err  # the broken ones were never imported; the built-ins always load
    code, err = run(mischief, capsys, pipeline=[{"resample": "mis-good"}], plugins_allow=[])
    assert code == 2 and "unknown resample 'mis-good'" in err, err


def test_setforge_disable_plugins_and_dash_p_no(mischief, capsys, monkeypatch):
    monkeypatch.setenv("SETFORGE_DISABLE_PLUGINS", "mis-import, mis-exit,mis-hook")
    registry = Registry().load()
    assert {name: registry.plugins[name].status for name in ("mis-import", "mis-exit", "mis-hook", "mis-name")} == \
        {"mis-import": "disabled", "mis-exit": "disabled", "mis-hook": "disabled", "mis-name": "broken"}
    code, err = run(mischief, capsys, ["--strict", "-p", "no:mis-name"], pipeline=[{"resample": "mis-good"}])
    assert code == 0, err
    monkeypatch.setenv("SETFORGE_DISABLE_PLUGINS", "mis-components")
    code, err = run(mischief, capsys, pipeline=[{"resample": "mis-good"}])
    assert code == 2 and "unknown resample 'mis-good'" in err
