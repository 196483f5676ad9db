import json
import textwrap

import pytest

import setforge
from setforge import ConfigError, DataError, PluginError
from setforge.tools.cli import main
from setforge.registry import Registry
from tests.core.plugin_dists import install, make_distribution
from tests.core.toys import TOYS_SOURCE

BROKEN_IMPORT = "raise ImportError('needs a library that is not installed')\n"
BROKEN_HOOK = textwrap.dedent('''
    from setforge import hookimpl

    @hookimpl
    def setforge_register_augmenters():
        raise RuntimeError("boom in the hook")
''')
NOT_A_CLASS = textwrap.dedent('''
    from setforge import hookimpl

    @hookimpl
    def setforge_register_resamplers():
        return ["smote"]
''')
CLASHING = TOYS_SOURCE.replace('"Samples the class mean plus noise."', '"Another class mean."')


@pytest.fixture
def good(tmp_path, monkeypatch):
    root = make_distribution(tmp_path / "good", "setforge-toys", "1.2.3", {"toys": "sfplug_toys"},
                             {"sfplug_toys": TOYS_SOURCE})
    install(monkeypatch, root)
    return root


@pytest.fixture
def broken(tmp_path, monkeypatch):
    root = make_distribution(tmp_path / "broken", "setforge-broken", "0.0.1",
                             {"bad-import": "sfplug_bad_import", "bad-hook": "sfplug_bad_hook",
                              "not-a-class": "sfplug_not_a_class"},
                             {"sfplug_bad_import": BROKEN_IMPORT, "sfplug_bad_hook": BROKEN_HOOK,
                              "sfplug_not_a_class": NOT_A_CLASS})
    install(monkeypatch, root)
    return root


def test_third_party_components_are_listed_and_built(good):
    registry = Registry().load()
    info = registry.get("augment", "toy-brighten")
    assert (info.plugin, info.distribution, info.version) == ("toys", "setforge-toys", "1.2.3")
    augmenter = registry.create("augment", "toy-brighten", {"amount": 0.3})
    assert augmenter.params.amount == 0.3
    assert registry.create("generate", "toy-class-mean").name == "toy-class-mean"
    assert registry.create("evaluate", "toy-row-count").name == "toy-row-count"
    assert registry.plugins["builtin-augment"].distribution == "setforge"


def test_setforge_create_uses_installed_plugins(good, monkeypatch):
    monkeypatch.setattr("setforge.registry._DEFAULT", None)
    assert setforge.create("augment", "toy-brighten", {"p": 0.5}).params.p == 0.5
    monkeypatch.setattr("setforge.registry._DEFAULT", None)


def test_broken_plugins_are_listed_while_the_rest_work(good, broken):
    registry = Registry().load()
    status = {name: (p.status, p.error) for name, p in registry.plugins.items()}
    assert status["bad-import"][0] == "broken" and "needs a library" in status["bad-import"][1]
    assert status["bad-hook"][0] == "broken" and "boom in the hook" in status["bad-hook"][1]
    assert status["not-a-class"][0] == "broken" and "not a subclass" in status["not-a-class"][1]
    assert status["toys"] == ("ok", None)
    assert registry.create("augment", "toy-brighten")


def test_strict_makes_a_broken_plugin_fatal(good, broken, capsys):
    with pytest.raises(PluginError, match="bad-import"):
        Registry(strict=True).load()
    assert main(["plugins", "list", "--strict"]) == 4
    assert "setforge-broken" in capsys.readouterr().err


