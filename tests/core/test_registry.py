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


FORMATS_HOOK_RAISES = TOYS_SOURCE.replace("toy-", "fmt-") + textwrap.dedent('''
    @hookimpl
    def setforge_register_formats():
        raise RuntimeError("boom in the formats hook")
''')


def test_a_plugin_broken_by_its_formats_hook_registers_no_component(tmp_path, monkeypatch):
    # (found by an audit: it was listed as broken while its components stayed usable)
    root = make_distribution(tmp_path / "fmt", "setforge-fmt", "0.2", {"fmt": "sfplug_fmt"},
                             {"sfplug_fmt": FORMATS_HOOK_RAISES})
    install(monkeypatch, root)
    registry = Registry().load()
    assert registry.plugins["fmt"].status == "broken" and "boom in the formats hook" in registry.plugins["fmt"].error
    assert not [info.name for info in registry.components() if info.plugin == "fmt"]
    with pytest.raises(ConfigError, match="unknown augment 'fmt-brighten'.*failed to load: fmt"):
        registry.get("augment", "fmt-brighten")


def test_a_broken_plugin_receives_no_events(tmp_path, monkeypatch):
    # (found by an audit: a plugin skipped for its failing register hook still observed every run)
    (tmp_path / "sfplug_half_broken.py").write_text(textwrap.dedent('''
        from setforge import hookimpl
        SEEN = []

        @hookimpl
        def setforge_on_event(event):
            SEEN.append(event.kind)

        @hookimpl
        def setforge_register_augmenters():
            raise RuntimeError("boom in the hook")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(local=["sfplug_half_broken"]).load()
    assert registry.plugins["sfplug_half_broken"].status == "broken"
    assert registry.emit(setforge.Event("run_started")) == []
    import sfplug_half_broken

    assert sfplug_half_broken.SEEN == []
    assert registry.providers("setforge_on_event") == []


def test_two_local_plugin_files_of_one_name_are_not_silently_merged(tmp_path):
    # (found by an audit: the second file was dropped without a word, its components "unknown")
    for folder, prefix in (("a", "aa-"), ("b", "bb-")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "extra.py").write_text(TOYS_SOURCE.replace("toy-", prefix))
    registry = Registry(local=["a/extra.py", "b/extra.py"], base_dir=tmp_path).load()
    assert registry.get("augment", "aa-brighten").plugin == "extra"
    (clash,) = [p for p in registry.plugins.values() if p.status == "broken"]
    assert "b/extra.py" in clash.name and "'extra' is also used by plugin 'extra' (local -)" in clash.error
    with pytest.raises(ConfigError, match="unknown augment 'bb-brighten'.*failed to load: extra \\(b/extra.py\\)"):
        registry.get("augment", "bb-brighten")
    with pytest.raises(PluginError, match="b/extra.py"):
        Registry(local=["a/extra.py", "b/extra.py"], base_dir=tmp_path, strict=True).load()
    # the same plugin named twice (a run file's plugins and -p, by another path) loads once, without a word
    twice = Registry(local=["a/extra.py", str(tmp_path / "a" / "extra.py")], base_dir=tmp_path).load()
    assert [p.status for p in twice.plugins.values() if p.distribution == "local"] == ["ok"]


def test_plugins_list_shows_an_output_format_registered_twice(tmp_path, capsys):
    # (found by an audit: a plugin's format `csv` hid the built-in csv without a word: validate said
    # "unknown format 'csv'" and `plugins list` showed nothing)
    (tmp_path / "sfplug_csv_again.py").write_text(textwrap.dedent('''
        from setforge import hookimpl
        from setforge.formats import Format

        @hookimpl
        def setforge_register_formats():
            return [Format(name="csv", write=lambda *args, **kwargs: [], read=lambda *args: None)]
    '''))
    plugin = str(tmp_path / "sfplug_csv_again.py")
    registry = Registry(local=[plugin]).load()
    assert "csv" not in registry.formats()
    assert sorted(c.name for c in registry.conflicts()[("format", "csv")]) == ["builtin-output", "sfplug_csv_again"]
    assert main(["plugins", "list", "--json", "-p", plugin]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["kind"] == "format" and r["name"] == "csv"]
    assert sorted((r["name"], r["plugin"], r["distribution"]) for r in rows) == [
        ("csv", "builtin-output", "setforge"), ("csv", "sfplug_csv_again", "local")]
    assert all(r["status"].startswith("conflict") for r in rows)
    from setforge.checks import format_problems

    [(place, message)] = format_problems("csv", registry)  # (it said "unknown format 'csv'")
    assert place == "output.format" and message.startswith("'csv' is registered by ") and message.endswith("disable one")
    assert f"plugin 'builtin-output' (setforge {setforge.__version__})" in message and "plugin 'sfplug_csv_again'" in message
    assert format_problems("npz", registry) == [] and "unknown format 'parquet'" in format_problems("parquet", registry)[0][1]


_SECOND_FLIP = '''
from setforge import Augmenter, hookimpl


class FlipAgain(Augmenter):
    """Another flip."""
    name = "flip"

    def _transform(self, x, y, params):
        return x.flip(-1)


@hookimpl
def setforge_register_augmenters():
    return [FlipAgain]
'''


def _second_flip(path):
    """A local plugin file registering a second augmenter named flip (the built-in's name)."""
    path.write_text(_SECOND_FLIP)


def test_plugins_show_of_a_name_two_plugins_register_names_both(tmp_path, capsys):
    # (found by an audit: `plugins show flip` said "no component named 'flip'" while two plugins had one)
    _second_flip(tmp_path / "sfplug_flip_again.py")
    assert main(["plugins", "show", "flip", "-p", str(tmp_path / "sfplug_flip_again.py")]) == 4
    err = capsys.readouterr().err
    assert "augment 'flip' is registered by" in err and "'sfplug_flip_again' (local -)" in err
    assert "plugin 'builtin-augment' (setforge" in err


def test_a_name_two_plugins_register_names_the_plugins_to_disable(tmp_path, capsys):
    # (found by an audit: validate said "... disable one (-p no:NAME)", and `-p no:flip` disables nothing)
    _second_flip(tmp_path / "sfplug_flip_twice.py")
    run_file = tmp_path / "run.yaml"
    run_file.write_text("plugins: [sfplug_flip_twice.py]\nsource: sklearn-digits\npipeline: [{augment: flip}]\n")
    assert main(["validate", str(run_file)]) == 4
    err = capsys.readouterr().err
    assert "augment 'flip' is registered by" in err
    assert any(f"(-p no:{a} or -p no:{b}, or plugins_deny in the run file)" in err
               for a, b in [("sfplug_flip_twice", "builtin-augment"), ("builtin-augment", "sfplug_flip_twice")])
    assert main(["validate", str(run_file), "-p", "no:sfplug_flip_twice"]) == 0


def test_a_component_whose_params_are_not_its_bases_params_is_broken(tmp_path, capsys):
    # (found by an audit: a plain `class Params:` registered fine, then `plugins show` and `validate`
    # ended in a traceback, exit 1)
    (tmp_path / "sfplug_plain_params.py").write_text(textwrap.dedent('''
        from setforge import Augmenter, hookimpl

        class PlainParams(Augmenter):
            """Its Params forgot the base."""
            name = "plain-params"

            class Params:
                p: float = 0.5

            def _transform(self, x, y, params):
                return x

        @hookimpl
        def setforge_register_augmenters():
            return [PlainParams]
    '''))
    registry = Registry(local=[str(tmp_path / "sfplug_plain_params.py")]).load()
    info = registry.plugins["sfplug_plain_params"]
    assert info.status == "broken" and "PlainParams.Params must subclass Augmenter.Params" in info.error
    assert "plain-params" not in registry.names("augment")
    assert main(["plugins", "show", "plain-params", "-p", str(tmp_path / "sfplug_plain_params.py")]) == 2
    assert "no component named 'plain-params' (plugins that failed to load: sfplug_plain_params;" in \
        capsys.readouterr().err


def test_an_unknown_name_points_at_the_plugins_disabled_here():
    # (found by a user-journey audit: a plugin left out by -p no:, plugins_deny or plugins_allow
    # made its components "unknown" with no hint why)
    registry = Registry(disabled=["builtin-augment"], use_env=False).load()
    with pytest.raises(ConfigError, match=r"unknown augment 'flip'.*\(plugins disabled here: builtin-augment\)"):
        registry.get("augment", "flip")
    assert "disabled here" not in Registry(use_env=False).load().unknown_message("augment", "nope")
