"""``setforge validate``'s output: the run file resolved, every default filled in; itself a valid run file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import HOST_KEYS, RunConfig, StepConfig
from ..runfile import _SafeLoader
from ..steps import AMOUNT_KEYS, KIND

__all__ = ["dump_resolved"]


def _params(ref: Any) -> Any:
    """A component's params as checked (defaults filled, paths absolute), else as given."""
    checked = ref.checked_params
    if isinstance(checked, dict):
        return checked
    try:
        return checked.model_dump(mode="json")
    except Exception:  # noqa: BLE001 - params that do not dump as JSON are shown as given
        return ref.params


def _step_dump(step: StepConfig) -> dict[str, Any]:
    kind = step.kind
    out: dict[str, Any] = {}
    if step.is_chain:
        assert isinstance(step.augment, list)
        out[kind] = [{"name": r.name, "params": _params(r)} for r in step.augment]
    else:
        out[kind] = getattr(step, kind)
        out["params"] = _params(step.component_refs()[0])
    dumped = step.model_dump(mode="json")
    given = step.model_fields_set
    for key in HOST_KEYS[kind]:
        if key in AMOUNT_KEYS and dumped[key] is None:
            continue
        group = next((g for g in KIND[kind].exclusive if key in g), ())
        if key not in given and any(k in given and dumped[k] not in (None, False) for k in group if k != key):
            continue  # a default the key set beside it replaces (copies: 1 beside per_class)
        out[key] = dumped[key]
    return out


class _Dumper(yaml.SafeDumper):
    """Quotes every string that the run-file reader would read as something else (``"1e-4"``,
    ``"017"``): it reads numbers by YAML 1.2, PyYAML's dumper by YAML 1.1."""

    yaml_implicit_resolvers = _SafeLoader.yaml_implicit_resolvers


def dump_resolved(config: RunConfig) -> str:
    """The config as YAML with every default filled in (``setforge validate``); itself a valid run file.

    After `checks.load_and_check`, component params show their defaults too and paths are absolute.
    """
    data = config.model_dump(mode="json")
    data["source"]["params"] = _params(config.source)
    for key in ("preprocess", "evaluate", "observe"):
        data[key] = [{"name": r.name, "params": _params(r)} for r in getattr(config, key)]
    data["pipeline"] = [_step_dump(step) for step in config.pipeline]
    data["plugins"] = [str(config.base_dir / p) if p.endswith(".py") and not Path(p).is_absolute() else p
                       for p in config.plugins]
    header = [f"# setforge run file, resolved{' from ' + str(config._file) if config._file else ''}",
              "# (defaults filled in; paths in params are absolute; output.dir is relative to the current folder)"]
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=100)
    return "\n".join(header) + "\n" + body.rstrip("\n")