def test_plugins_list_json(good, broken, capsys):
    assert main(["plugins", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(set(row) == {"kind", "name", "plugin", "distribution", "version", "status"} for row in rows)
    toy = next(r for r in rows if r["name"] == "toy-brighten")
    assert toy == {"kind": "augment", "name": "toy-brighten", "plugin": "toys", "distribution": "setforge-toys",
                   "version": "1.2.3", "status": "ok"}
    assert any(r["plugin"] == "bad-hook" and r["status"].startswith("broken") for r in rows)


def test_plugins_show_prints_params(good, capsys):
    assert main(["plugins", "show", "augment/toy-brighten"]) == 0
    out = capsys.readouterr().out
    assert "Adds a per-row random amount of brightness." in out
    assert "amount: number = 0.2  [>= 0.0, <= 1.0]" in out  # the type in the reference docs' words
    assert "p: number = 1.0" in out
    assert main(["plugins", "show", "toy-brightn"]) == 2
    assert "did you mean 'toy-brighten'" in capsys.readouterr().err


def test_unknown_names_suggest_the_closest(good):
    registry = Registry().load()
    with pytest.raises(ConfigError, match="did you mean 'toy-brighten'") as error:
        registry.get("augment", "toy-brigten", place="pipeline[0].augment")
    assert error.value.problems[0][0] == "pipeline[0].augment"
    with pytest.raises(ConfigError, match="unknown kind"):
        registry.get("augmenter", "x")


def test_duplicate_names_name_both_distributions(good, tmp_path, monkeypatch):
    other = make_distribution(tmp_path / "other", "setforge-clash", "9.9", {"clash": "sfplug_clash"},
                              {"sfplug_clash": CLASHING})
    monkeypatch.syspath_prepend(str(other))
    registry = Registry().load()
    with pytest.raises(PluginError, match="setforge-toys 1.2.3.*setforge-clash 9.9|setforge-clash 9.9.*setforge-toys"):
        registry.get("augment", "toy-brighten")


def test_blocking_and_allowing(good, monkeypatch):
    assert Registry(disabled=["toys"]).load().plugins["toys"].status == "disabled"
    assert "toy-brighten" not in Registry(disabled=["toys"]).load().names("augment")
    monkeypatch.setenv("SETFORGE_DISABLE_PLUGINS", "toys, other")
    assert Registry().load().plugins["toys"].status == "disabled"
    monkeypatch.delenv("SETFORGE_DISABLE_PLUGINS")
    allowed = Registry(allow=["something-else"]).load()
    assert allowed.plugins["toys"].status == "disabled"
    assert allowed.plugins["builtin-augment"].status == "ok"  # built-ins load unless denied


def test_local_plugins_by_module_and_file(tmp_path, monkeypatch):
    (tmp_path / "sfplug_local.py").write_text(TOYS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = Registry(local=["sfplug_local"]).load()
    assert by_module.get("augment", "toy-brighten").distribution == "local"
    by_file = Registry(local=["sfplug_local.py"], base_dir=tmp_path).load()
    assert by_file.get("evaluate", "toy-row-count").plugin == "sfplug_local"
    with pytest.raises(ConfigError, match="does not exist"):
        Registry(local=["missing.py"], base_dir=tmp_path).load()


def test_guard_names_the_plugin_and_maps_errors(good):
    registry = Registry().load()
    component = registry.create("augment", "toy-brighten")
    with pytest.raises(DataError, match=r"augment 'toy-brighten' \(plugin 'toys', setforge-toys 1.2.3\): class 3"):
        with registry.guard(component, "augment"):
            raise DataError("class 3 is too small")
    with pytest.raises(PluginError, match="setforge-toys 1.2.3.*failed in augment: ZeroDivisionError"):
        with registry.guard(component, "augment"):
            1 / 0


def test_events_reach_observers_and_failures_do_not_stop(tmp_path, monkeypatch):
    (tmp_path / "sfplug_observer.py").write_text(textwrap.dedent('''
        from setforge import hookimpl
        SEEN = []

        @hookimpl
        def setforge_on_event(event):
            SEEN.append(event.kind)
            if event.kind == "run_finished":
                raise RuntimeError("observer bug")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(local=["sfplug_observer"]).load()
    assert registry.emit(setforge.Event("run_started")) == []
    failures = registry.emit(setforge.Event("run_finished"))
    import sfplug_observer

    assert sfplug_observer.SEEN == ["run_started", "run_finished"]
    assert "observer bug" in failures[0]


def test_registration_hooks_each_load(good):
    registry = Registry().load()
    kinds = {info.kind for info in registry.components() if info.plugin == "toys"}
    assert kinds == {"augment", "generate", "evaluate"}
    assert registry.hook_names() == sorted([
        "setforge_find_duplicates", "setforge_find_leaked", "setforge_register_formats", "setforge_on_event",
        "setforge_register_augmenters", "setforge_register_evaluators", "setforge_register_generators",
        "setforge_register_observers", "setforge_register_preprocessors", "setforge_register_resamplers",
        "setforge_register_sources", "setforge_score_generated"])


def test_source_preprocessor_and_resampler_hooks(tmp_path, monkeypatch):
    (tmp_path / "sfplug_more.py").write_text(textwrap.dedent('''
        import torch
        from setforge import Dataset, Source, hookimpl
        from tests.core.toys import Duplicate, Scale

        class Ramp(Source):
            """Three rows of a ramp."""

            name = "toy-ramp"
            modalities = ("tabular",)

            def _load(self, ctx):
                return Dataset(x=torch.arange(6.0).view(3, 2), y=torch.tensor([0, 1, 1]), classes=("a", "b"),
                               modality="tabular")

        @hookimpl
        def setforge_register_sources():
            return [Ramp]

        @hookimpl
        def setforge_register_preprocessors():
            return [Scale]

        @hookimpl
        def setforge_register_resamplers():
            return [Duplicate]
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(local=["sfplug_more"]).load()
    source = registry.create("source", "toy-ramp")
    ds = source.load(setforge.StepContext.from_seed(0))
    assert ds.class_counts() == [1, 2]
    assert registry.create("preprocess", "toy-scale").changes_units
    assert len(registry.create("resample", "toy-duplicate").resample(ds, setforge.StepContext.from_seed(0))) == 5
