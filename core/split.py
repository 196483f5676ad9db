"""From the source's rows to the real train / val / test parts, before any step.

The source's rows (its own `Splits`, or one `Dataset`) are checked and joined (`SourceRows`);
duplicates are dropped (``source.deduplicate``), keeping the copy in the test part, then val,
then train, so that no copy straddles two parts; the rows are split (the source's own parts, a
missing part carved from train; else stratified ``split.test`` / ``split.val`` shares, or whole
groups with ``split.group_by``); with ``split.drop_leaked`` training rows that copy a test row go.
Randomness: ``Rng(seed, ("split",))`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from .dataset import Dataset, Splits
from .errors import DataError
from .rng import Rng
from .steps import round_half_up

__all__ = ["SourceRows", "SplitResult", "source_rows", "exact_keep", "split_rows", "carve", "split_index"]

#: Which copy of a duplicate is kept: the one in the lowest-ranked part.
PART_RANK = {"test": 0, "val": 1, "train": 2, "all": 2}


@dataclass
class SourceRows:
    """The source's rows joined into one `Dataset`, with the part (``all``, or ``train`` / ``val``
    / ``test`` of the source's own split) each row came from."""

    all: Dataset
    part_names: list[str]
    part_sizes: list[int]
    part_of: np.ndarray
    own_split: bool
    dropped: dict[str, int] = field(default_factory=dict)

    def rank(self) -> np.ndarray:
        """Each row's `PART_RANK` (the copy kept of a duplicate is the lowest)."""
        return np.array([PART_RANK[self.part_names[p]] for p in self.part_of])


@dataclass
class SplitResult:
    """The real parts, and which source rows went where (``index``) or were dropped."""

    index: dict[str, np.ndarray]
    method: str
    carved: list[str]
    duplicate_index: np.ndarray
    leaked_index: np.ndarray
    raw_train: Dataset
    val: Dataset
    test: Dataset


def source_rows(name: str, result: Dataset | Splits, device: torch.device, group_by: bool,
                dropped: Mapping[str, int]) -> SourceRows:
    """Check and join what source `name` loaded (bad data: `DataError`)."""
    # (a source whose Splits carry only training rows, beside unlabelled ones, brings no split of its own)
    own = isinstance(result, Splits) and (result.val is not None or result.test is not None)
    parts = {k: getattr(result, k) for k in ("train", "val", "test") if getattr(result, k) is not None} if own else \
        {"all": result.train if isinstance(result, Splits) else result}
    first = next(iter(parts.values()))
    if any((p.groups is None) != (first.groups is None) for p in parts.values()):
        raise DataError(f"source '{name}': either every part of its split has groups or none does")
    for part, ds in parts.items():
        if len(ds) == 0 and part in ("all", "train"):
            raise DataError(f"source '{name}' gave no rows" + ("" if part == "all" else " for training"))
    sizes = [len(p) for p in parts.values()]
    rows = SourceRows(Dataset.concat([p.to(device) for p in parts.values()]).replace(row_id=None), list(parts), sizes,
                      np.repeat(np.arange(len(parts)), sizes), own, dict(sorted(dropped.items())))
    present = [c for c, n in zip(rows.all.classes, rows.all.class_counts()) if n]
    if len(present) < 2:
        raise DataError(f"source '{name}': every row is of class {present[0]!r}; setforge optimises training sets "
                        f"of classifiers, which need rows of at least two classes "
                        f"(the class list is {list(rows.all.classes)})")
    if group_by and rows.all.groups is None:
        raise DataError(f"split.group_by: source '{name}' gives no groups to keep together")
    return rows


def exact_keep(rows: SourceRows) -> np.ndarray:
    """Indices of the rows kept after exact de-duplication (first of each copy by part rank, then order)."""
    n = len(rows.all)
    order = np.lexsort((np.arange(n), rows.rank()))
    _, first = np.unique(rows.all.row_keys()[order], return_index=True)
    return np.sort(order[first])


