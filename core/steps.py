"""Step semantics, once: the keys the host owns on each step kind, their checks, and the *plan* a
step makes from the class counts of its input, ``{class id: rows to add}`` (DESIGN, "Step
semantics owned by the host"). The run, the dry run, validation, the schema and the reference
docs all read them from here.

- augment: ``copies`` augmented copies of each selected row (originals stay), or one of the
  amount keys as generate takes them (``target: balance`` augments every selected class up to the
  largest, ``per_class: N``, ``multiply: K``), the new rows drawn round-robin from each class's real
  rows; the rows of ``classes``, or with ``minority: true`` of every class below the largest, else
  all classes;
- resample: the sampler decides; its plan is known before the run only when the resampler's
  ``expected_counts(counts, classes)`` knows it;
- generate: one of the *amount keys* (`AMOUNT_KEYS`): ``target: balance`` fills every (selected)
  class up to the current largest class, ``per_class: N`` up to N rows (both count every row of
  the step's input whatever its origin), ``multiply: K`` adds ``round(K * r_c)`` rows to class c,
  r_c its real rows in the input. The generator is fitted once (on the input's real rows, or all
  rows with ``fit_on: all``), then ``sample(labels)``; with nothing to generate it is not fitted.

`amount_plan` is the amount keys' meaning for any kind that takes them, so a new kind (or an
augment ``target``) reuses it instead of spelling the rules again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .dataset import Dataset, Origin
from .errors import ConfigError, DataError, PluginError

__all__ = ["STEP_KINDS", "AMOUNT_KEYS", "StepKind", "KIND", "HOST_KEYS", "ALL_HOST_KEYS", "step_problems",
           "amount_plan", "resolve_classes", "round_half_up", "guard_generated"]

STEP_KINDS = ("augment", "resample", "generate")
#: How many rows a step adds per class: at most one of them on a step (`amount_plan` says what each means).
AMOUNT_KEYS = ("target", "per_class", "multiply")


def round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def amount_plan(amount: Mapping[str, Any], counts: Sequence[int], real: Sequence[int], selected: Sequence[int]
                ) -> list[int]:
    """Rows to add per class for the amount keys given in `amount` (``target``, ``per_class`` or
    ``multiply``; ``target: balance`` when none is), for the classes in `selected`."""
    if amount.get("per_class") is not None:
        wanted = [max(0, int(amount["per_class"]) - n) for n in counts]
    elif amount.get("multiply") is not None:
        # (K is a decimal in the run file: in binary 0.7 * 45 is 31.499999999999996, whose half-up is 31, not
        # 32; 9 places take that error away while K * r stays below about 4 million)
        wanted = [round_half_up(round(float(amount["multiply"]) * r, 9)) for r in real]
    else:  # target: balance
        wanted = [max(counts, default=0) - n for n in counts]
    chosen = set(selected)
    return [w if c in chosen else 0 for c, w in enumerate(wanted)]


Guard = Callable[[Any, str], Any]


@dataclass(frozen=True)
class StepKind:
    """One step kind: its host keys, the key groups of which a step takes at most one, and how it
    plans and runs. The kind key itself and ``params`` are not host keys."""

    name: str
    host_keys: tuple[str, ...]
    exclusive: tuple[tuple[str, ...], ...] = ()
    chains: bool = False  # the kind key may name a list of components, applied in turn (augment)
    nothing_note: str = ""  # what a dry run says of a plan that adds no row
    guarded: bool = False  # the host scores the new rows after the step (``guard``, see the pipeline)

    def selected(self, step: Any, ids: list[int] | None, counts: Sequence[int]) -> list[int]:
        """The class ids a step works on: its resolved ``classes`` (`ids`), the minority classes
        with ``minority: true``, else every class."""
        if ids is not None:
            return ids
        if "minority" in self.host_keys and step.minority:
            return [c for c, n in enumerate(counts) if n < max(counts)]
        return list(range(len(counts)))

    def plan(self, step: Any, ids: list[int] | None, counts: Sequence[int], real: Sequence[int],
             component: Any = None, classes: Sequence[str] = ()) -> list[int] | None:
        """Rows to add per class (negative: rows removed); None when only running the step tells."""
        raise NotImplementedError

    def unfit(self, step: Any, need: Sequence[int], counts: Sequence[int], real: Sequence[int],
              classes: Sequence[str], name: str) -> str:
        """Why rows cannot be made as `need` plans them (a generate step: a class asked for has no
        rows to fit on; `counts` and `real` as in `plan`, `name` the component's); "" when they can."""
        return ""

    def run(self, step: Any, ids: list[int] | None, component: Any, ds: Dataset, ctx: Any, guard: Guard
            ) -> tuple[Dataset, str | None]:
        """Run `component` on `ds` the way this kind does; the output and a note for the report."""
        raise NotImplementedError


def _amount(step: Any) -> dict[str, Any]:
    return {k: getattr(step, k, None) for k in AMOUNT_KEYS}


def _uses_amount(step: Any) -> bool:
    return any(v is not None for v in _amount(step).values())


class _Augment(StepKind):
    """``copies`` of each selected row, or — with an amount key, as generate takes them — as many
    augmented rows per class as `amount_plan` says, drawn round-robin from the class's real rows
    (all its rows when it has no real one), so every source row is used as evenly as possible; a
    last, partial round takes the class's first rows, in the data's order, as a streaming run does."""

    def plan(self, step, ids, counts, real, component=None, classes=()):
        selected = self.selected(step, ids, counts)
        if _uses_amount(step):
            need = amount_plan(_amount(step), counts, real, selected)
            return [k if counts[c] > 0 else 0 for c, k in enumerate(need)]  # a class with no row cannot grow
        chosen = set(selected)
        return [n * step.copies if c in chosen else 0 for c, n in enumerate(counts)]

    def run(self, step, ids, component, ds, ctx, guard):
        counts = ds.class_counts()
        selected = self.selected(step, ids, counts)
        if not _uses_amount(step):
            rows = torch.isin(ds.y, torch.tensor(selected, dtype=torch.int64, device=ds.device)).nonzero().flatten()
            note = "no rows selected: nothing to augment" if rows.numel() == 0 else None
            with guard(component, "augment"):
                return component.augment(ds, ctx, copies=step.copies, rows=rows), note
        need = amount_plan(_amount(step), counts, ds.class_counts(Origin.REAL), selected)
        real = ds.origin == int(Origin.REAL)
        picks = []
        for c, k in enumerate(need):
            if k <= 0:
                continue
            of_class = ds.y == c
            if (source := (of_class & real).nonzero().flatten()).numel() == 0:
                source = of_class.nonzero().flatten()
            if source.numel() == 0:
                continue
            # whole rounds over the class's rows, then its first rows (as a streaming run, batch by batch)
            picks.append(source[torch.arange(k, device=ds.device) % source.numel()])
        if not picks:
            return ds, "nothing to augment: every selected class already has the rows asked for"
        with guard(component, "augment"):
            return component.augment(ds, ctx, copies=1, rows=torch.cat(picks)), None


class _Resample(StepKind):
    def plan(self, step, ids, counts, real, component=None, classes=()):
        after = component.expected_counts(list(counts), list(classes)) if component is not None else None
        return None if after is None else [int(b) - int(a) for a, b in zip(counts, after)]

    def run(self, step, ids, component, ds, ctx, guard):
        with guard(component, "resample"):
            return component.resample(ds, ctx), None


class _Generate(StepKind):
    def plan(self, step, ids, counts, real, component=None, classes=()):
        return amount_plan(_amount(step), counts, real, self.selected(step, ids, counts))

    def unfit(self, step, need, counts, real, classes, name):
        empty = [repr(classes[c]) for c, (k, n) in enumerate(zip(need, counts if step.fit_on == "all" else real)) if k and not n]
        return (f"generate '{name}': no rows of class {', '.join(empty)} to fit on, so it cannot be generated; leave "
                "it out with classes: (or fit_on: all, if earlier steps made some)") if empty else ""

    def run(self, step, ids, component, ds, ctx, guard):
        need = self.plan(step, ids, counts := ds.class_counts(), real := ds.class_counts(Origin.REAL))
        if sum(need) == 0:
            return ds, "nothing to generate: every selected class already has the rows asked for"
        if problem := self.unfit(step, need, counts, real, ds.classes, component.name):  # before training, not after
            raise DataError(problem)
        fit_on = ds if step.fit_on == "all" else ds[ds.origin == int(Origin.REAL)]
        with guard(component, "fit"):
            component.fit(fit_on, ctx)
        labels = torch.repeat_interleave(torch.arange(len(need), device=ds.device), torch.tensor(need, device=ds.device))
        with guard(component, "sample"):
            generated = component.sample(labels, ctx)
        if ctx.workdir is not None:
            try:
                component.save(ctx.workdir / "generator.pt")
            except (PluginError, NotImplementedError):
                pass  # a generator without _state_dict cannot be saved; nothing to keep
        return Dataset.concat([ds, generated.to(ds.device)]), None


KIND: dict[str, StepKind] = {
    "augment": _Augment("augment", ("copies", "minority", "classes", *AMOUNT_KEYS),
                        (("minority", "classes"), ("copies", *AMOUNT_KEYS)), chains=True, nothing_note="nothing to augment"),
    "resample": _Resample("resample", ()),
    "generate": _Generate("generate", ("classes", *AMOUNT_KEYS, "fit_on", "guard"), (AMOUNT_KEYS,), guarded=True,
                          nothing_note="nothing to generate"),
}
#: The step keys the host owns, by step kind (besides the kind key itself and ``params``).
HOST_KEYS: dict[str, tuple[str, ...]] = {name: kind.host_keys for name, kind in KIND.items()}
#: Every host key of some kind, in the order the step model declares them.
ALL_HOST_KEYS = tuple(dict.fromkeys(k for kind in KIND.values() for k in kind.host_keys))


def step_problems(named: Sequence[str], given: Mapping[str, Any], chain: list[Any] | None, params: Mapping[str, Any]
                  ) -> tuple[str, tuple[str, ...]] | None:
    """The first problem with a step's keys as ``(message, keys it is about)``, or None.

    `named`: the kind keys the step gives; `given`: the host keys the run file sets, with their
    values (None: not set); `chain`: the augmenters of a chain step (else None).
    """
    if len(named) != 1:
        got = " and ".join(named) if named else "none of them"
        return f"a step names exactly one of {', '.join(STEP_KINDS)}; this one names {got}", ()
    kind = KIND[named[0]]
    if misplaced := [k for k in given if k not in kind.host_keys]:
        owners = " and ".join(o for o in STEP_KINDS if misplaced[0] in HOST_KEYS[o])
        return f"applies to {owners} steps only, not to {kind.name} steps", tuple(misplaced)
    for group in kind.exclusive:
        set_keys = [k for k in group if given.get(k) is not None and given.get(k) is not False]
        if len(set_keys) > 1:
            if set(AMOUNT_KEYS) & set(group):
                article = "an" if kind.name[0] in "aeiou" else "a"
                return f"{article} {kind.name} step takes one of {', '.join(group)}; got {', '.join(set_keys)}", \
                    tuple(set_keys[1:])
            return f"an {kind.name} step takes {set_keys[0]}: true or {set_keys[1]}, not both", tuple(set_keys[1:])
    if chain is not None:
        if not chain:
            return "an augment chain needs at least one augmenter", ("augment",)
        if params:
            return "a chain's ops take their own params: augment: [{name: NAME, params: {...}}, ...]", ("params",)
    return None


def resolve_classes(values: Sequence[Any], classes: Sequence[str], place: str) -> tuple[list[int], list[tuple[str, str]]]:
    """A step's ``classes`` (names or ids) as sorted class ids, with a problem for each unknown one."""
    ids, problems = [], []
    for j, value in enumerate(values):
        if isinstance(value, str) and value in classes:
            ids.append(list(classes).index(value))
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            ids.append(value)
        else:
            what = "name" if isinstance(value, str) else "id"
            problems.append((f"{place}[{j}]", f"unknown class {what} {value!r}; the classes are {list(classes)} "
                                              f"(ids 0..{len(classes) - 1})"))
    return sorted(set(ids)), problems


def guard_generated(config: Any, place: str, label: str, ds: Dataset, made: Dataset, val: Dataset,
                    registry: Any, warnings: list[str], rng: Any) -> dict[str, Any] | None:
    """The host's guard on a generate step (``guard``): the generated rows of `made` (the step's
    own rows) scored by the ``setforge_score_generated`` provider against the real val rows' recall.
    Below ``min_cas_ratio`` the run fails with a `DataError` (exit 3), or, with ``on_fail: warn``,
    the message goes to `warnings`. Returns the scores for the report (None: not checked)."""
    if config.on_fail == "off" or not len(generated := made[made.origin == int(Origin.GENERATED)]):
        return None  # (nothing to check: a step that generated no row)
    if len(val) == 0:
        warnings.append(f"{place} guard: no real val rows to compare the generated rows with; not checked (give split.val a share)")
        return None
    if (score := registry.first_result("setforge_score_generated", real=ds[ds.origin == int(Origin.REAL)],
                                       generated=generated, val=val, rng=rng, device=rng.device)) is None:
        raise ConfigError(problems=[(f"{place}.guard", "no installed plugin scores generated rows")])
    if left := score.get("left_out"):  # classes without real val rows: their generated rows go unchecked
        warnings.append(f"{place} guard: the generated rows of {', '.join(map(repr, left))} were not checked: no "
                        "real val rows of that class to compare with (a larger split.val gives some)")
        if len(left) == len(score.get("by_class") or left):  # (no class left to compare)
            return None
    ratio = score["generated"] / score["reference"] if (judged := score["reference"] > 0) else float("nan")
    result = {**{k: score.get(k) for k in ("generated", "reference", "model", "n_generated", "n_reference")},
              "by_class": score.get("by_class", {}), "ratio": ratio if judged else None,
              "min_cas_ratio": config.min_cas_ratio, "passed": bool(ratio >= config.min_cas_ratio)}
    if result["passed"]:
        return result
    if not judged:
        # A judge that learnt nothing cannot tell good rows from bad: say so, without blaming the generator.
        message = (f"{place} guard: its {score.get('model', 'classifier')}, trained on the real training rows, "
                   f"recalls {score['reference']:.3f} of the real val rows, so it cannot judge the generated rows "
                   f"of {label}; the data may be too small or too hard for it. Check the data, or set guard: warn "
                   f"or guard: off")
    else:
        message = (f"{place} {label}: a {score.get('model', 'classifier')} trained on the real training rows assigns "
                   f"{score['generated']:.3f} of the generated rows to their requested class, against "
                   f"{score['reference']:.3f} recall on the real val rows (same classes, same mix): ratio {ratio:.2f} < "
                   f"guard.min_cas_ratio {config.min_cas_ratio}. The generated rows would likely hurt a model trained "
                   f"on them. Try a longer training budget, DiffAugment or ADA (params diff_augment / ada), "
                   f"params.select: best-fd, or another generator{'' if config.on_fail == 'warn' else '; guard: warn keeps going'}")
    if config.on_fail == "warn":
        warnings.append(message)
        return {**result, "warning": message}
    raise DataError(message)
