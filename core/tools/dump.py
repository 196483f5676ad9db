"""``setforge validate``'s output: the run file resolved, every default filled in; itself a valid run file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..config import HOST_KEYS, RunConfig, StepConfig

__all__ = ["dump_resolved"]


def _step_dump(step: StepConfig, index: int, resolved: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    kind = step.kind
    out: dict[str, Any] = {}
    if step.is_chain:
        assert isinstance(step.augment, list)
        out[kind] = [{"name": r.name, "params": resolved.get(f"pipeline[{index}].augment[{j}].params", r.params)}
                     for j, r in enumerate(step.augment)]
    else:
        out[kind] = getattr(step, kind)
        out["params"] = resolved.get(f"pipeline[{index}].params", step.params)
    dumped = step.model_dump(mode="json")
    for key in HOST_KEYS[kind]:
        if key in ("target", "per_class", "multiply") and dumped[key] is None:
            continue
        out[key] = dumped[key]
    return out


def dump_resolved(config: RunConfig) -> str:
    """The config as YAML with every default filled in (``setforge validate``); itself a valid run file.

    After `check_components`, component params show their defaults too and paths are absolute.
    """
    resolved = {}
    for place, params in config._parsed_params.items():
        try:
            resolved[place] = params.model_dump(mode="json")
        except Exception:  # noqa: BLE001 - params that do not dump as JSON are shown as given
            pass
    data = config.model_dump(mode="json")
    data["source"]["params"] = resolved.get("source.params", config.source.params)
    for key in ("preprocess", "evaluate"):
        data[key] = [{"name": r.name, "params": resolved.get(f"{key}[{i}].params", r.params)}
                     for i, r in enumerate(getattr(config, key))]
    data["pipeline"] = [_step_dump(step, i, resolved) for i, step in enumerate(config.pipeline)]
    data["plugins"] = [str(config.base_dir / p) if p.endswith(".py") and not Path(p).is_absolute() else p
                       for p in config.plugins]
    header = [f"# setforge run file, resolved{' from ' + str(config._file) if config._file else ''}",
              "# (defaults filled in; paths in params are absolute; output.dir is relative to the current folder)"]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body.rstrip("\n")
