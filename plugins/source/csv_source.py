"""``csv``: a table with a header line, one row per sample and a label column."""

from __future__ import annotations

import collections
import csv
import math
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from setforge.components import Source
from setforge.context import StepContext
from setforge.dataset import Dataset, FeatureInfo, Splits, sort_class_names
from setforge.errors import DataError

from ._files import encode_groups, encode_labels, existing_path

__all__ = ["CsvSource", "MISSING"]

#: Cells read as missing values by default (pandas' usual spellings); ``missing`` replaces the list.
MISSING = ("", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "?")


#: Numbers as pandas reads them: ASCII digits, no ``_`` separators (Python's float() takes
#: ``1_000`` and full-width digits, which pandas reads as text), and inf / nan spelt out.
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_INT = re.compile(r"[+-]?[0-9]+")

#: A column found categorical (not declared) with at least this share of distinct values, in a table
#: of at least `_ID_MIN_ROWS` rows, reads as an id, a date or free text: a warning names it.
_ID_SHARE, _ID_MIN_ROWS = 0.9, 20


def _parses(text: str, kind: type) -> bool:
    return (_INT if kind is int else _FLOAT).fullmatch(text.strip()) is not None


class CsvSource(Source):
    """A CSV table: a header line, a label column, numeric and categorical feature columns.

    Columns other than ``label``, ``group`` and ``ignore`` are features, in file order. Numeric
    columns become float32 values; categorical ones become float32 codes ``0..K-1`` of their
    sorted categories (numbers by value, else as text), listed in ``Dataset.features``
    (`FeatureInfo`: names, categories, original dtypes ``int64``/``float64``/``str``) so the
    ``csv`` output writes the original values back. With ``categorical`` unset, every column holding
    a value that is not a number is categorical; with a list, exactly those are, and a value that is
    not a number in another column is an invalid row.

    Class names are the label column's values, sorted (numbers by value), or ``classes`` when given
    (a label outside it is an invalid row). ``group`` names a column of group ids for
    ``split.group_by``.

    Invalid rows — a missing value (an empty cell or one of ``missing``) in a used column, a
    ragged line (more or fewer fields than the header), an infinite number, an unknown label —
    stop the run naming the line and column, or are dropped and counted with
    ``source.on_invalid: drop``. Blank lines are skipped. Integers above 2**24 lose precision in
    float32. A column found categorical (``categorical`` unset) with a different value in (nearly)
    every row, an id, a date or free text, is kept but warned about (a `UserWarning`), naming
    ``ignore``.

    With ``unlabelled: keep``, a row whose label cell is missing (empty or one of ``missing``) is
    an unlabelled row: held apart from train, val and test (`Splits.unlabelled`, for steps such as
    ``pseudo-label``), its features read and checked like every row's; the class list is that of
    the labelled rows. A table with no such row loads as usual.
    """

    name = "csv"
    modalities = ("tabular",)

    class Params(Source.Params):
        """Where the table is and which columns mean what."""

        path: Path = Field(Path("data.csv"), description="the CSV file (relative to the run file's folder)")
        label: str = Field("label", min_length=1, description="the column holding the class of each row")
        categorical: list[str] | None = Field(None, description="categorical feature columns; unset: every column "
                                                                "with a value that is not a number")
        classes: list[str] | None = Field(None, description="the class names in order; unset: the labels found, sorted")
        categories: dict[str, list[str]] = Field(
            default_factory=dict, description="categorical columns with their categories in code order (a value "
                                              "outside them is an invalid row); other categorical columns code "
                                              "their values found, sorted")
        group: str | None = Field(None, description="a column of group ids (for split.group_by); not a feature")
        ignore: list[str] = Field(default_factory=list, description="columns to leave out (ids, free text)")
        delimiter: str = Field(",", min_length=1, max_length=1, description="the field separator")
        missing: list[str] = Field(list(MISSING), description="cell values that mean a missing value "
                                                              "(compared after trimming spaces)")
        unlabelled: Literal["invalid", "keep"] = Field(
            "invalid", description="a row with a missing label cell: invalid (like any missing value) or "
                                   "keep (an unlabelled row, held apart from train/val/test for pseudo-label)")

        @field_validator("classes")
        @classmethod
        def _unique_classes(cls, value: list[str] | None) -> list[str] | None:
            if value is not None and len(set(value)) != len(value):
                raise ValueError(f"names a class twice: {value}")
            return value

    @classmethod
    def make_testing_params(cls, folder: Path) -> dict[str, object]:
        """A small fixture for the conformance kit: 12 rows, a numeric, an integer and a categorical column."""
        path = Path(folder) / "kit.csv"
        lines = ["width,count,colour,label"] + [f"{0.5 * i},{i % 4},{('red', 'blue')[i % 2]},{('x', 'y', 'z')[i % 3]}"
                                                 for i in range(12)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {"path": str(path)}

    def _load(self, ctx: StepContext) -> Dataset | Splits:
        params = self.params
        path = existing_path(params.path, "csv")
        header, lines = self._read(path)
        special = self._special_columns(header, path)
        features = [c for c in header if c not in special]
        if not features:
            raise DataError(f"csv {path.name}: no feature columns besides {sorted(special)}")
        position = {c: i for i, c in enumerate(header)}  # (names are unique: _read refuses a repeated one)
        used = [position[c] for c in [params.label] + ([params.group] if params.group else []) + features]
        missing = {m.strip() for m in params.missing}
        bad: dict[int, tuple[str, str]] = {}  # line -> (place within the line, reason)
        kept: list[tuple[int, list[str]]] = []
        unlabelled: set[int] = set()  # lines whose label cell is missing, kept with unlabelled: keep
        checked = used[1:] if params.unlabelled == "keep" else used  # used[0]: the label column
        for line, row in lines:
            if len(row) != len(header):
                bad[line] = (f" ({len(row)} fields, the header has {len(header)})", "ragged row")
                continue
            empty = next((header[i] for i in checked if row[i] in missing), None)
            if empty is not None:
                hint = " (an unlabelled row? set source.params.unlabelled: keep)" if empty == params.label else ""
                bad[line] = (f", column {empty!r}{hint}", "missing value")
                continue
            if row[used[0]] in missing:
                unlabelled.add(line)
            elif params.classes is not None and row[used[0]] not in params.classes:
                # (dropped before the columns' types are read, which a row that does not stay must not sway)
                bad[line] = (f", column {params.label!r} ({row[used[0]]!r})", f"label outside the class list {params.classes}")
                continue
            kept.append((line, row))

        # Which columns are categorical: declared, or holding a value that is not a number.
        if params.categorical is None:
            categorical_columns = [c for c in features if c in params.categories
                                   or not all(_parses(row[position[c]], float) for _, row in kept)]
        else:
            categorical_columns = [c for c in features if c in {*params.categorical, *params.categories}]

        # Rows still invalid: numbers that are not numbers or not finite, labels outside the classes.
        good: list[tuple[int, list[str]]] = []
        for line, row in kept:
            reason: tuple[str, str] | None = None
            for column in features:
                if column in params.categories and row[position[column]] not in params.categories[column]:
                    reason = (f", column {column!r} ({row[position[column]]!r})",
                              f"category outside {params.categories[column]}")
                    break
                if column in categorical_columns:
                    continue
                text = row[position[column]]
                if not _parses(text, float):
                    reason = (f", column {column!r} ({text!r})",
                              "not a number (list the column in categorical, or fix the value)")
                elif not math.isfinite(float(text)):
                    reason = (f", column {column!r} ({text!r})", "not a finite number")
                if reason:
                    break
            if reason is None:
                good.append((line, row))
            else:
                bad[line] = reason
        for line in sorted(bad):
            self._invalid(f"csv {path.name}: line {line}{bad[line][0]}", bad[line][1])
        if not good:
            raise DataError(f"csv {path.name}: no valid rows ({len(bad)} invalid, dropped: {self.dropped})")
        pool = np.array([line in unlabelled for line, _ in good])
        if pool.all():
            raise DataError(f"csv {path.name}: every valid row is unlabelled (column {params.label!r} missing); "
                            f"label some rows")

        # Types, categories and classes from the rows that stay.
        x = np.zeros((len(good), len(features)), dtype=np.float32)
        categorical: dict[str, tuple[str, ...]] = {}
        dtypes: dict[str, str] = {}
        for j, column in enumerate(features):
            values = [row[position[column]] for _, row in good]
            numeric = all(_parses(v, float) for v in values)
            dtypes[column] = "int64" if numeric and all(_parses(v, int) for v in values) else \
                "float64" if numeric else "str"
            if column in categorical_columns:
                categorical[column] = tuple(params.categories.get(column) or sort_class_names(values))
                if params.categorical is None and column not in params.categories:
                    self._warn_if_an_id(path, column, len(set(values)), len(values))
                index = {name: i for i, name in enumerate(categorical[column])}
                x[:, j] = [index[v] for v in values]
            else:
                x[:, j] = [float(v) for v in values]
        labels = np.zeros(len(good), dtype=np.int64)  # unlabelled rows keep 0 (no meaning)
        labels[~pool], classes, _ = encode_labels([row[position[params.label]] for (_, row), u in zip(good, pool)
                                                   if not u], params.classes)
        groups = None
        if params.group:
            groups = encode_groups([row[position[params.group]] for _, row in good])
        info = FeatureInfo(names=features, categorical=categorical, dtypes=dtypes, label=params.label)

        def dataset(rows: np.ndarray) -> Dataset:
            return Dataset(x=torch.from_numpy(x[rows]), y=torch.from_numpy(labels[rows]), classes=classes,
                           modality="tabular", groups=None if groups is None else torch.from_numpy(groups[rows]),
                           features=info)

        if not pool.any():
            return dataset(np.arange(len(good)))
        return Splits(train=dataset(np.flatnonzero(~pool)), unlabelled=dataset(np.flatnonzero(pool)))

    @staticmethod
    def _warn_if_an_id(path: Path, column: str, distinct: int, rows: int) -> None:
        """Warn (a `UserWarning`) about a column found categorical with (nearly) one value per row:
        an id, a date or free text as a feature, whose values resampled and generated rows copy
        from real rows (SMOTE-NC's new rows carry a real patient's id)."""
        if rows >= _ID_MIN_ROWS and distinct >= _ID_SHARE * rows:
            warnings.warn(f"csv {path.name}: column {column!r} holds {distinct} different values in {rows} rows, so it "
                          f"became a categorical feature with {distinct} categories (an id, a date or free text?), "
                          f"whose values new rows copy from real ones; leave it out with source.params.ignore: "
                          f"[{column}] (or list the categorical columns in source.params.categorical to keep it)",
                          stacklevel=2)

    def _read(self, path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
        """The header and the non-blank rows (with the numbers of the lines they start on), cells trimmed."""
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle, delimiter=self.params.delimiter)
                header: list[str] | None = None
                lines: list[tuple[int, list[str]]] = []
                last = 0  # a quoted cell may span lines: a row is named by the line it starts on
                for row in reader:
                    first, last = last + 1, reader.line_num
                    cells = [cell.strip() for cell in row]
                    if not any(cells) and len(cells) <= 1:
                        continue
                    if header is None:
                        header = cells
                    else:
                        lines.append((first, cells))
        except UnicodeDecodeError as error:
            raise DataError(f"csv {path.name}: not UTF-8 text ({error.reason} at byte {error.start}); "
                            f"save the file as UTF-8") from None
        except csv.Error as error:
            raise DataError(f"csv {path.name}: cannot be parsed: {error}") from None
        if header is None:
            raise DataError(f"csv {path.name}: the file is empty; it needs a header line and rows")
        if not lines:
            raise DataError(f"csv {path.name}: a header but no rows")
        return header, lines

    def _special_columns(self, header: list[str], path: Path) -> set[str]:
        """The columns that are not features (label, group, ignored), after checking that every named
        column exists and the header names each column once."""
        params = self.params
        repeated = sorted(c for c, k in collections.Counter(header).items() if k > 1)
        if repeated:
            raise DataError(f"csv {path.name}: the header names columns {repeated} more than once")
        if "" in header:
            raise DataError(f"csv {path.name}: column {header.index('') + 1} of the header has no name")
        named = {"label": [params.label], "group": [params.group] if params.group else [],
                 "ignore": params.ignore, "categorical": params.categorical or [], "categories": list(params.categories)}
        for what, names in named.items():
            absent = [c for c in names if c not in header]
            if absent:
                raise DataError(f"csv {path.name}: {what} column(s) {absent} not in the header {header} "
                                f"(set source.params.{what})")
        special = {params.label, *named["group"], *params.ignore}
        clash = sorted(special & {*(params.categorical or []), *params.categories})
        if clash:
            raise DataError(f"csv {path.name}: columns {clash} are listed in categorical or categories but are the "
                            f"label, group or ignored")
        return special
