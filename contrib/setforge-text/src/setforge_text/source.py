"""``text-file``: labelled texts from a CSV or JSON Lines file (a text column and a label column)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator

from setforge import ConfigError, DataError, Dataset, Source, StepContext, sort_class_names

__all__ = ["TextFileSource"]


def _label_text(label: object) -> str:
    """A JSON label as the class name a CSV cell with it would give: ``1.0`` is ``1`` (JSON numbers
    ``1`` and ``1.0`` are one label, as ``"1"`` is), ``true`` is ``true`` (not Python's ``True``)."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label).strip()


class TextFileSource(Source):
    """Labelled texts from a CSV file (with a header line) or a JSON Lines file (one object a line).

    ``text`` and ``label`` name the two fields; other fields are ignored. Class names are the
    labels found, sorted, or ``classes`` when given (a label outside it is an invalid row). A row
    whose text is missing or empty, or whose label is missing, is invalid: it stops the run naming
    the line, or is dropped and counted with ``source.on_invalid: drop``.
    """

    name = "text-file"
    modalities = ("text",)

    class Params(Source.Params):
        """Where the texts are and which fields mean what."""

        path: Path = Field(Path("texts.csv"), description="the CSV or JSONL file (relative to the run file's folder)")
        format: Literal["auto", "csv", "jsonl"] = Field("auto", description="auto: by the file's suffix "
                                                        "(.jsonl and .ndjson are JSON Lines, anything else CSV)")
        text: str = Field("text", min_length=1, description="the field holding the text")
        label: str = Field("label", min_length=1, description="the field holding the class")
        classes: list[str] | None = Field(None, description="the class names in order; unset: the labels found, sorted")
        delimiter: str = Field(",", min_length=1, max_length=1, description="the CSV field separator")

        @field_validator("classes")
        @classmethod
        def _unique(cls, value: list[str] | None) -> list[str] | None:
            if value is not None and len(set(value)) != len(value):
                raise ValueError(f"names a class twice: {value}")
            return value

    @classmethod
    def make_testing_params(cls, folder: Path) -> dict[str, object]:
        """The plugin's small labelled set, written as CSV, for the conformance kit."""
        from .data import write_sample

        return {"path": str(write_sample(Path(folder) / "texts.csv"))}

    def _load(self, ctx: StepContext) -> Dataset:
        params = self.params
        path = Path(params.path).expanduser()
        if not path.is_file():
            raise ConfigError(problems=[("source.params.path", f"text-file: {str(path)!r} is not a file")])
        fmt = params.format
        if fmt == "auto":
            fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
        try:
            records = self._jsonl(path) if fmt == "jsonl" else self._csv(path)
        except UnicodeDecodeError as error:
            raise DataError(f"source 'text-file': {path.name} is not UTF-8 text (byte {error.start}: "
                            f"{error.reason}); save it as UTF-8") from None
        texts, labels = [], []
        for line, record in records:
            text, label = record.get(params.text), record.get(params.label)
            if text is None or (isinstance(text, str) and not text.strip()):
                self._invalid(f"{path.name}, line {line}", f"missing or empty text field {params.text!r}")
                continue
            if label is None or str(label).strip() == "":
                self._invalid(f"{path.name}, line {line}", f"missing label field {params.label!r}")
                continue
            label = _label_text(label)
            if params.classes is not None and label not in params.classes:
                self._invalid(f"{path.name}, line {line}", f"label {label!r} is not among classes {params.classes}")
                continue
            texts.append(str(text))
            labels.append(label)
        if not texts:
            raise DataError(f"source 'text-file': {path} holds no valid rows")
        classes = tuple(params.classes) if params.classes is not None else tuple(sort_class_names(labels))
        index = {c: i for i, c in enumerate(classes)}
        return Dataset(x=texts, y=torch.tensor([index[label] for label in labels], dtype=torch.int64),
                       classes=classes, modality="text")

    def _csv(self, path: Path) -> list[tuple[int, dict]]:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # (a byte-order mark, as Excel writes, is fine)
            reader = csv.DictReader(handle, delimiter=self.params.delimiter)
            missing = [f for f in (self.params.text, self.params.label) if f not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"source 'text-file': {path.name} has no column {missing[0]!r} "
                                f"(its header: {reader.fieldnames})")
            return [(reader.line_num, row) for row in reader]

    def _jsonl(self, path: Path) -> list[tuple[int, dict]]:
        out = []
        # records end at \n only: str.splitlines would also cut at U+2028, U+0085 ... inside a JSON string
        for line, raw in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as error:
                self._invalid(f"{path.name}, line {line}", f"not JSON ({error.msg})")
                continue
            if not isinstance(record, dict):
                self._invalid(f"{path.name}, line {line}", "not a JSON object")
                continue
            out.append((line, record))
        return out
