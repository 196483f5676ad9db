"""Run-file models, loading, overrides, component checks, the resolved dump, the JSON Schema and
the generated key reference (setforge.config), through the Python API."""

from __future__ import annotations

import copy
import importlib.metadata
import json
from pathlib import Path
from typing import Annotated, Literal

import jsonschema
import pydantic
import pytest
import yaml
from pydantic import Field

from setforge import ConfigError, Registry
from setforge.components import Generator
from setforge.checks import check_components, load_and_check
from setforge.config import RunConfig, StepConfig
from setforge.runfile import apply_overrides, load_run_config
from setforge.tools.dump import dump_resolved
from setforge.tools.docgen import reference_markdown
from setforge.tools.schema import run_file_schema

from ._run_files import GOOD, PLUGIN, folder, isolated  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]


def registry_for(config) -> Registry:
    return Registry(local=list(config.plugins), disabled=list(config.plugins_deny), allow=config.plugins_allow,
                    base_dir=config.base_dir).load()


def places(error: ConfigError) -> list[str]:
    return [place for place, _ in error.problems]


def write(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def load_checked(path: Path, overrides=()):
    return load_and_check(path, overrides, registry_for)


# ------------------------------------------------------------------------------- models
def test_defaults_fill_every_key_but_source():
    config = RunConfig.model_validate({"source": "digits"})
    assert config.seed == 0 and config.device == "auto"
    assert config.source.name == "digits" and config.source.params == {}
    assert config.source.deduplicate.method == "none" and config.source.on_invalid == "error"
    assert (config.split.test, config.split.val) == (0.2, 0.1)
    assert config.preprocess == [] and config.pipeline == [] and config.evaluate == []
    assert config.output.dir == "runs/run" and config.output.format == "npz"


def test_empty_lists_may_be_null():
    config = RunConfig.model_validate({"source": "s", "pipeline": None, "preprocess": None, "evaluate": None})
    assert config.pipeline == [] and config.preprocess == [] and config.evaluate == []


def test_step_defaults_per_kind():
    augment = StepConfig(augment="flip")
    assert augment.kind == "augment" and augment.copies == 1 and not augment.is_chain
    generate = StepConfig(generate="gan")
    assert generate.target == "balance"  # the default amount
    chain = StepConfig(augment=["flip", {"name": "affine", "params": {"degrees": 3}}])
    assert chain.is_chain and [r.name for r in chain.component_refs()] == ["flip", "affine"]
    assert chain.component_refs()[1].params == {"degrees": 3}


def test_deduplicate_shorthand():
    config = RunConfig.model_validate({"source": {"name": "s", "deduplicate": "near"}})
    assert config.source.deduplicate.method == "near" and config.source.deduplicate.threshold == 0.05


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
def test_seed_range_accepts(seed):
    assert RunConfig.model_validate({"source": "s", "seed": seed}).seed == seed


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "3", None])
def test_seed_range_rejects(seed):
    with pytest.raises(pydantic.ValidationError) as caught:
        RunConfig.model_validate({"source": "s", "seed": seed})
    assert [e["loc"][0] for e in caught.value.errors()] == ["seed"]


@pytest.mark.parametrize("device,ok", [("auto", True), ("cpu", True), ("cuda", True), ("cuda:1", True),
                                       ("gpu", False), ("cuda:", False), ("CPU", False)])
def test_device(device, ok):
    if ok:
        assert RunConfig.model_validate({"source": "s", "device": device}).device == device
    else:
        with pytest.raises(pydantic.ValidationError) as caught:
            RunConfig.model_validate({"source": "s", "device": device})
        assert [e["loc"][0] for e in caught.value.errors()] == ["device"]


