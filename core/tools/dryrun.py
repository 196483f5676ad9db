"""``setforge run --dry-run``: the class counts each step would produce, as a table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DryPlan", "dry_plan", "dry_run", "format_plan"]


@dataclass
class DryPlan:
    """What a dry run finds: the source and split, and the class counts after each step (not known
    after a resampler whose counts only running it tells)."""

    source: str
    rows: int
    split_method: str
    sizes: dict[str, int]
    dropped: dict[str, int]
    duplicates: int
    deduplicate: str
    classes: list[str]
    raw_train: list[int]
    steps: list[tuple[str, list[int], bool]]  # (title, counts after it, whether they are known)
    notes: list[str]
    val: list[int]
    test: list[int]
    evaluators: list[str]
    folder: Path
    unlabelled: int = 0  # rows the source holds without a label (steps get them as StepContext.unlabelled)
    force: bool = False  # the run would replace an existing run folder (output.force, or run --force)


def dry_plan(config: Any, registry: Any = None) -> DryPlan:
    """Validate, load the source, split, and plan the class counts each step would produce, without
    running any step (a resampler's counts are known only when its ``expected_counts(counts,
    classes)`` knows them). Writes nothing."""
    from ..build import build
    from ..dataset import Origin
    from ..errors import DataError
    from ..pipeline import _Run
    from ..registry import registry_for
    from ..steps import KIND

    run = _Run(config, registry_for(config) if registry is None else registry, dry=True)
    run.built = build(run.config, run.registry)
    run.prepare_data()
    classes = list(run.rows.all.classes)
    counts, real = run.raw_train.class_counts(), run.raw_train.class_counts(Origin.REAL)
    # real rows per class lie between `fewest` and `real`: a step that removes rows may take real or new ones
    fewest = list(real)
    known, steps, notes = True, [], []
    for step in run.built.steps:
        title = f"[{step.index}] {step.kind} {step.name}"
        kind = KIND[step.kind]
        if known and (problems := step.component.check_counts(list(counts), classes)):
            raise DataError("\n".join(f"pipeline[{step.index}]{f'.params.{key}' if key else '.' + step.kind}: {text}"
                                       for key, text in problems))  # (the step would stop the run there)
        plan = kind.plan(step.config, step.classes, counts, real, step.component, classes)
        if plan is None:
            known = False
            notes.append(f"{title}: counts depend on the sampler and the data; shown unchanged")
        else:
            if known and fewest != real and kind.plan(step.config, step.classes, counts, fewest, step.component,
                                                      classes) != plan:
                known = False  # (multiply counts real rows, which an earlier removal made uncertain)
                notes.append(f"{title}: counts depend on whether an earlier step removed real or new rows; shown "
                             f"for the most real rows")
            if problem := kind.unfit(step.config, plan, counts, real, classes, step.name):
                raise DataError(f"pipeline[{step.index}]: {problem}")  # as the run would, before any step here
            if kind.nothing_note and sum(plan) == 0:
                notes.append(f"{title}: {kind.nothing_note}")
            after = [n + a for n, a in zip(counts, plan)]
            fewest = [max(0, m - (n - f)) if a < 0 else f for f, n, m, a in zip(fewest, counts, after, plan)]
            real, counts = [min(r, m) for r, m in zip(real, after)], after
        steps.append((title, list(counts), known))
    return DryPlan(run.built.source.name, len(run.rows.all), run.parts.method,
                   {"train": len(run.raw_train), "val": len(run.val), "test": len(run.test)},
                   run.rows.dropped, len(run.parts.duplicate_index), run.config.source.deduplicate.method,
                   classes, run.raw_train.class_counts(), steps, notes, run.val.class_counts(),
                   run.test.class_counts(), [scope for scope, _ in run.built.evaluators], run.folder.final,
                   len(run.unlabelled) if run.unlabelled is not None else 0, run.config.output.force)


def format_plan(plan: Any) -> str:
    """The text of a `DryPlan`: source and split, one column of class counts per
    step (``?`` once a step's counts are unknown), the evaluators and the run folder."""
    lines = [f"dry run: source {plan.source}, {plan.rows} rows; split ({plan.split_method}): "
             f"train {plan.sizes['train']} | val {plan.sizes['val']} | test {plan.sizes['test']}"]
    if plan.unlabelled:
        lines.append(f"  unlabelled rows: {plan.unlabelled} (held apart from the split; steps such as "
                     f"pseudo-label read them)")
    if plan.dropped:
        lines.append("  dropped invalid rows: " + ", ".join(f"{k} {v}" for k, v in plan.dropped.items()))
    if plan.duplicates:
        lines.append(f"  {plan.deduplicate} duplicates dropped: {plan.duplicates}")
    columns: dict[str, list[str]] = {"raw train": [str(n) for n in plan.raw_train]}
    for title, counts, known in plan.steps:
        columns[title] = [str(n) if known else f"{n}?" for n in counts]
    columns["val"] = [str(n) for n in plan.val]
    columns["test"] = [str(n) for n in plan.test]
    header = ["class", *columns]
    rows = [[name, *(col[c] for col in columns.values())] for c, name in enumerate(plan.classes)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for row in [header, *rows]:
        lines.append("  " + "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                                      for i, (v, w) in enumerate(zip(row, widths))))
    lines += [""] + plan.notes if plan.notes else []
    lines.append(f"evaluators: {', '.join(plan.evaluators) or 'none'}")
    exists = "" if not plan.folder.exists() else " (exists: will be replaced)" if plan.force else \
        " (exists: needs --force)"
    lines.append(f"run folder: {plan.folder}{exists}")
    return "\n".join(lines)


def dry_run(config: Any, registry: Any = None, force: bool = False) -> str:
    """Validate, load the source, split, and show the class counts each step would produce,
    without running any step (a resampler's counts are shown unchanged, marked ``?``, unless its
    ``expected_counts(counts, classes)`` knows them). Writes nothing. `force`: ``run --force``
    was given (as ``output.force: true``, the run folder would be replaced)."""
    plan = dry_plan(config, registry)
    plan.force = plan.force or force
    return format_plan(plan)
