"""The text-file source, the TF-IDF model, the example run file and discovery by setforge."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from setforge import ConfigError, DataError, EvalContext, Rng, StepContext
from setforge.registry import Registry
from setforge.testing import check_component
from setforge_text.data import COUNTS, sample_rows, write_sample
from setforge_text.model import TfidfLogisticRegression
from setforge_text.source import TextFileSource

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "text.yaml"


def test_source_passes_the_kit():
    check_component(TextFileSource)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_source_reads_csv_and_jsonl_alike(tmp_path, suffix):
    path = write_sample(tmp_path / f"texts{suffix}")
    ds = TextFileSource({"path": str(path)}).load(StepContext.from_seed(0))
    rows = sample_rows()
    assert ds.modality == "text" and ds.x == [t for t, _ in rows]
    assert ds.classes == ("food", "sport", "tech") and ds.class_counts() == [COUNTS["food"], COUNTS["sport"],
                                                                             COUNTS["tech"]]
    ordered = TextFileSource({"path": str(path), "classes": ["sport", "food", "tech"]}).load(StepContext.from_seed(0))
    assert ordered.classes[0] == "sport" and ordered.class_counts()[0] == COUNTS["sport"]


def test_invalid_rows_are_named_or_dropped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nhello there,a\n,b\nfine,\nok then,c\n", encoding="utf-8")
    with pytest.raises(DataError, match="t.csv, line 3: missing or empty text"):
        TextFileSource({"path": str(path)}).load(StepContext.from_seed(0))
    source = TextFileSource({"path": str(path), "classes": ["a", "b"]})
    ds = source.load(StepContext.from_seed(0), on_invalid="drop")
    assert ds.x == ["hello there"] and sum(source.dropped.values()) == 3
    with pytest.raises(DataError, match="no column 'body'"):
        TextFileSource({"path": str(path), "text": "body"}).load(StepContext.from_seed(0))
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "a b", "label": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="t.jsonl, line 2: not JSON"):
        TextFileSource({"path": str(jsonl)}).load(StepContext.from_seed(0))
    with pytest.raises(ConfigError):
        TextFileSource({"path": str(tmp_path / "none.csv")}).load(StepContext.from_seed(0))


def test_tfidf_model_matches_scikit_learn_and_learns_the_sample(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    ds = TextFileSource({"path": str(write_sample(tmp_path / "t.csv"))}).load(StepContext.from_seed(0))
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    train, test = ds[perm[:100]], ds[perm[100:]]
    model = TfidfLogisticRegression({"epochs": 100}).fit(train, None, Rng(0))
    predicted = model.predict(test)
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    reference = LogisticRegression(max_iter=100, random_state=Rng(0).sk_seed()).fit(
        vectoriser.fit_transform(train.x), train.y.numpy())
    assert predicted.tolist() == reference.predict(vectoriser.transform(test.x)).tolist()
    assert float((predicted == test.y).float().mean()) > 0.8
    # probabilities too, so utility's ECE and Brier are this model's (from one-hot labels they were
    # 1 - accuracy and 2 (1 - accuracy); found by a user-journey audit)
    probabilities = model.predict_proba(test)
    expected = reference.predict_proba(vectoriser.transform(test.x))
    assert probabilities.shape == (len(test), test.num_classes)
    assert torch.allclose(probabilities[:, torch.as_tensor(reference.classes_)], torch.as_tensor(expected).float(), atol=1e-6)
    assert torch.equal(probabilities.argmax(dim=1), predicted)


def test_utility_finds_the_model_by_entry_point(tmp_path):
    from setforge.plugins.evaluate.utility import Utility, downstream_models

    assert "tfidf-logistic-regression" in downstream_models()
    ds = TextFileSource({"path": str(write_sample(tmp_path / "t.csv"))}).load(StepContext.from_seed(0))
    metrics = Utility({"model": "tfidf-logistic-regression"}).evaluate(
        EvalContext.from_seed(0, ds[:100], test=ds[100:]))
    assert metrics.get("utility/raw/accuracy").value > 0.8 and metrics.get("utility/raw/accuracy").n == 44
    # calibration from the model's probabilities, not from one-hot labels (where ECE = 1 - accuracy)
    assert abs(metrics.get("utility/raw/ece").value - (1 - metrics.get("utility/raw/accuracy").value)) > 1e-3


def test_setforge_lists_the_components_with_distribution_and_version():
    registry = Registry(use_env=False).load()
    names = {(i.kind, i.name): (i.distribution, i.version) for i in registry.components()}
    assert names[("source", "text-file")] == ("setforge-text", "0.1.0")
    for name in ("eda", "word-swap", "word-deletion", "word-insertion", "synonym-replacement", "keyboard-noise",
                 "ocr-noise"):
        assert names[("augment", name)] == ("setforge-text", "0.1.0")
    listing = subprocess.run([sys.executable, "-m", "setforge", "plugins", "list"], capture_output=True, text=True,
                             check=True).stdout
    assert any(line.split()[:2] == ["augment", "eda"] and "setforge-text" in line and "0.1.0" in line
               for line in listing.splitlines())


def test_the_example_run_file_runs(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "text.yaml")
    subprocess.run([sys.executable, "-m", "setforge_text.data", str(tmp_path)], check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "setforge", "run", "text.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "text" / "report.json").read_text())
    measures = report["metrics"]["measures"]["utility"]
    assert {"raw/accuracy", "optimised/accuracy", "delta/macro_f1"} <= set(measures)
    counts = json.dumps(report)
    assert "keyboard-noise" in counts and "eda" in counts


def test_a_byte_order_mark_and_unicode_line_separators_inside_records_are_read(tmp_path):
    # (found by an audit: Excel's BOM hid the text column; U+2028 or U+0085 inside a JSON string
    # cut a record in two, and both halves were invalid)
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes("\ufefftext,label\nhello,a\nbye,b\n".encode("utf-8"))
    assert TextFileSource({"path": str(csv_path)}).load(StepContext.from_seed(0)).x == ["hello", "bye"]
    jsonl = tmp_path / "odd.jsonl"
    records = [{"text": "line one\u2028still one", "label": "a"}, {"text": "x\x85y", "label": "b"}]
    jsonl.write_text("\ufeff" + "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    assert TextFileSource({"path": str(jsonl)}).load(StepContext.from_seed(0)).x == [r["text"] for r in records]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        TextFileSource({"path": str(latin)}).load(StepContext.from_seed(0))


def test_numeric_labels_are_numbered_by_value_as_setforge_s_sources_number_them(tmp_path):
    # (labels "1", "2", "10" were numbered as text: "10" before "2")
    path = tmp_path / "t.csv"
    path.write_text("text,label\nstars ten,10\nstars two,2\nstars one,1\n", encoding="utf-8")
    ds = TextFileSource({"path": str(path)}).load(StepContext.from_seed(0))
    assert ds.classes == ("1", "2", "10") and ds.y.tolist() == [2, 1, 0]


def test_json_labels_name_the_classes_a_csv_cell_would(tmp_path):
    # (1 and 1.0 were two classes, '1' and '1.0'; true was class 'True')
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1.0}\n{"text": "c", "label": "1"}\n'
                    '{"text": "d", "label": true}\n{"text": "e", "label": 2.5}\n', encoding="utf-8")
    ds = TextFileSource({"path": str(path)}).load(StepContext.from_seed(0))
    assert ds.classes == ("1", "2.5", "true") and ds.y.tolist() == [0, 0, 0, 2, 1]