def carve(index: np.ndarray, y: np.ndarray, groups: np.ndarray | None, shares: Mapping[str, float],
          rng: np.random.Generator, stratify: bool, num_classes: int) -> dict[str, np.ndarray]:
    """Divide the rows `index` into the parts named in `shares` (shares of these rows) and ``rest``.

    Stratified: ``round(n * share)`` rows to each part, shared out among the classes in proportion
    to their rows by largest remainders, ties drawn at random (as scikit-learn's stratified splits),
    at least one row of every class left in ``rest``. With `groups`: whole groups, no group in two
    parts, the largest first (equal sizes in a random order), each to the part it brings closest
    to its share of every class's rows (stratified; else of all rows), squared distance, ``rest``
    included; a part other than ``rest`` takes a group only when it comes closer with it. Group
    sizes make the shares approximate.
    """
    names = list(shares)
    out: dict[str, list[np.ndarray]] = {name: [] for name in [*names, "rest"]}
    if groups is not None:
        unique, inverse = np.unique(groups[index], return_inverse=True)
        by_group = index[np.argsort(inverse, kind="stable")]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(unique)))])
        held = np.zeros((len(unique), num_classes if stratify else 1))  # each group's rows (of each class)
        np.add.at(held, (inverse, y[index] if stratify else 0), 1)
        parts = ["rest", *names]
        targets = np.array([1 - sum(shares.values()), *shares.values()])[:, None] * held.sum(0)
        filled, order = np.zeros_like(targets), rng.permutation(len(unique))
        for g in order[np.argsort(-held[order].sum(1), kind="stable")].tolist():  # the largest groups first
            gain = ((filled + held[g] - targets) ** 2).sum(1) - ((filled - targets) ** 2).sum(1)
            gain[1:][gain[1:] >= 0] = np.inf  # a part other than rest takes a group only to come closer
            filled[part := int(np.argmin(gain))] += held[g]
            out[parts[part]].append(by_group[bounds[g]:bounds[g + 1]])
    elif stratify:
        members = [rng.permutation(index[y[index] == c]) for c in range(num_classes)]
        sizes = np.array([len(m) for m in members])
        room, takes = np.maximum(sizes - 1, 0), []  # a row of every class stays in rest, for training
        for name in names:
            quota = sizes * shares[name]
            take = np.minimum(np.floor(quota), room).astype(np.int64)
            larger = [c for c in np.lexsort((rng.random(len(sizes)), np.floor(quota) - quota)) if take[c] < room[c]]
            take[larger[:round_half_up(len(index) * shares[name]) - int(take.sum())]] += 1
            room, takes = room - take, [*takes, take]
        for c, rows in enumerate(members):
            for name, piece in zip([*names, "rest"], np.split(rows, np.cumsum([take[c] for take in takes]))):
                out[name].append(piece)
    else:
        members = rng.permutation(index)
        start = 0
        for name in names:
            count = round_half_up(len(index) * shares[name])
            out[name].append(members[start:start + count])
            start += count
        out["rest"].append(members[start:])
    return {name: np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            for name, parts in out.items()}


def split_index(keep: np.ndarray, y: np.ndarray, groups: np.ndarray | None, part_of: np.ndarray | None,
                split: object, seed: int, num_classes: int) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """The rows `keep` (indices into `y`) of each part, the split's method and the parts carved:
    the source's own parts (`part_of`: each row's ``train`` / ``val`` / ``test``, None: no own
    split), a missing part carved from train; else stratified (or grouped) shares."""
    rng = Rng(seed, ("split",))
    if part_of is None:
        carved = carve(keep, y, groups, {"test": split.test, "val": split.val}, rng.spawn("all").numpy,
                       split.stratify, num_classes)
        method = "grouped" if groups is not None else ("stratified" if split.stratify else "random")
        return {"train": carved["rest"], "val": carved["val"], "test": carved["test"]}, method, ["val", "test"]
    part_index = {name: keep[part_of[keep] == name] for name in ("train", "val", "test")}
    if groups is not None:  # the source's parts are kept as they are: a group across them cannot be mended
        seen = [set(groups[idx].tolist()) for idx in part_index.values()]
        if split_groups := sorted((seen[0] & seen[1]) | (seen[0] & seen[2]) | (seen[1] & seen[2])):
            raise DataError(f"split.group_by: the source's own split puts {len(split_groups)} group(s) in more than "
                            f"one of train, val and test (groups {split_groups[:5]}{' ...' if len(split_groups) > 5 else ''}); "
                            f"setforge keeps a source's split as it is, so keep each group in one part of the "
                            f"source's split, or set split.group_by: false")
    if missing := {name: getattr(split, name) for name in ("test", "val") if name not in part_of}:
        carved = carve(part_index["train"], y, groups, missing, rng.spawn("train").numpy, split.stratify, num_classes)
        part_index.update({"train": carved["rest"], **{name: carved[name] for name in missing}})
    method = "source" + (f" (carved {', '.join(sorted(missing))} from train)" if missing else "")
    return part_index, method, sorted(missing)


def split_rows(rows: SourceRows, keep: np.ndarray, split: object, seed: int,
               leaked: Callable[[Dataset, Dataset], np.ndarray] | None) -> SplitResult:
    """Split the kept rows (`keep`) by the run file's `split` section; `leaked(train, test)` marks
    the training rows that copy a test row (``split.drop_leaked``)."""
    groups = None if not split.group_by else rows.all.groups.cpu().numpy()
    part_of = None if not rows.own_split else np.array(rows.part_names)[rows.part_of]
    index, method, carved_parts = split_index(keep, rows.all.y.cpu().numpy(), groups, part_of, split, seed,
                                              rows.all.num_classes)
    leaked_index = np.zeros(0, dtype=np.int64)
    if split.drop_leaked and leaked is not None and len(index["test"]) and len(index["train"]):
        train_part, test_part = (rows.all[torch.as_tensor(index[k], dtype=torch.int64)] for k in ("train", "test"))
        mask = leaked(train_part, test_part)
        leaked_index = index["train"][mask]
        index["train"] = index["train"][~mask]
    if len(index["train"]) == 0:
        raise DataError("the split left no training rows; lower split.test and split.val or add data")
    parts = {name: rows.all[torch.as_tensor(idx, dtype=torch.int64)].replace(row_id=None) for name, idx in index.items()}
    duplicate_index = np.setdiff1d(np.arange(len(rows.all)), keep)
    return SplitResult(index, method, carved_parts, duplicate_index, leaked_index, parts["train"], parts["val"],
                       parts["test"])