# ------------------------------------------------------------------------------ loading
def test_load_resolves_base_dir_and_keeps_output_dir(folder):
    config = load_run_config(write(folder, GOOD))
    assert config.base_dir == folder.resolve()
    assert config.output.dir == "runs/x"  # relative to the current folder: left as given


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".toml", ".json"])
def test_the_same_run_in_every_format(folder, suffix):
    data = yaml.safe_load(GOOD)
    if suffix == ".toml":
        text = _to_toml(data)
    elif suffix == ".json":
        text = json.dumps(data)
    else:
        text = GOOD
    config, _ = load_checked(write(folder, text, "run" + suffix))
    reference, _ = load_checked(write(folder, GOOD, "reference.yaml"))
    assert config.model_dump() == reference.model_dump()


def _to_toml(data: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
    return "\n".join(f"{k} = {value(v)}" for k, v in data.items()) + "\n"


@pytest.mark.parametrize("name,content,where,words", [
    ("run.ini", "seed = 1", "run.ini", "unknown run file format"),
    ("run.yaml", "", "run.yaml", "empty"),
    ("run.yaml", "# only a comment\n", "run.yaml", "no settings"),
    ("run.yaml", "seed: [1\n", "run.yaml:2:1", "invalid YAML"),
    ("run.yaml", "- 1\n- 2\n", "run.yaml", "must be a mapping"),
    ("run.yaml", "seed: 1\nseed: 2\n", "run.yaml:2:1", "duplicate key 'seed'"),
    ("run.toml", "seed = \n", "run.toml:1:8", "invalid TOML"),
    ("run.json", '{"seed": 1,}', "run.json:1:12", "invalid JSON"),
    ("run.json", '{"seed": 1, "seed": 2}', "run.json", "duplicate key 'seed'"),
])
def test_unreadable_files_name_the_file(folder, name, content, where, words):
    path = write(folder, content, name)
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    [(place, message)] = caught.value.problems
    assert place == str(folder / where)
    assert words in message


def test_binary_and_non_utf8_files(folder):
    for name, data in [("nul.yaml", b"seed: 1\x00\x01\x02"), ("latin.yaml", b"seed: \xff\xfe")]:
        path = folder / name
        path.write_bytes(data)
        with pytest.raises(ConfigError) as caught:
            load_run_config(path)
        assert caught.value.problems[0][0] == str(path)
        assert "binary" in caught.value.problems[0][1]


def test_yaml_python_tag_is_refused_and_never_runs(folder):
    marker = folder / "PWNED"
    path = write(folder, f'source: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert "safe loading" in caught.value.problems[0][1]
    assert not marker.exists()


def test_yaml_anchors_and_merge_keys_work(folder):
    text = GOOD + "x_defaults: &d {degrees: 7}\n"
    path = write(folder, text.replace("x_defaults", "pipeline_defaults"))
    with pytest.raises(ConfigError):  # an unknown key is still one
        load_run_config(path)
    text = GOOD.replace("params: {degrees: 10}", "params: &p {degrees: 10}").replace(
        "params: {degrees: 5}", "params: {<<: *p, degrees: 5}")
    config = load_run_config(write(folder, text))
    assert config.pipeline[0].params == {"degrees": 10}
    assert config.pipeline[1].augment[1].params == {"degrees": 5}


def test_yaml_alias_bomb_is_refused_quickly(folder):
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = write(folder, "\n".join(lines) + "\nseed: *a8\nsource: x\n")
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert "aliases" in caught.value.problems[0][1]


def test_recursive_alias_and_deep_nesting(folder):
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, "source: {name: s, params: &a {x: *a}}\n"))
    assert places(caught.value) == ["source.params.x"]
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, "[" * 100_000 + "]" * 100_000, "deep.json"))
    assert "nested too deeply" in caught.value.problems[0][1]


def test_all_model_problems_at_once_in_file_order(folder):
    text = ("outptu: {}\nseed: -1\nsplit: {test: 0.7, val: 0.4}\nsource: {name: s, on_invalid: skip}\n"
            "pipeline:\n  - {augment: a, resample: b}\n  - {resample: r, copies: 2}\n")
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, text))
    assert places(caught.value) == ["seed", "source.on_invalid", "split", "pipeline[0]", "pipeline[1].copies",
                                    "outptu"]


