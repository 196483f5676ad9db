"""``setforge schema``: the JSON Schema of a run file, with every installed component's params."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ..config import _DEVICE, HOST_KEYS, STEP_KINDS, RunConfig
from ..steps import KIND

__all__ = ["run_file_schema"]

_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _params_schema(cls: type, prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``cls.Params``, its own ``$defs`` hoisted under `prefix`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema = cls.Params.model_json_schema(ref_template="#/$defs/" + prefix + "{model}")
    except Exception:  # noqa: BLE001 - a field pydantic cannot describe: any mapping, then
        return {"type": "object", "description": "params (see `setforge plugins show`)"}
    for name, sub in schema.pop("$defs", {}).items():
        defs[prefix + name] = sub
    schema.pop("title", None)
    return schema


def _component_variants(registry: Any, kind: str, defs: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    variants = []
    for info in registry.components(kind):
        key = f"{kind}.{info.name}.params"
        defs[key] = _params_schema(info.cls, f"{kind}.{info.name}.", defs)
        variants.append((info, {"$ref": f"#/$defs/{key}"}))
    return variants


def _ref_item_schema(variants: list[tuple[Any, dict[str, Any]]], extra: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    """NAME or {name, params, **extra}, one alternative per installed component."""
    extra = dict(extra or {})
    if not variants:
        return {"anyOf": [{"type": "string", "minLength": 1},
                          {"type": "object", "properties": {"name": {"type": "string", "minLength": 1},
                                                            "params": {"type": "object"}, **extra},
                           "required": ["name"], "additionalProperties": False}]}
    names = [info.name for info, _ in variants]
    alternatives: list[dict[str, Any]] = [{"type": "string", "enum": names,
                                           "description": "; ".join(f"{i.name}: {i.cls.summary()}"
                                                                    for i, _ in variants)}]
    for info, params in variants:
        alternatives.append({"type": "object", "title": info.name, "description": info.cls.summary(),
                             "properties": {"name": {"const": info.name}, "params": params, **extra},
                             "required": ["name"], "additionalProperties": False})
    return {"anyOf": alternatives}


def run_file_schema(registry: Any) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a run file with every installed component's params.

    Components appear as one alternative per name, so editors complete names and params; the
    checks that span keys (``test + val < 1``) are left to ``setforge validate``.
    """
    base = RunConfig.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = base.pop("$defs", {})
    step_props = defs["StepConfig"]["properties"]
    source_props = defs["SourceConfig"]["properties"]
    for unused in ("StepConfig", "SourceConfig", "ComponentRef"):
        defs.pop(unused, None)
    defs["DeduplicateConfig"] = {"anyOf": [{"type": "string", "enum": ["none", "exact", "near"]},
                                           defs["DeduplicateConfig"]]}
    props = base["properties"]
    source_extra = {k: v for k, v in source_props.items() if k not in ("name", "params")}
    props["source"] = {**_ref_item_schema(_component_variants(registry, "source", defs), source_extra),
                       "description": RunConfig.model_fields["source"].description}
    for key in ("preprocess", "evaluate", "observe"):
        item = _ref_item_schema(_component_variants(registry, key, defs))
        array = {"type": "array", "items": item}  # (observe takes a list only: validate refuses null)
        props[key] = {**({"anyOf": [array, {"type": "null"}]} if key != "observe" else array),
                      "description": RunConfig.model_fields[key].description}

    steps: list[dict[str, Any]] = []
    augmenters = _component_variants(registry, "augment", defs)
    for kind in STEP_KINDS:
        host = {k: step_props[k] for k in HOST_KEYS[kind]}
        # at most one key of each exclusive group (steps.KIND): a key counts as given when true / not null
        given = {"minority": {"const": True}}
        pairs = [(a, b) for group in KIND[kind].exclusive for i, a in enumerate(group) for b in group[i + 1:]]
        rules: dict[str, Any] = {"not": {"anyOf": [
            {"required": list(pair), "properties": {k: given.get(k, {"not": {"type": "null"}}) for k in pair}}
            for pair in pairs]}} if pairs else {}
        variants = augmenters if KIND[kind].chains else _component_variants(registry, kind, defs)
        if not variants:
            variants = [(None, {"type": "object"})]
        for info, params in variants:
            name_schema = {"const": info.name} if info is not None else {"type": "string", "minLength": 1}
            steps.append({"type": "object", "title": f"{kind} {info.name}" if info else kind,
                          "description": info.cls.summary() if info else step_props[kind].get("description", ""),
                          "properties": {kind: name_schema, "params": params, **host},
                          "required": [kind], "additionalProperties": False, **rules})
        if KIND[kind].chains:
            chain = {"type": "array", "minItems": 1, "items": _ref_item_schema(augmenters)}
            steps.append({"type": "object", "title": "augment chain",
                          "description": "several augmenters applied in turn; each takes its own params",
                          "properties": {"augment": chain, **host}, "required": ["augment"],
                          "additionalProperties": False, **rules})
    props["pipeline"] = {"anyOf": [{"type": "array", "items": {"anyOf": steps}}, {"type": "null"}],
                         "description": RunConfig.model_fields["pipeline"].description}
    for key in ("plugins", "plugins_deny"):
        props[key] = {"anyOf": [props[key], {"type": "null"}], "description": props[key].get("description", "")}
    props["device"] = {**props["device"], "pattern": "^(" + _DEVICE.pattern + ")$"}
    defs["OutputConfig"]["properties"]["format"]["enum"] = list(registry.formats())
    return {"$schema": _SCHEMA_DIALECT, "title": "setforge run file",
            "description": "A setforge run file (YAML, TOML or JSON); see docs/run-files.md.",
            **{k: v for k, v in base.items() if k not in ("title", "description")}, "$defs": defs}
