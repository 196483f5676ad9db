"""Text augmenters that need no downloads: EDA word operations and character noise.

EDA (Wei and Zou, 2019, "Easy Data Augmentation"): ``synonym-replacement``, ``word-insertion``,
``word-swap``, ``word-deletion``, and ``eda`` (one of the four per row). Character noise, as in
nlpaug's ``KeyboardAug`` and ``OcrAug``: ``keyboard-noise`` (a key next to the one meant, on a
QWERTY keyboard) and ``ocr-noise`` (characters an OCR engine confuses: ``0``/``o``, ``1``/``l``, ...).

Texts are Python strings, so each row is worked on by itself; what is random about a row comes
from a per-row seed drawn from the step's ``torch.Generator`` (with the per-row gate ``p``), so a
call replays exactly from ``last_params`` and no global RNG is touched.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from setforge import Augmenter, DataError, Dataset

__all__ = ["TextAugmenter", "SynonymReplacement", "WordInsertion", "WordSwap", "WordDeletion", "Eda",
           "KeyboardNoise", "OcrNoise", "AUGMENTERS", "load_synonyms", "KEYBOARD_NEIGHBOURS", "OCR_CONFUSIONS"]

_SEED_BOUND = 2**62


class TextAugmenter(Augmenter):
    """Base of the text augmenters: per-row seeds from the step's generator, one string per row.

    Author: ``_augment_text(text, rng, params, row) -> str`` for one row, with ``rng`` a
    ``random.Random`` seeded from the row's drawn seed. The setforge `Augmenter` base works on
    tensors and, for ``augment``, lists of strings too (``copies`` of the rows appended with
    provenance); this one keeps its contract (``make_params`` / ``apply_params`` / ``forward``
    replay from ``last_params``) for lists of strings. In a setforge ``Chain`` (a step naming several augmenters) text augmenters are applied
    one after the other to each row, each with its own draws; ``eda`` draws one word operation per row.
    """

    modalities = ("text",)

    def make_params(self, x: Sequence[str], y: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> dict[str, Any]:
        """Per row: the gate ``apply`` (probability ``p``) and a ``seed`` for the row's draws."""
        n = len(x)
        device = generator.device if generator is not None else torch.device("cpu")
        gate = torch.rand(n, generator=generator, device=device) < self.params.p
        params = {"seed": torch.randint(0, _SEED_BOUND, (n,), generator=generator, device=device)}
        params.update(self._make_params(x, y, generator))
        params["apply"] = gate
        return {k: v.cpu() for k, v in params.items()}

    def apply_params(self, x: Sequence[str], y: torch.Tensor | None, params: Mapping[str, Any]) -> list[str]:
        """The gated rows changed by their own seed; the others as they were."""
        gate, seeds = params["apply"].tolist(), params["seed"].tolist()
        return [self._augment_text(text, random.Random(seed), params, i) if on else text
                for i, (text, on, seed) in enumerate(zip(x, gate, seeds))]

    def _transform(self, x: Any, y: Any, params: Mapping[str, Any]) -> list[str]:
        return self.apply_params(x, y, {**params, "apply": torch.ones(len(x), dtype=torch.bool)})

    def fit(self, ds: Dataset) -> "TextAugmenter":
        self._check_modality(ds)
        self._fit(ds)
        return self

    def _augment_text(self, text: str, rng: random.Random, params: Mapping[str, Any], row: int) -> str:
        raise NotImplementedError


# ------------------------------------------------------------------------------ EDA
def _parse_synonyms(lines: Sequence[str], where: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, tab, rest = line.partition("\t")
        synonyms = tuple(s.strip().lower() for s in rest.split(",") if s.strip() and s.strip().lower() != word.lower())
        if not tab or not word.strip() or not synonyms:
            raise DataError(f"synonym table {where}, line {number}: expected 'word<TAB>synonym,synonym,...', "
                            f"got {line[:60]!r}")
        table[word.strip().lower()] = synonyms
    return table


@lru_cache(maxsize=8)
def load_synonyms(path: str | None = None) -> dict[str, tuple[str, ...]]:
    """A synonym table: ``word<TAB>syn,syn,...`` per line (``#`` comments); None: the shipped one
    (about 120 common English words)."""
    if path is None:
        text = resources.files("setforge_text").joinpath("synonyms.tsv").read_text(encoding="utf-8")
        return _parse_synonyms(text.splitlines(), "synonyms.tsv (shipped)")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"synonym table {file} does not exist")
    return _parse_synonyms(file.read_text(encoding="utf-8").splitlines(), str(file))