@pytest.mark.parametrize("text", ["seed: .nan", "seed: .inf", "split: {test: .nan}", "source: {name: s, params: {x: -.inf}}",
                                  "source: {name: s, deduplicate: {method: near, threshold: .nan}}"])
def test_non_finite_numbers_are_refused(folder, text):
    raw = yaml.safe_load(text)
    raw.setdefault("source", "s")
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, yaml.safe_dump(raw)))
    assert any("finite" in message for _, message in caught.value.problems)
    assert len(caught.value.problems) == 1  # one problem per value, not one per checker


def test_json_nan_and_infinity(folder):
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, '{"source": "s", "seed": NaN, "split": {"val": Infinity}}', "run.json"))
    assert places(caught.value) == ["seed", "split.val"]


def test_wrong_types_are_not_coerced(folder):
    text = "source: s\nsplit: {test: '0.2', stratify: 'yes'}\npipeline: [{augment: a, copies: true}]\n"
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, text))
    assert places(caught.value) == ["split.test", "split.stratify", "pipeline[0].copies"]


def test_union_errors_fold_into_one_problem(folder):
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, "source: s\npipeline: [{augment: 5}]\n"))
    [(place, message)] = caught.value.problems
    assert place == "pipeline[0].augment" and "augmenter name" in message and "5" in message
    with pytest.raises(ConfigError) as caught:
        load_run_config(write(folder, "source: s\npipeline: [{augment: [a, {nam: b}]}]\n"))
    assert places(caught.value) == ["pipeline[0].augment[1].name", "pipeline[0].augment[1].nam"]


class _Budgeted(Generator):
    name = "budgeted"

    class Params(Generator.Params):
        steps: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
        lr: float = 1e-3


def test_a_component_params_union_is_one_problem_naming_every_branch():
    with pytest.raises(ConfigError) as caught:
        _Budgeted.parse_params({"steps": -3, "lr": "fast"}, place="pipeline[0].params")
    assert caught.value.problems == [
        ("pipeline[0].params.steps", "Input should be greater than or equal to 1 or 'auto' (given: -3)"),
        ("pipeline[0].params.lr", "Input should be a valid number, unable to parse string as a number (given: 'fast')"),
    ]


# ---------------------------------------------------------------------------- overrides
def test_overrides_set_values_as_yaml_scalars():
    raw = {"source": "s", "pipeline": [{"generate": "g", "params": {"epochs": 30}}]}
    new, problems, applied = apply_overrides(raw, ["seed=3", "pipeline[0].params.epochs=5", "output.dir=runs/y",
                                                   "split.stratify=false", "evaluate=[a, {name: b}]",
                                                   "source.params.path=data x.csv", "pipeline[0].classes=null"])
    assert problems == []
    assert new["seed"] == 3 and new["pipeline"][0]["params"]["epochs"] == 5
    assert new["output"] == {"dir": "runs/y"} and new["split"] == {"stratify": False}
    assert new["evaluate"] == ["a", {"name": "b"}]
    assert new["source"] == {"name": "s", "params": {"path": "data x.csv"}}  # the shorthand expanded
    assert new["pipeline"][0]["classes"] is None
    assert raw["pipeline"][0]["params"]["epochs"] == 30  # the input is left alone
    assert set(applied) == {"seed", "pipeline[0].params.epochs", "output.dir", "split.stratify", "evaluate",
                            "source.params.path", "pipeline[0].classes"}


def test_a_plus_index_appends_to_a_list_even_an_absent_one():
    raw = {"source": "s", "pipeline": [{"generate": "g"}]}
    new, problems, applied = apply_overrides(raw, ["observe[+]=tb", "observe[+]={name: x, params: {a: 1}}",
                                                   "pipeline[+].augment=flip", "pipeline[1].copies=2"])
    assert problems == []
    assert new["observe"] == ["tb", {"name": "x", "params": {"a": 1}}]
    assert new["pipeline"] == [{"generate": "g"}, {"augment": "flip", "copies": 2}]
    assert set(applied) == {"observe[0]", "observe[1]", "pipeline[1].augment", "pipeline[1].copies"}
    assert raw == {"source": "s", "pipeline": [{"generate": "g"}]}


