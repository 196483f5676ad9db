"""``setforge validate`` and ``setforge schema`` through the command line, in process (``main(argv)``),
with a corpus of malformed run files that must each exit 2 naming the place, print no traceback
and write nothing; a few cases run as a subprocess (``python -m setforge``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from setforge.tools.cli import main

from ._run_files import GOOD, files_under, folder, isolated  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]


def edit(*pairs: str) -> str:
    """GOOD with each (old, new) replacement applied (each old must occur)."""
    text = GOOD
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# name, file name, content, the place named, words in the message
CORPUS = [
    # wrong types
    ("seed-string", "run.yaml", edit("seed: 3", "seed: three"), "seed", "integer"),
    ("seed-float", "run.yaml", edit("seed: 3", "seed: 1.5"), "seed", "integer"),
    ("seed-negative", "run.yaml", edit("seed: 3", "seed: -1"), "seed", "greater than or equal to 0"),
    ("seed-too-big", "run.yaml", edit("seed: 3", f"seed: {2**63}"), "seed", "less than"),
    ("seed-bool", "run.yaml", edit("seed: 3", "seed: true"), "seed", "integer"),
    ("test-string", "run.yaml", edit("test: 0.3", "test: '0.3'"), "split.test", "valid number"),
    ("copies-word", "run.yaml", edit("copies: 2", "copies: two"), "pipeline[0].copies", "integer"),
    ("copies-bool", "run.yaml", edit("copies: 2", "copies: yes"), "pipeline[0].copies", "integer"),
    ("copies-too-many", "run.yaml", edit("copies: 2", "copies: 5000"), "pipeline[0].copies", "1000"),
    ("params-not-mapping", "run.yaml", edit("params: {epochs: 3}", "params: 3"), "pipeline[3].params",
     "must be a mapping"),
    ("augment-number", "run.yaml", edit("augment: cfgtest-affine", "augment: 7"), "pipeline[0].augment",
     "augmenter name"),
    ("pipeline-mapping", "run.yaml", "source: cfgtest-tiny\npipeline: {resample: x}\n", "pipeline", "list"),
    ("device", "run.yaml", edit("seed: 3", "seed: 3\ndevice: gpu"), "device", "cuda:N"),
    ("format", "run.yaml", edit("dir: runs/x", "dir: runs/x, format: parquet"), "output.format", "'npz'"),
    ("on-invalid", "run.yaml", edit("path: data/rows.csv}", "path: data/rows.csv}, on_invalid: skip"),
     "source.on_invalid", "'drop'"),
    ("dedup-method", "run.yaml", edit("path: data/rows.csv}", "path: data/rows.csv}, deduplicate: fuzzy"),
     "source.deduplicate.method", "'near'"),
    ("source-missing", "run.yaml", "seed: 1\n", "source", "required"),
    # unknown keys
    ("unknown-top", "run.yaml", edit("output:", "outptu:"), "outptu", "did you mean 'output'"),
    ("unknown-split", "run.yaml", edit("test: 0.3", "tset: 0.3"), "split.tset", "did you mean 'test'"),
    ("unknown-step-key", "run.yaml", edit("copies: 2", "copy: 2"), "pipeline[0].copy", "did you mean 'copies'"),
    ("unknown-param", "run.yaml", edit("{degrees: 10}", "{degres: 10}"), "pipeline[0].params.degres",
     "did you mean 'degrees'"),
    ("unknown-param-chain", "run.yaml", edit("{degrees: 5}", "{degree: 5}"), "pipeline[1].augment[1].params.degree",
     "did you mean 'degrees'"),
    ("unknown-param-no-params", "run.yaml", edit("[cfgtest-score,", "[{name: cfgtest-score, params: {x: 1}},"),
     "evaluate[0].params.x", "takes no params"),
    # NaN and infinity
    ("nan-split", "run.yaml", edit("test: 0.3", "test: .nan"), "split.test", "finite"),
    ("nan-param", "run.yaml", edit("{epochs: 3}", "{epochs: 3, weight: .nan}"), "pipeline[3].params.weight",
     "finite"),
    ("nan-string-param", "run.yaml", edit("{epochs: 3}", "{epochs: 3, weight: nan}"), "pipeline[3].params.weight",
     "finite"),
    ("inf-json", "run.json", '{"source": "cfgtest-tiny", "split": {"val": Infinity}, "plugins": ["cfg_plugin.py"]}',
     "split.val", "finite"),
    ("nan-toml", "run.toml", 'seed = nan\nsource = "cfgtest-tiny"\n', "seed", "finite"),
    # unknown components, with the closest name
    ("unknown-source", "run.yaml", edit("name: cfgtest-tiny", "name: cfgtest-tiyn"), "source",
     "did you mean 'cfgtest-tiny'"),
    ("unknown-preprocess", "run.yaml", edit("[cfgtest-scale]", "[cfgtest-scael]"), "preprocess[0]",
     "did you mean 'cfgtest-scale'"),
    ("unknown-augment", "run.yaml", edit("augment: cfgtest-affine", "augment: cfgtest-afine"), "pipeline[0].augment",
     "did you mean 'cfgtest-affine'"),
    ("unknown-chain-op", "run.yaml", edit("[cfgtest-flip,", "[cfgtest-flop,"), "pipeline[1].augment[0]",
     "did you mean 'cfgtest-flip'"),
    ("unknown-resample", "run.yaml", edit("resample: cfgtest-smote", "resample: smote"), "pipeline[2].resample",
     "Known: cfgtest-smote"),
    ("unknown-generate", "run.yaml", edit("generate: cfgtest-gan", "generate: cfgtest-gna"), "pipeline[3].generate",
     "did you mean 'cfgtest-gan'"),
    ("unknown-evaluate", "run.yaml", edit("{name: cfgtest-memo", "{name: cfgtest-mem"), "evaluate[1]",
     "did you mean 'cfgtest-memo'"),
    ("param-out-of-range", "run.yaml", edit("{epochs: 3}", "{epochs: 0}"), "pipeline[3].params.epochs",
     "greater than or equal to 1"),
    # step structure
    ("two-kinds", "run.yaml", edit("  - resample: cfgtest-smote", "  - resample: cfgtest-smote\n    generate: cfgtest-gan"),
     "pipeline[2]", "exactly one of augment, resample, generate"),
    ("no-kind", "run.yaml", edit("  - resample: cfgtest-smote", "  - params: {}"), "pipeline[2]", "names none"),
    ("copies-on-resample", "run.yaml", edit("  - resample: cfgtest-smote", "  - resample: cfgtest-smote\n    copies: 2"),
     "pipeline[2].copies", "augment steps only"),
    ("target-and-copies", "run.yaml", edit("copies: 2", "copies: 2\n    target: balance"), "pipeline[0].target",
     "takes one of copies, target, per_class, multiply"),
    ("minority-on-generate", "run.yaml", edit("params: {epochs: 3}", "params: {epochs: 3}\n    minority: true"),
     "pipeline[3].minority", "augment steps only"),
    ("two-amounts", "run.yaml", edit("params: {epochs: 3}", "params: {epochs: 3}\n    target: balance\n    per_class: 9"),
     "pipeline[3].per_class", "one of target, per_class, multiply"),
    ("minority-and-classes", "run.yaml", edit("minority: true", "minority: true\n    classes: [a]"),
     "pipeline[0].classes", "not both"),
    ("chain-with-params", "run.yaml", edit("{name: cfgtest-affine, params: {degrees: 5}}]",
                                           "{name: cfgtest-affine, params: {degrees: 5}}]\n    params: {p: 1}"),
     "pipeline[1].params", "their own params"),
    ("empty-chain", "run.yaml", edit("[cfgtest-flip, {name: cfgtest-affine, params: {degrees: 5}}]", "[]"),
     "pipeline[1].augment", "at least one"),
    # split and paths
    ("shares", "run.yaml", edit("{test: 0.3, val: 0.1}", "{test: 0.6, val: 0.4}"), "split", "test + val must be < 1"),
    ("missing-source-file", "run.yaml", edit("data/rows.csv", "data/nope.csv"), "source.params.path", "does not exist"),
    ("missing-plugin-file", "run.yaml", edit("[cfg_plugin.py]", "[cfg_plugin.py, other.py]"), "plugins",
     "does not exist"),
    # files that cannot be read
    ("bad-yaml", "run.yaml", "seed: [1\nsource: x\n", "{file}:2:7", "invalid YAML"),
    ("bad-indent", "run.yaml", "source:\n  name: x\n bad: 1\n", "{file}:3:2", "invalid YAML"),
    ("bad-toml", "run.toml", 'seed = 1\nsource = "x\n', "{file}:2:12", "invalid TOML"),
    ("bad-json", "run.json", '{"seed": 1 "source": "x"}', "{file}:1:12", "invalid JSON"),
    ("empty", "run.yaml", "", "{file}", "empty file"),
    ("whitespace", "run.json", "  \n\n", "{file}", "empty file"),
    ("binary", "run.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "{file}", "binary"),
    ("python-tag", "run.yaml", "source: !!python/object/apply:os.system ['touch {folder}/PWNED']\n", "{file}:1:9",
     "safe loading"),
    ("python-name", "run.yaml", "seed: !!python/name:os.system\nsource: x\n", "{file}:1:7", "safe loading"),
    ("top-level-list", "run.yaml", "- seed: 1\n", "{file}", "must be a mapping"),
    ("top-level-string", "run.json", '"hello"', "{file}", "must be a mapping"),
    ("duplicate-key", "run.yaml", "source: x\nseed: 1\nseed: 2\n", "{file}:3:1", "duplicate key 'seed'"),
    ("wrong-extension", "run.txt", GOOD, "{file}", "unknown run file format"),
    ("no-extension", "run", GOOD, "{file}", "(no extension)"),
    ("non-string-key", "run.yaml", "source: x\n3: 4\n", "(top level)", "keys must be strings"),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_run_files_exit_2_naming_the_place(folder, capsys, case):
    _, name, content, place, words = case
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.replace("{folder}", str(folder)))
    before = files_under(folder, Path.cwd())
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("setforge: invalid run file or usage:\n")
    lines = [line for line in err.splitlines()[1:] if line.startswith(f"  {place.format(file=path)}: ")]
    assert lines, f"{place} not named in:\n{err}"
    assert any(words in line for line in lines), err
    assert files_under(folder, Path.cwd()) == before  # nothing written
    assert not (folder / "PWNED").exists()


def test_all_problems_are_reported_at_once(folder, capsys):
    text = edit("seed: 3", "seed: -1", "test: 0.3", "test: .nan", "resample: cfgtest-smote", "resample: cfgtest-smot",
                "{epochs: 3}", "{epochs: 0}", "output:", "outptu:")
    path = folder / "run.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    named = [line.split(": ")[0].strip() for line in err.splitlines()[1:]]
    assert named == ["seed", "split.test", "pipeline[2].resample", "pipeline[3].params.epochs", "outptu"]


def test_validate_prints_the_resolved_config(folder, capsys):
    path = folder / "run.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = yaml.safe_load(out)
    assert data["seed"] == 3
    assert data["source"]["params"] == {"path": str(folder.resolve() / "data" / "rows.csv"), "rows": 10}
    assert data["pipeline"][0]["params"] == {"p": 1.0, "degrees": 10.0, "cache": None}
    assert data["output"]["dir"] == "runs/x"
    assert not (Path.cwd() / "runs").exists()


def test_set_overrides_on_validate(folder, capsys):
    path = folder / "run.yaml"
    path.write_text(GOOD)
    argv = ["validate", str(path), "--set", "seed=11", "--set", "pipeline[3].params.epochs=5",
            "--set", "output.dir=runs/other", "--set", "split.stratify=false", "--set", "source.params.rows=4"]
    assert main(argv) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["seed"] == 11 and data["pipeline"][3]["params"]["epochs"] == 5
    assert data["output"]["dir"] == "runs/other" and data["split"]["stratify"] is False
    assert data["source"]["params"]["rows"] == 4


@pytest.mark.parametrize("override,place,words", [
    ("seed=-2", "seed", "(from --set seed=-2)"),
    ("pipeline[3].params.epochs=0", "pipeline[3].params.epochs", "(from --set pipeline[3].params.epochs=0)"),
    ("pipeline[3].generate=cfgtest-gn", "pipeline[3].generate", "did you mean 'cfgtest-gan'"),
    ("pipeline[7].params.epochs=5", "--set pipeline[7].params.epochs", "nearest valid path: pipeline[3]"),
    ("outptu.dir=x", "--set outptu.dir", "did you mean 'output'"),
    ("seed", "--set seed", "PATH=VALUE"),
])
def test_bad_set_exits_2_naming_the_place(folder, capsys, override, place, words):
    path = folder / "run.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert any(line.startswith(f"  {place}: ") and words in line for line in err.splitlines()), err


def test_schema_command_validates_good_and_rejects_bad(folder, capsys):
    assert main(["schema", "-p", str(folder / "cfg_plugin.py")]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load(GOOD)
    assert list(validator.iter_errors(good)) == []
    names = schema["properties"]["source"]["anyOf"][0]["enum"]
    assert names == ["cfgtest-files", "cfgtest-tiny"]
    for bad in [{**good, "outptu": {}}, {**good, "seed": "3"},
                {**good, "pipeline": [{"resample": "cfgtest-smote", "copies": 2}]},
                {**good, "pipeline": [{"generate": "cfgtest-gan", "params": {"epochs": "many"}}]}]:
        assert list(validator.iter_errors(bad)) != []


def test_usage_errors_exit_2(capsys):
    assert main(["validate"]) == 2
    assert main(["validate", "x.yaml", "--nope"]) == 2
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------ as a subprocess
def _run(*argv: str, cwd: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "setforge", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def disabled_env() -> dict[str, str]:
    return {"SETFORGE_DISABLE_PLUGINS": os.environ["SETFORGE_DISABLE_PLUGINS"]}


def test_subprocess_validate_good_and_set(folder, disabled_env):
    (folder / "run.yaml").write_text(GOOD)
    result = _run("validate", str(folder / "run.yaml"), "--set", "seed=9", cwd=Path.cwd(), env_extra=disabled_env)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["seed"] == 9


def test_subprocess_malformed_files_exit_2_without_traceback(folder, disabled_env):
    marker = folder / "PWNED"
    (folder / "tag.yaml").write_text(f"source: !!python/object/apply:os.system ['touch {marker}']\n")
    (folder / "bad.yaml").write_text(edit("seed: 3", "seed: .nan", "generate: cfgtest-gan", "generate: cfgtest-gna"))
    before = files_under(folder, Path.cwd())
    for name, places in [("tag.yaml", [f"{folder / 'tag.yaml'}:1:9"]),
                         ("bad.yaml", ["seed", "pipeline[3].generate"])]:
        result = _run("validate", str(folder / name), cwd=Path.cwd(), env_extra=disabled_env)
        assert result.returncode == 2
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        for place in places:
            assert f"  {place}: " in result.stderr, result.stderr
    assert not marker.exists()
    assert files_under(folder, Path.cwd()) == before


def test_set_reaches_a_mapping_key_that_starts_with_a_digit():
    # (found by an audit: digits' class names "0".."9" could not be set in a sampling_strategy)
    from setforge.runfile import apply_overrides

    raw = {"pipeline": [{"resample": "random-over", "params": {"sampling_strategy": {"3": 100}}}]}
    changed, problems, _ = apply_overrides(raw, ["pipeline[0].params.sampling_strategy.3=150",
                                                 "pipeline[0].params.sampling_strategy.7=90"])
    assert not problems and changed["pipeline"][0]["params"]["sampling_strategy"] == {"3": 150, "7": 90}


def test_dry_run_says_an_existing_run_folder_is_replaced_when_the_run_would_replace_it(tmp_path, monkeypatch, capsys):
    # (found by an audit: with output.force: true, or run --force, the dry run still said "needs --force")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "run.yaml").write_text("source: sklearn-digits\npipeline: [{augment: flip}]\noutput: {dir: runs/x}\n")
    last_line = lambda: capsys.readouterr().out.rstrip().splitlines()[-1]  # noqa: E731
    assert main(["run", "run.yaml", "--dry-run"]) == 0
    assert last_line() == "run folder: runs/x (exists: needs --force)"
    assert main(["run", "run.yaml", "--dry-run", "--force"]) == 0
    assert last_line() == "run folder: runs/x (exists: will be replaced)"
    assert main(["run", "run.yaml", "--dry-run", "--set", "output.force=true"]) == 0
    assert last_line() == "run folder: runs/x (exists: will be replaced)"


def test_a_dash_p_file_resolves_against_the_current_folder(folder, capsys):
    # (found by an audit: `validate project/run.yaml -p plugin.py` looked for project/plugin.py, while
    # `plugins list -p plugin.py` looked in the current folder; a missing -p file was blamed on `plugins`)
    Path("cwd_plugin.py").write_text((folder / "cfg_plugin.py").read_text())  # the current folder is another one
    run_file = folder / "run.yaml"
    run_file.write_text(GOOD.replace("plugins: [cfg_plugin.py]\n", ""))
    assert main(["validate", str(run_file), "-p", "cwd_plugin.py"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["validate", str(run_file), "-p", "missing_plugin.py"]) == 2
    err = capsys.readouterr().err
    assert f"  -p: local plugin file missing_plugin.py does not exist (in the current folder, {Path.cwd()})" in err
    assert main(["plugins", "list", "-p", "cwd_plugin.py"]) == 0 and "cfgtest-tiny" in capsys.readouterr().out