def _count(fraction: float, words: int) -> int:
    """How many words an operation touches: ``fraction`` of them rounded down, at least one (EDA's
    ``n = max(1, int(alpha * num_words))``)."""
    return max(1, int(fraction * words))


class _WordOp(TextAugmenter):
    class Params(Augmenter.Params):
        """How much of each sentence changes."""

        alpha: float = Field(0.1, gt=0.0, le=1.0, description="fraction of the words changed (at least one)")
        synonyms: Path | None = Field(None, description="a synonym table (word<TAB>syn,syn per line); "
                                                        "unset: the shipped table")

    def _table(self) -> dict[str, tuple[str, ...]]:
        return load_synonyms(None if self.params.synonyms is None else str(self.params.synonyms))

    def check_data(self, ds: Dataset) -> list[tuple[str, str]]:
        """A synonym table that cannot be read, found once the source is loaded, before any step
        (``validate`` reads no file)."""
        try:
            self._table()
        except DataError as error:
            return [("synonyms", str(error))]
        return []

    def _augment_text(self, text, rng, params, row):
        words = text.split()
        return " ".join(self._words(words, rng)) if words else text

    def _words(self, words: list[str], rng: random.Random) -> list[str]:
        raise NotImplementedError


_AROUND = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def _parts(word: str) -> tuple[str, str, str]:
    """A token as (punctuation before, the word, punctuation after): ``"Cheap,"`` -> ``("", "Cheap", ",")``."""
    found = _AROUND.match(word)
    return (found.group(1), found.group(2), found.group(3)) if found else ("", word, "")


def _like(synonym: str, word: str) -> str:
    """`synonym` in the case of `word` (``Great`` -> ``Excellent``, ``GOOD`` -> ``FINE``)."""
    if len(word) > 1 and word.isupper():
        return synonym.upper()
    return synonym[:1].upper() + synonym[1:] if word[:1].isupper() else synonym


def _synonym_replacement(words: list[str], rng: random.Random, alpha: float,
                         table: Mapping[str, tuple[str, ...]]) -> list[str]:
    # looked up without the punctuation around a word and in lower case, as EDA's code does; the
    # replacement keeps the punctuation and the word's case
    parts = [_parts(w) for w in words]
    candidates = [i for i, (_, core, _) in enumerate(parts) if core.lower() in table]
    rng.shuffle(candidates)
    out = list(words)
    for i in candidates[:_count(alpha, len(words))]:
        before, core, after = parts[i]
        out[i] = before + _like(rng.choice(table[core.lower()]), core) + after
    return out


def _word_insertion(words: list[str], rng: random.Random, alpha: float,
                    table: Mapping[str, tuple[str, ...]]) -> list[str]:
    out = list(words)
    candidates = [core.lower() for _, core, _ in map(_parts, words) if core.lower() in table]
    if not candidates:
        return out
    for _ in range(_count(alpha, len(words))):
        out.insert(rng.randrange(len(out) + 1), rng.choice(table[rng.choice(candidates)]))
    return out


def _word_swap(words: list[str], rng: random.Random, alpha: float, table: Any = None) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(_count(alpha, len(words))):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def _word_deletion(words: list[str], rng: random.Random, alpha: float, table: Any = None) -> list[str]:
    if len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() >= alpha]
    return kept or [rng.choice(words)]


class SynonymReplacement(_WordOp):
    """EDA synonym replacement: alpha x the sentence's words (at least one, at most the words that have
    synonyms) become a random synonym."""

    name = "synonym-replacement"

    def _words(self, words, rng):
        return _synonym_replacement(words, rng, self.params.alpha, self._table())


class WordInsertion(_WordOp):
    """EDA random insertion: a synonym of a random word is inserted at a random place, alpha times the length."""

    name = "word-insertion"

    def _words(self, words, rng):
        return _word_insertion(words, rng, self.params.alpha, self._table())


class WordSwap(_WordOp):
    """EDA random swap: two random words trade places, alpha times the length."""

    name = "word-swap"

    def _words(self, words, rng):
        return _word_swap(words, rng, self.params.alpha)


class WordDeletion(_WordOp):
    """EDA random deletion: each word is deleted with probability alpha (one word always stays)."""

    name = "word-deletion"

    def _words(self, words, rng):
        return _word_deletion(words, rng, self.params.alpha)


_EDA_OPS: dict[str, Callable[..., list[str]]] = {
    "synonym-replacement": _synonym_replacement, "word-insertion": _word_insertion,
    "word-swap": _word_swap, "word-deletion": _word_deletion,
}