@pytest.mark.parametrize("override,words", [
    ("outptu.dir=x", "did you mean 'output'"),
    ("pipeline[5].params.epochs=1", "nearest valid path: pipeline[0]"),
    ("pipeline[0].parms.epochs=1", "(did you mean 'pipeline[0].params'?); nearest valid path: pipeline[0]"),
    ("seed.x=1", "nearest valid path: seed"),
    ("evaluate[0].params.k=1", "evaluate is an empty list"),
    ("pipeline[0].generate.params=1", "nearest valid path: pipeline[0].generate"),
    ("seed", "expected PATH=VALUE"),
    ("pipeline..x=1", "cannot read the path"),
    ("[0]=1", "cannot read the path"),
    ("seed=[1", "cannot parse the value"),
    ("seed=!!python/object/apply:os.system [ls]", "cannot parse the value"),
])
def test_bad_override_paths_name_the_nearest_valid_one(override, words):
    raw = {"source": "s", "pipeline": [{"generate": "g"}], "evaluate": []}
    _, problems, _ = apply_overrides(raw, [override])
    [(place, message)] = problems
    assert place.startswith("--set ")
    assert words in message


def test_override_of_a_shared_yaml_alias_changes_one_place(folder):
    text = GOOD.replace("params: {degrees: 10}", "params: &p {degrees: 10}").replace(
        "params: {degrees: 5}", "params: *p")
    config = load_run_config(write(folder, text), overrides=["pipeline[1].augment[1].params.degrees=20"])
    assert config.pipeline[0].params == {"degrees": 10}
    assert config.pipeline[1].augment[1].params == {"degrees": 20}


def test_override_problems_name_the_set(folder):
    with pytest.raises(ConfigError) as caught:
        load_checked(write(folder, GOOD), ["seed=-1", "pipeline[3].params.epochs=0", "nope=1"])
    messages = dict(caught.value.problems)
    assert "(from --set seed=-1)" in messages["seed"]
    assert "(from --set pipeline[3].params.epochs=0)" in messages["pipeline[3].params.epochs"]
    assert "no key 'nope'" in messages["--set nope"]


# --------------------------------------------------------------------------- components
def test_check_components_resolves_paths_against_the_run_file(folder):
    config, _ = load_checked(write(folder, GOOD))
    checked = config.source.checked_params
    assert Path(checked.path) == folder.resolve() / "data" / "rows.csv"
    assert config.source.params["path"] == "data/rows.csv"  # the run file's own params are not written to
    assert config.output.dir == "runs/x"


def test_component_params_are_parsed_once_and_built_from(folder, monkeypatch):
    from setforge.components import Component
    from setforge.pipeline import build

    calls = []
    original = Component.parse_params.__func__

    def counting(cls, params, place="params"):
        calls.append((cls.name, type(params).__name__))
        return original(cls, params, place)

    monkeypatch.setattr(Component, "parse_params", classmethod(counting))
    config, registry = load_checked(write(folder, GOOD))
    named = 1 + len(config.preprocess) + sum(len(s.component_refs()) for s in config.pipeline) + \
        len(config.evaluate) + len(config.observe)
    assert len(calls) == named  # one parse per component named, in one pass
    assert all(given == "dict" for _, given in calls)
    calls.clear()
    build(config, registry)
    assert calls and all(given != "dict" for _, given in calls)  # built from the checked Params


def test_a_missing_source_path_is_named(folder):
    with pytest.raises(ConfigError) as caught:
        load_checked(write(folder, GOOD.replace("data/rows.csv", "data/missing.csv")))
    [(place, message)] = caught.value.problems
    assert place == "source.params.path"
    assert str(folder.resolve() / "data" / "missing.csv") in message


