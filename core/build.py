"""Building a checked run file's components: each as ``cls(params)`` from the params
`setforge.checks` parsed, a chain step as a `Chain`; every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .chain import Chain
from .errors import ConfigError

__all__ = ["Built", "Step", "build"]


@dataclass
class Step:
    """One pipeline step as built: its place, kind, name, run-file config and component."""

    index: int
    kind: str
    name: str
    config: Any
    component: Any
    classes: list[int] | None = None  # the step's ``classes`` as ids, once the data's classes are known


@dataclass
class Built:
    """Every component of a run, built from the run file."""

    source: Any
    preprocessors: list[Any]
    steps: list[Step]
    evaluators: list[tuple[str, Any]]  # (scope in the report, evaluator)
    observers: list[Any] = field(default_factory=list)

    def used(self, registry: Any) -> list[dict[str, str]]:
        """Each distinct component with its plugin, distribution and version (for the report)."""
        used: list[Any] = [self.source, *self.preprocessors]
        for step in self.steps:
            used.extend(step.component.ops if isinstance(step.component, Chain) else [step.component])
        used.extend(e for _, e in self.evaluators)
        used.extend(self.observers)
        rows, seen = [], set()
        for component in used:
            info = registry.info_for(component)
            if info is None or (info.kind, info.name) in seen:
                continue
            seen.add((info.kind, info.name))
            rows.append({"kind": info.kind, "name": info.name, "plugin": info.plugin,
                         "distribution": info.distribution, "version": info.version})
        return rows


def build(config: Any, registry: Any) -> Built:
    """Every component, with every problem in the run file's params reported at once."""
    problems: list[tuple[str, str]] = []

    def make(kind: str, ref: Any, place: str) -> Any:
        try:
            return registry.create(kind, ref.name, ref.checked_params, place=place)
        except ConfigError as error:
            problems.extend(error.problems or [(place, str(error))])
            return None

    source = make("source", config.source, "source")
    preprocessors = [make("preprocess", ref, f"preprocess[{i}]") for i, ref in enumerate(config.preprocess)]
    steps: list[Step] = []
    for i, step in enumerate(config.pipeline):
        refs = step.component_refs()
        if step.is_chain:
            ops = [make(step.kind, ref, f"pipeline[{i}].{step.kind}[{j}]") for j, ref in enumerate(refs)]
            component = None
            if all(op is not None for op in ops):
                try:
                    component = Chain(ops) if len(ops) > 1 else ops[0]
                except ConfigError as error:
                    problems.extend((f"pipeline[{i}].{p}", m) for p, m in error.problems)
            name = "+".join(ref.name for ref in refs)
        else:
            component = make(step.kind, refs[0], f"pipeline[{i}].{step.kind}")
            name = refs[0].name
        steps.append(Step(i, step.kind, name, step, component))
    evaluators: list[tuple[str, Any]] = []
    seen: dict[str, int] = {}
    for j, ref in enumerate(config.evaluate):
        evaluator = make("evaluate", ref, f"evaluate[{j}]")
        seen[ref.name] = seen.get(ref.name, 0) + 1
        # Two evaluators of one name (e.g. utility with two models) are filed apart.
        evaluators.append((ref.name if seen[ref.name] == 1 else f"{ref.name}-{seen[ref.name]}", evaluator))
    observers = [make("observe", ref, f"observe[{j}]") for j, ref in enumerate(config.observe)]
    if problems:
        raise ConfigError(problems=problems)
    return Built(source, preprocessors, steps, evaluators, observers)


# ---------------------------------------------------------------------------------- the run