class Eda(_WordOp):
    """EDA: each row gets one of synonym replacement, insertion, swap and deletion, drawn per row."""

    name = "eda"

    class Params(_WordOp.Params):
        """Which EDA operations are drawn from."""

        ops: list[Literal["synonym-replacement", "word-insertion", "word-swap", "word-deletion"]] = Field(
            ["synonym-replacement", "word-insertion", "word-swap", "word-deletion"], min_length=1,
            description="the operations one is drawn from per row")

    def _make_params(self, x, y, generator):
        device = generator.device if generator is not None else torch.device("cpu")
        return {"op": torch.randint(0, len(self.params.ops), (len(x),), generator=generator, device=device)}

    def _augment_text(self, text, rng, params, row):
        words = text.split()
        if not words:
            return text
        op = _EDA_OPS[self.params.ops[int(params["op"][row])]]
        return " ".join(op(words, rng, self.params.alpha, self._table()))


# ---------------------------------------------------------------------- characters
_ROWS = ("1234567890-", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """For each key of a staggered QWERTY keyboard, the keys touching it: left and right, the two
    above (same and next position) and the two below (previous and same position)."""
    where = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    touching = {(0, -1), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0)}
    return {c: "".join(sorted(d for d, (r2, i2) in where.items() if (r2 - r, i2 - i) in touching))
            for c, (r, i) in where.items()}


#: For each key, its neighbours on a QWERTY keyboard (lower case; upper case keeps its case).
KEYBOARD_NEIGHBOURS: dict[str, str] = _keyboard_neighbours()
#: Characters OCR engines confuse: setforge's own table in the manner of nlpaug's OCR augmenter
#: (most pairs both ways; not nlpaug's table, which has pairs this lacks and lacks some of these).
OCR_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "0": ("8", "9", "o", "O", "D"), "1": ("4", "7", "l", "I"), "2": ("z",), "5": ("8",), "6": ("b",),
    "8": ("s", "S", "@", "&"), "9": ("g",), "o": ("0",), "O": ("0",), "D": ("0",), "l": ("1",), "I": ("1",),
    "z": ("2",), "b": ("6",), "s": ("8",), "S": ("8",), "g": ("9", "q"), "q": ("g",), "e": ("c",), "c": ("e",),
    "m": ("rn",), "u": ("v",), "v": ("u",), "B": ("8",), "G": ("6",), "Z": ("2",),
}


class _CharNoise(TextAugmenter):
    class Params(Augmenter.Params):
        """How many words and characters change."""

        word_p: float = Field(0.3, gt=0.0, le=1.0, description="fraction of the eligible words changed (at least one)")
        char_p: float = Field(0.3, gt=0.0, le=1.0, description="fraction of a changed word's eligible characters "
                                                               "replaced (at least one)")
        max_words: int = Field(10, ge=1, le=10_000, description="most words changed per row")
        max_chars: int = Field(10, ge=1, le=10_000, description="most characters changed per word")
        min_length: int = Field(4, ge=1, le=100, description="words shorter than this are left alone")

    def _replacements(self, char: str) -> Sequence[str]:
        raise NotImplementedError

    def _augment_text(self, text, rng, params, row):
        words = text.split(" ")
        eligible = [i for i, w in enumerate(words) if len(w) >= self.params.min_length
                    and any(self._replacements(c) for c in w)]
        if not eligible:
            return text
        rng.shuffle(eligible)
        p = self.params
        for i in eligible[:min(p.max_words, _count(p.word_p, len(eligible)))]:
            chars = list(words[i])
            where = [j for j, c in enumerate(chars) if self._replacements(c)]
            rng.shuffle(where)
            for j in where[:min(p.max_chars, _count(p.char_p, len(where)))]:
                chars[j] = rng.choice(self._replacements(chars[j]))
            words[i] = "".join(chars)
        return " ".join(words)


class KeyboardNoise(_CharNoise):
    """Typos: characters replaced by a neighbouring key on a QWERTY keyboard (like nlpaug's KeyboardAug)."""

    name = "keyboard-noise"

    def _replacements(self, char):
        near = KEYBOARD_NEIGHBOURS.get(char.lower(), "")
        return near.upper() if char.isupper() else near


class OcrNoise(_CharNoise):
    """OCR errors: characters replaced by ones an OCR engine confuses them with (like nlpaug's OcrAug)."""

    name = "ocr-noise"

    def _replacements(self, char):
        return OCR_CONFUSIONS.get(char, ())


AUGMENTERS = (SynonymReplacement, WordInsertion, WordSwap, WordDeletion, Eda, KeyboardNoise, OcrNoise)