def test_only_source_paths_and_checkpoints_must_exist(folder):
    text = GOOD.replace("params: {degrees: 10}", "params: {degrees: 10, cache: not/yet}")
    config, _ = load_checked(write(folder, text))
    assert Path(config.pipeline[0].component_refs()[0].checked_params.cache) == folder.resolve() / "not" / "yet"
    with pytest.raises(ConfigError) as caught:
        load_checked(write(folder, GOOD), ["pipeline[3].params.checkpoint=gan.pt"])
    assert places(caught.value) == ["pipeline[3].params.checkpoint"]
    (folder / "gan.pt").write_bytes(b"x")
    config, _ = load_checked(write(folder, GOOD), ["pipeline[3].params.checkpoint=gan.pt"])
    assert Path(config.pipeline[3].component_refs()[0].checked_params.checkpoint) == folder.resolve() / "gan.pt"


def test_every_component_problem_at_once(folder):
    text = (GOOD.replace("cfgtest-scale]", "cfgtest-scal]").replace("{degrees: 10}", "{degres: 10}")
            .replace("{degrees: 5}", "{degrees: 500}").replace("resample: cfgtest-smote", "resample: cfgtest-smot")
            .replace("{epochs: 3}", "{epochs: 3, weight: nan}").replace("k: 2", "k: 0"))
    config = load_run_config(write(folder, text))
    with pytest.raises(ConfigError) as caught:
        check_components(config, registry_for(config))
    problems = dict(caught.value.problems)
    assert list(problems) == ["preprocess[0]", "pipeline[0].params.degres", "pipeline[1].augment[1].params.degrees",
                              "pipeline[2].resample", "pipeline[3].params.weight", "evaluate[1].params.k"]
    assert "did you mean 'cfgtest-scale'" in problems["preprocess[0]"]
    assert "did you mean 'degrees'" in problems["pipeline[0].params.degres"]
    assert "Known: cfgtest-smote" in problems["pipeline[2].resample"]
    assert "finite" in problems["pipeline[3].params.weight"]  # the string 'nan' that pydantic took


def test_model_and_component_problems_are_reported_together(folder):
    text = GOOD.replace("seed: 3", "seed: -3").replace("generate: cfgtest-gan", "generate: cfgtest-gn")
    with pytest.raises(ConfigError) as caught:
        load_checked(write(folder, text))
    assert places(caught.value) == ["seed", "pipeline[3].generate"]
    assert "did you mean 'cfgtest-gan'" in dict(caught.value.problems)["pipeline[3].generate"]


