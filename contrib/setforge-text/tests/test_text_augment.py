"""The text augmenters: what each operation does to a sentence, seeding, replay and the kit."""

import re
import subprocess
import sys
from collections import Counter

import pytest
import torch

from setforge import Chain, ConfigError, DataError, Origin, StepContext, load
from setforge.testing import check_component, sample_dataset
from setforge_text.augment import (AUGMENTERS, KEYBOARD_NEIGHBOURS, OCR_CONFUSIONS, Eda, KeyboardNoise, OcrNoise,
                                   SynonymReplacement, WordDeletion, WordInsertion, WordSwap, load_synonyms)

SENTENCES = ["the team won the final match today", "bake the fresh bread until the crust is golden",
             "my new phone has a bright screen and a slow battery", "good"] * 5


def run(cls, params=None, texts=SENTENCES, seed=0):
    aug = cls(params or {})
    return aug(texts, generator=torch.Generator().manual_seed(seed)), aug


@pytest.mark.parametrize("cls", AUGMENTERS, ids=lambda c: c.name)
def test_passes_the_conformance_kit(cls):
    check_component(cls)


def test_swap_keeps_the_words_and_deletion_keeps_their_order():
    swapped, _ = run(WordSwap, {"alpha": 0.3})
    assert all(Counter(a.split()) == Counter(b.split()) for a, b in zip(swapped, SENTENCES))
    assert sum(a != b for a, b in zip(swapped, SENTENCES)) >= 10
    deleted, _ = run(WordDeletion, {"alpha": 0.3})
    for out, text in zip(deleted, SENTENCES):
        words, kept = text.split(), out.split()
        assert 1 <= len(kept) <= len(words)
        it = iter(words)
        assert all(w in it for w in kept)  # a subsequence: order kept
    dropped = sum(len(t.split()) - len(o.split()) for o, t in zip(deleted, SENTENCES) if len(t.split()) > 1)
    total = sum(len(t.split()) for t in SENTENCES if len(t.split()) > 1)
    assert 0.15 < dropped / total < 0.45  # each word goes with probability 0.3


def test_synonyms_come_from_the_table_and_insertion_adds_synonyms_of_words_present():
    table = load_synonyms()
    replaced, _ = run(SynonymReplacement, {"alpha": 0.2})
    for out, text in zip(replaced, SENTENCES):
        a, b = text.split(), out.split()
        assert len(a) == len(b)
        changed = [(x, y) for x, y in zip(a, b) if x != y]
        assert len(changed) <= max(1, int(0.2 * len(a)))  # (EDA: alpha x words, rounded down)
        assert all(y in table[x] for x, y in changed)
    inserted, _ = run(WordInsertion, {"alpha": 0.2})
    for out, text in zip(inserted, SENTENCES):
        extra = Counter(out.split()) - Counter(text.split())
        synonyms = {s for w in text.split() for s in table.get(w, ())}
        assert sum(extra.values()) == (max(1, int(0.2 * len(text.split()))) if synonyms else 0)
        assert set(extra) <= synonyms


