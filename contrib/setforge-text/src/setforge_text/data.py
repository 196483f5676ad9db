"""A small labelled text set the plugin writes itself (no download): short topic sentences.

Three classes, long-tailed (``sport`` 90, ``food`` 40, ``tech`` 14 rows), made from word lists
with a fixed seed, so every run of ``write_sample`` writes the same file. Each sentence mixes a
few topic words with words all topics share, so a model must learn which words matter::

    setforge-text-sample DIR            # writes DIR/texts.csv (or: python -m setforge_text.data DIR)
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

__all__ = ["sample_rows", "write_sample", "COUNTS"]

COUNTS = {"sport": 90, "food": 40, "tech": 14}
_TOPIC = {
    "sport": {"noun": ["team", "match", "player", "coach", "goal", "fans", "record", "final", "game", "league"],
              "verb": ["won", "lost", "scored", "played", "trained", "defended"],
              "adj": ["fast", "strong", "late", "great", "weak"]},
    "food": {"noun": ["soup", "bread", "sauce", "dish", "meal", "cafe", "restaurant", "cook", "pie", "salad"],
             "verb": ["served", "baked", "tasted", "cooked", "ordered", "made"],
             "adj": ["tasty", "fresh", "spicy", "sweet", "hot"]},
    "tech": {"noun": ["phone", "computer", "screen", "battery", "software", "update", "device", "bug", "app", "chip"],
             "verb": ["crashed", "updated", "fixed", "installed", "charged", "made"],
             "adj": ["new", "slow", "cheap", "bright", "expensive"]},
}
_SHARED = {"subject": ["the", "our", "a", "this", "my", "their"],
           "tail": ["today", "again", "this week", "last night", "very quickly", "as people said",
                    "in the city", "for the price", "and everyone was happy", "which was a problem"],
           "adj": ["good", "bad", "old", "big", "small", "quiet"]}


def sample_rows(seed: int = 0) -> list[tuple[str, str]]:
    """The ``(text, label)`` rows, classes interleaved, always the same for one seed."""
    rng = random.Random(seed)
    rows = []
    for label, count in COUNTS.items():
        words = _TOPIC[label]
        for _ in range(count):
            adjective = rng.choice(words["adj"] + _SHARED["adj"])
            first, second = rng.sample(words["noun"], 2)
            text = (f"{rng.choice(_SHARED['subject'])} {adjective} {first} {rng.choice(words['verb'])} "
                    f"the {second} {rng.choice(_SHARED['tail'])}")
            rows.append((text, label))
    rng.shuffle(rows)
    return rows


def write_sample(path: str | Path, seed: int = 0) -> Path:
    """Write the set to `path`: CSV (columns ``text``, ``label``), or JSON Lines for ``.jsonl``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sample_rows(seed)
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows),
                        encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="setforge-text-sample", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write texts.csv")
    parser.add_argument("--jsonl", action="store_true", help="write texts.jsonl instead")
    args = parser.parse_args(argv)
    path = write_sample(args.folder / ("texts.jsonl" if args.jsonl else "texts.csv"))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