def test_a_steps_own_key_problems_do_not_hide_its_params_problems(folder):
    text = GOOD.replace("    copies: 2\n", "    copies: -1\n").replace("params: {degrees: 10}", "params: {degrees: -10}")
    text = text.replace("  - resample: cfgtest-smote\n", "  - resample: cfgtest-smote\n    params: {k: 0}\n    copies: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_checked(write(folder, text))
    assert places(caught.value) == ["pipeline[0].copies", "pipeline[0].params.degrees", "pipeline[2].copies",
                                    "pipeline[2].params.k"]


# --------------------------------------------------------------------------------- dump
def test_dump_fills_defaults_and_round_trips(folder, tmp_path):
    config, _ = load_checked(write(folder, GOOD))
    text = dump_resolved(config)
    data = yaml.safe_load(text)
    assert data["pipeline"][3] == {"generate": "cfgtest-gan",
                                   "params": {"checkpoint": None, "epochs": 3, "lr": 0.001, "weight": 1.0},
                                   "classes": None, "target": "balance", "fit_on": "real", "guard": "off"}
    assert data["pipeline"][2] == {"resample": "cfgtest-smote", "params": {"k": 5}}
    assert data["preprocess"] == [{"name": "cfgtest-scale", "params": {"factor": 1.0}}]
    assert data["split"]["stratify"] is True and data["output"]["format"] == "npz"
    # the dump is itself a valid run file, anywhere, and resolves to the same thing
    other = tmp_path / "elsewhere"
    other.mkdir()
    again, _ = load_checked(write(other, text))
    assert dump_resolved(again).splitlines()[2:] == text.splitlines()[2:]


def test_the_dump_of_steps_with_amount_keys_is_a_valid_run_file(folder):
    # (it wrote copies: 1, the default, beside per_class: an augment step takes one of them)
    text = GOOD.replace("    copies: 2\n    minority: true\n", "    per_class: 20\n    minority: true\n")
    text = text.replace("  - resample: cfgtest-smote\n", "  - resample: cfgtest-smote\n  - augment: cfgtest-flip\n    multiply: 0.5\n")
    config, _ = load_checked(write(folder, text))
    dumped = yaml.safe_load(dump_resolved(config))
    assert dumped["pipeline"][0]["per_class"] == 20 and "copies" not in dumped["pipeline"][0]
    assert dumped["pipeline"][3]["multiply"] == 0.5 and "copies" not in dumped["pipeline"][3]
    assert dumped["pipeline"][1]["copies"] == 1  # (a default nothing replaces stays)
    again, _ = load_checked(write(folder, dump_resolved(config)))
    assert dump_resolved(again).splitlines()[2:] == dump_resolved(config).splitlines()[2:]


# ------------------------------------------------------------------------------- schema
@pytest.fixture(scope="module")
def schema_and_good(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:  # one registry and schema for every schema test
        monkeypatch.setenv("SETFORGE_DISABLE_PLUGINS", ",".join(
            sorted({ep.name for ep in importlib.metadata.entry_points(group="setforge")})))
        home = tmp_path_factory.mktemp("schema")
        (home / "data").mkdir()
        (home / "data" / "rows.csv").write_text("a,label\n1,x\n")
        (home / "cfg_plugin.py").write_text(PLUGIN)
        config, registry = load_checked(write(home, GOOD))
        schema = run_file_schema(registry)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema), yaml.safe_load(GOOD), config


def test_schema_accepts_good_files(schema_and_good):
    validator, good, config = schema_and_good
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors(yaml.safe_load(dump_resolved(config)))) == []
    assert list(validator.iter_errors({"source": "cfgtest-tiny"})) == []


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(outptu={}),                                         # unknown key
    lambda d: d.update(seed="three"),                                      # wrong type
    lambda d: d.update(seed=-1),                                           # out of range
    lambda d: d.update(device="gpu"),
    lambda d: d["split"].update(tset=0.1),
    lambda d: d["source"].update(name="nope"),                             # unknown component
    lambda d: d["source"]["params"].update(rowz=3),                        # unknown param
    lambda d: d["pipeline"][0]["params"].update(degrees=500),              # param out of bounds
    lambda d: d["pipeline"][0].update(resample="cfgtest-smote"),           # two kinds
    lambda d: d["pipeline"][2].update(copies=2),                           # host key on the wrong kind
    lambda d: d["pipeline"][3].update(per_class=5, target="balance"),      # two amounts
    lambda d: d["pipeline"][1].update(params={"p": 0.5}),                  # params on a chain
    lambda d: d["evaluate"].append("nope"),
    lambda d: d.pop("source"),
])
def test_schema_rejects_bad_files(schema_and_good, mutate):
    validator, good, _ = schema_and_good
    bad = copy.deepcopy(good)
    mutate(bad)
    assert list(validator.iter_errors(bad)) != []


def test_schema_without_components_is_still_valid(isolated):
    schema = run_file_schema(Registry().load())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(
        "source: anything\npipeline: [{resample: any}, {augment: [a, b]}]\n"))) == []


def test_the_schema_checks_observers_like_the_other_component_lists():
    # (observe's items pointed at a definition the schema had removed: any non-empty observe list broke it)
    schema = run_file_schema(Registry().load())
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors({"source": "sklearn-digits", "observe": ["tensorboard"]})) == []
    assert list(validator.iter_errors({"source": "sklearn-digits",
                                       "observe": [{"name": "tensorboard", "params": {"log_dir": "tb"}}]})) == []
    assert list(validator.iter_errors({"source": "sklearn-digits",
                                       "observe": [{"name": "tensorboard", "params": {"flush_secs": 5}}]})) != []
    assert list(validator.iter_errors({"source": "sklearn-digits", "observe": ["no-such-observer"]})) != []
    assert list(validator.iter_errors({"source": "sklearn-digits", "observe": None})) != []  # (validate refuses it)