def test_a_user_synonym_table_is_used_and_a_bad_one_is_named(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text("# mine\nteam\tsquadron\n", encoding="utf-8")
    out, _ = run(SynonymReplacement, {"alpha": 1.0, "synonyms": str(path)}, texts=["the team won"])
    assert out == ["the squadron won"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("team squad\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.tsv, line 1"):
        run(SynonymReplacement, {"synonyms": str(bad)}, texts=["the team"])


@pytest.mark.parametrize("cls,table", [(KeyboardNoise, None), (OcrNoise, OCR_CONFUSIONS)], ids=["keyboard", "ocr"])
def test_character_noise_replaces_only_allowed_characters(cls, table):
    out, _ = run(cls, {"word_p": 1.0, "char_p": 0.5})
    changed = 0
    for noisy, text in zip(out, SENTENCES):
        for a, b in zip(text.split(" "), noisy.split(" ")):
            if a == b:
                continue
            assert len(a) >= 4
            changed += 1
            if cls is KeyboardNoise:
                assert len(a) == len(b) and all(y == x or y in KEYBOARD_NEIGHBOURS[x] for x, y in zip(a, b))
            else:  # each character kept or one of its OCR confusions (m -> rn changes the length)
                pattern = "".join(f"({'|'.join(map(re.escape, (c, *table.get(c, ()))))})" for c in a)
                assert re.fullmatch(pattern, b), (a, b)
    assert changed > 20
    assert KEYBOARD_NEIGHBOURS["s"] == "adewxz" and KEYBOARD_NEIGHBOURS["q"] == "12aw"


def test_rows_are_seeded_from_the_generator_and_replay():
    first, aug = run(Eda, {"alpha": 0.3})
    again, _ = run(Eda, {"alpha": 0.3})
    other, _ = run(Eda, {"alpha": 0.3}, seed=1)
    assert first == again and first != other
    assert aug(SENTENCES, params=aug.last_params) == first
    # the same sentence repeated gets different changes in different rows
    assert len({o for o, t in zip(first, SENTENCES) if t == SENTENCES[0]}) > 1
    gated, _ = run(Eda, {"p": 0.0})
    assert gated == SENTENCES


def test_augment_step_appends_copies_with_provenance():
    ds = sample_dataset("text")
    out = WordSwap({"alpha": 0.3}).augment(ds, StepContext.from_seed(0, step=2, batch_size=5), copies=2,
                                           rows=torch.tensor([0, 6, 10]))
    assert len(out) == len(ds) + 6 and out.x[:len(ds)] == ds.x
    new = out[len(ds):]
    assert new.parent.tolist() == [0, 6, 10, 0, 6, 10] and bool((new.origin == int(Origin.AUGMENTED)).all())
    assert new.y.tolist() == ds.y[[0, 6, 10, 0, 6, 10]].tolist() and bool((new.step == 2).all())
    with pytest.raises(ConfigError):
        WordSwap().augment(ds, StepContext.from_seed(0), copies=-1)
    images = sample_dataset("image")
    with pytest.raises(DataError, match="word-swap"):
        WordSwap().augment(images, StepContext.from_seed(0))


def test_eda_draws_one_operation_per_row():
    out, aug = run(Eda, {"alpha": 0.3, "ops": ["word-swap", "word-deletion"]})
    ops = aug.last_params["op"].tolist()
    for op, noisy, text in zip(ops, out, SENTENCES):
        if op == 0:  # word-swap: the same words, moved
            assert Counter(noisy.split()) == Counter(text.split())
        else:  # word-deletion: some of the words, none added, one at least kept
            assert Counter(noisy.split()) <= Counter(text.split()) and noisy.split()
    assert set(ops) == {0, 1}
    swapped = [(noisy, text) for op, noisy, text in zip(ops, out, SENTENCES) if op == 0]
    deleted = [(noisy, text) for op, noisy, text in zip(ops, out, SENTENCES) if op == 1]
    assert any(noisy != text for noisy, text in swapped) and any(len(n.split()) < len(t.split()) for n, t in deleted)


def test_synonyms_are_found_beside_punctuation_and_keep_it_and_the_words_case():
    # (found by an audit: "Cheap," and "reliable!" never matched the table, so nothing changed)
    from setforge_text.augment import _synonym_replacement, _word_insertion

    table = {"cheap": ("inexpensive",), "fast": ("quick",), "great": ("excellent",)}
    import random

    out = _synonym_replacement("Cheap, fast, and GREAT!".split(), random.Random(0), 1.0, table)
    assert out == ["Inexpensive,", "quick,", "and", "EXCELLENT!"]
    inserted = _word_insertion("Cheap, and dull.".split(), random.Random(0), 0.5, table)
    assert "inexpensive" in inserted and len(inserted) == 4


# ------------------------------------------------------------------------- chains
def test_a_chain_applies_text_augmenters_in_turn_with_one_augmenters_provenance():
    # (found by an audit: setforge's Chain indexed ds.x with a tensor, so a chain of text
    # augmenters stopped the run with a TypeError)
    ds = sample_dataset("text")
    swap, noise = WordSwap({"alpha": 0.5}), KeyboardNoise({"p": 0.5, "word_p": 1.0})
    rows = torch.tensor([0, 6, 10, 11])
    out = Chain([swap, noise]).augment(ds, StepContext.from_seed(3, step=2, batch_size=3), copies=2, rows=rows)
    assert len(out) == len(ds) + 8 and out.x[:len(ds)] == ds.x
    new = out[len(ds):]
    assert new.parent.tolist() == rows.tolist() * 2 and new.y.tolist() == ds.y[rows].tolist() * 2
    assert bool((new.origin == int(Origin.AUGMENTED)).all()) and bool((new.step == 2).all())
    # the same rows as the two augmenters one after the other, each drawing from the step's generator
    generator, expected = StepContext.from_seed(3).rng.torch, []
    for batch in (rows[:3], rows[3:]) * 2:
        x, y = [ds.x[i] for i in batch.tolist()], ds.y[batch]
        first, second = swap.make_params(x, y, generator), noise.make_params(x, y, generator)
        expected += noise.apply_params(swap.apply_params(x, y, first), y, second)
    assert new.x == expected
    assert any(sorted(a.split()) != sorted(b.split()) for a, b in zip(new.x, [ds.x[i] for i in new.parent]))  # noise
    gated = Chain([swap, KeyboardNoise({"p": 0.0})]).augment(ds, StepContext.from_seed(3), rows=rows)
    assert all(Counter(a.split()) == Counter(ds.x[i].split()) for a, i in zip(gated.x[len(ds):], rows.tolist()))


class SwapThenTypos(Chain):
    """A chain of text augmenters as one component (a fixture for the kit)."""

    name = "swap-then-typos"
    modalities = ("text",)  # (the kit reads the class's; a chain's instance has its ops' shared ones)

    def __init__(self, params=None):
        super().__init__([WordSwap({"alpha": 0.3}), KeyboardNoise({"p": 0.5})])


def test_a_chain_of_text_augmenters_passes_the_kit_and_replays():
    check_component(SwapThenTypos)
    chain = SwapThenTypos()
    out = chain(SENTENCES, generator=torch.Generator().manual_seed(0))
    assert len(out) == len(SENTENCES) and out != SENTENCES
    assert chain(SENTENCES, params=chain.last_params) == out


def test_a_chain_of_text_augmenters_runs_from_a_run_file(tmp_path):
    subprocess.run([sys.executable, "-m", "setforge_text.data", str(tmp_path)], check=True, capture_output=True)
    (tmp_path / "chain.yaml").write_text(
        "seed: 0\nsource: {name: text-file, params: {path: texts.csv}}\nsplit: {test: 0.3, val: 0.1}\n"
        "pipeline:\n  - augment: [word-swap, {name: keyboard-noise, params: {p: 0.5}}]\n    copies: 1\n"
        "    minority: true\nevaluate: [balance]\noutput: {dir: out, format: npz}\n")
    result = subprocess.run([sys.executable, "-m", "setforge", "run", "chain.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "augment word-swap+keyboard-noise: 87 -> 120 rows (augmented 33, real 87)" in result.stdout
    ds = load(tmp_path / "out")
    new = ds.origin == int(Origin.AUGMENTED)
    real = {int(lin): i for i, lin in enumerate(ds.lineage().tolist()) if not new[i]}
    parents = [real[int(p)] for p in ds.parent[new]]
    assert int(new.sum()) == 33 and ds.y[new].tolist() == ds.y[parents].tolist()
    assert sum(ds.x[i] != ds.x[p] for i, p in zip(new.nonzero().flatten().tolist(), parents)) >= 30


def test_a_synonym_table_that_cannot_be_read_is_refused_before_any_step(tmp_path):
    # (a malformed table passed validate and stopped the run at its step, exit 3)
    subprocess.run([sys.executable, "-m", "setforge_text.data", str(tmp_path)], check=True, capture_output=True)
    (tmp_path / "syn.tsv").write_text("good fine\n", encoding="utf-8")  # (no tab)
    (tmp_path / "syn.yaml").write_text(
        "seed: 0\nsource: {name: text-file, params: {path: texts.csv}}\n"
        "pipeline:\n  - {augment: word-swap, copies: 1}\n"
        "  - {augment: [word-swap, {name: synonym-replacement, params: {synonyms: syn.tsv}}], copies: 1}\n"
        "evaluate: []\noutput: {dir: out}\n")
    result = subprocess.run([sys.executable, "-m", "setforge", "run", "syn.yaml", "--dry-run"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "pipeline[1].augment: [1] 'synonym-replacement' params.synonyms: synonym table " in result.stderr
    assert "syn.tsv, line 1: expected 'word<TAB>synonym,synonym,...'" in result.stderr
