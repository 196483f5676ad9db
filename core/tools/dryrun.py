"""``setforge run --dry-run``: the class counts each step would produce, as a table."""

from __future__ import annotations

from typing import Any

__all__ = ["dry_run", "format_plan"]


def format_plan(plan: Any) -> str:
    """The text of a `setforge.pipeline.DryPlan`: source and split, one column of class counts per
    step (``?`` once a step's counts are unknown), the evaluators and the run folder."""
    lines = [f"dry run: source {plan.source}, {plan.rows} rows; split ({plan.split_method}): "
             f"train {plan.sizes['train']} | val {plan.sizes['val']} | test {plan.sizes['test']}"]
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
    exists = " (exists: needs --force)" if plan.folder.exists() else ""
    lines.append(f"run folder: {plan.folder}{exists}")
    return "\n".join(lines)


def dry_run(config: Any, registry: Any = None) -> str:
    """Validate, load the source, split, and show the class counts each step would produce,
    without running any step (a resampler's counts are shown unchanged, marked ``?``, unless its
    ``expected_counts(counts, classes)`` knows them). Writes nothing."""
    from ..pipeline import dry_plan

    return format_plan(dry_plan(config, registry))