# ---------------------------------------------------------------------------- reference
def test_docs_hold_the_current_generated_reference():
    docs = (REPO / "docs" / "run-files.md").read_text(encoding="utf-8")
    assert reference_markdown() in docs, "run `python -m setforge.tools.docgen docs/run-files.md`"


def test_reference_lists_every_key():
    text = reference_markdown()
    for name in RunConfig.model_fields:
        assert f"| `{name}` |" in text
    for name in StepConfig.model_fields:
        assert f"| `{name}` |" in text
    assert "| `split.test` | number | `0.2` | ≥ 0, < 1 |" in text
    assert "2^63" in text


def test_the_run_files_in_the_docs_validate(tmp_path, capsys):
    """Every complete run file shown in docs/run-files.md (a block starting with `seed`) is valid
    against the installed plugins."""
    import re

    from setforge.tools.cli import main

    docs = (REPO / "docs" / "run-files.md").read_text(encoding="utf-8")
    blocks = [(fmt, body) for fmt, body in re.findall(r"```(yaml|toml)\n(.*?)```", docs, re.S)
              if body.startswith("seed")]
    assert len(blocks) >= 2
    for i, (fmt, body) in enumerate(blocks):
        path = tmp_path / f"example{i}.{fmt}"
        path.write_text(body)
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_the_error_example_in_the_docs_is_real(tmp_path, capsys):
    import re

    from setforge.tools.cli import main

    docs = (REPO / "docs" / "run-files.md").read_text(encoding="utf-8")
    body = re.search(r"```yaml\n# bad.yaml\n(.*?)```", docs, re.S).group(1)
    shown = re.search(r"\$ setforge validate bad.yaml\n(.*?)\$ echo", docs, re.S).group(1).splitlines()[1:]
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    assert main(["validate", str(path)]) == 2
    printed = capsys.readouterr().err.splitlines()[1:]
    assert [line.split(": ")[0] for line in printed] == [line.split(": ")[0] for line in shown]
    for mine, theirs in zip(printed, shown):
        assert mine.startswith(theirs.removesuffix("...")), (mine, theirs)


def test_default_paths_resolve_and_must_exist_for_sources(folder):
    config, _ = load_checked(write(folder, "plugins: [cfg_plugin.py]\nsource: cfgtest-files\n"))
    assert Path(config.source.checked_params.path) == folder.resolve() / "data" / "rows.csv"
    (folder / "data" / "rows.csv").unlink()
    with pytest.raises(ConfigError) as caught:
        load_checked(write(folder, "plugins: [cfg_plugin.py]\nsource: cfgtest-files\n"))
    assert places(caught.value) == ["source.params.path"]


def test_schema_falls_back_for_params_it_cannot_describe(schema_and_good):
    validator, good, _ = schema_and_good
    assert validator.schema["$defs"]["evaluate.cfgtest-odd.params"]["type"] == "object"
    assert list(validator.iter_errors({**good, "evaluate": [{"name": "cfgtest-odd", "params": {}}]})) == []


def test_an_unknown_key_that_begins_accepted_ones_names_them():
    from setforge.problems import enrich_unknown

    fields = ["checkpoint", "lr_generator", "lr_discriminator", "beta1"]
    assert enrich_unknown("unknown key", ("lr",), fields).startswith(
        "unknown key; did you mean 'lr_generator' or 'lr_discriminator'?")
    assert enrich_unknown("unknown key", ("checkpont",), fields).startswith("unknown key; did you mean 'checkpoint'?")
    assert enrich_unknown("unknown key", ("zzz",), fields).startswith("unknown key. Accepted")


@pytest.mark.parametrize(("kind", "name", "params", "place", "wanted"), [
    ("generate", "dcgan", {"epochs": True}, "params.epochs", "a whole number is wanted here, not true (true/false)"),
    ("generate", "dcgan", {"epochs": "5"}, "params.epochs", 'a whole number is wanted here, not "5" (text)'),
    ("generate", "dcgan", {"epochs": 5.0}, "params.epochs", "a whole number is wanted here, not 5.0 (a number)"),
    ("augment", "flip", {"p": True}, "params.p", "a number is wanted here, not true"),
    ("evaluate", "fid", {"per_class": "off"}, "params.per_class", 'true/false is wanted here, not "off"'),
    ("evaluate", "fid", {"per_class": 0}, "params.per_class", "true/false is wanted here, not 0"),
    ("augment", "affine", {"scale": ["0.9", 1.1]}, "params.scale[0]", 'a number is wanted here, not "0.9"'),
    ("resample", "random-over", {"sampling_strategy": {"a": True}}, "params.sampling_strategy.a", "not true"),
])
def test_params_are_not_read_as_another_kind_of_scalar(kind, name, params, place, wanted):
    # (found by an audit: pydantic's lax mode read true as 1, "5" as 5 and "off" as false, where
    # the run file's own keys, and setforge schema, refuse them)
    from setforge import create

    with pytest.raises(ConfigError) as caught:
        create(kind, name, params)
    assert caught.value.problems[0][0] == place and wanted in caught.value.problems[0][1]


def test_params_take_an_integer_for_a_number_and_a_list_for_a_pair():
    from setforge import create

    assert create("augment", "flip", {"p": 1}).params.p == 1.0
    assert create("augment", "affine", {"degrees": 10, "scale": [0.9, 1.1], "fill": 0}).params.scale == (0.9, 1.1)
    assert create("resample", "smote", {"k_neighbors": "auto"}).params.k_neighbors == "auto"


def test_step_classes_refuse_booleans():
    with pytest.raises(pydantic.ValidationError):
        StepConfig.model_validate({"augment": "flip", "classes": [True]})  # (YAML's [no] is false: was class 0)


def test_yaml_numbers_follow_yaml_1_2_as_toml_and_json_do(tmp_path):
    # (found by an audit: 1e-1 was text, refused by split.test; seed: 017 was 15; dates were dates)
    path = tmp_path / "run.yaml"
    path.write_text("seed: 017\nsource: {name: sklearn-wine}\nsplit: {test: 1e-1, val: 2.5e-1}\n"
                    "pipeline:\n  - {generate: dcgan, params: {lr_generator: 1e-4}}\noutput: {dir: 2024-01-01}\n")
    config = load_run_config(path)
    assert config.seed == 17 and config.split.test == 0.1 and config.split.val == 0.25
    assert config.output.dir == "2024-01-01" and config.pipeline[0].params["lr_generator"] == 1e-4
    # the resolved file (setforge validate) quotes text that would read back as a number
    from setforge.runfile import _parse_yaml
    from setforge.tools.dump import _Dumper

    data = {"a": ["017", "1e-4", "0x1F", "1:30", "2024-01-01", 1e-5, 17]}
    assert _parse_yaml(yaml.dump(data, Dumper=_Dumper)) == data


class _Picky(Generator):
    name = "picky"

    class Params(Generator.Params):
        model: str = "mlp"

        @pydantic.field_validator("model")
        @classmethod
        def _known(cls, value: str) -> str:
            if value != "mlp":
                raise ValueError(f"unknown model {value!r}; choose one of 'mlp'")
            return value


def test_a_component_params_validator_speaks_in_its_own_words():
    # pydantic prefixes a validator's message with "Value error, "; the given value, which the
    # message quotes already, is not repeated (a number, which a bound may contain, still is)
    with pytest.raises(ConfigError) as caught:
        _Picky.parse_params({"model": "mlpp"}, place="evaluate[0].params")
    assert caught.value.problems == [("evaluate[0].params.model", "unknown model 'mlpp'; choose one of 'mlp'")]
