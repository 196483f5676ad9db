"""What ``setforge plugins list`` and ``setforge plugins show`` print: a row per component, then
the downstream models (kind ``model``) and the output formats (kind ``format``), conflicts and
broken plugins; and one component's, model's or format's description."""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError, PluginError
from ..hookspecs import KINDS

__all__ = ["MODEL_GROUP", "plugin_rows", "print_rows", "show_component", "describe_component"]

#: The entry-point group where distributions contribute downstream models (docs/evaluators.md).
MODEL_GROUP = "setforge.models"
_FORMATS_HOOK = "setforge_register_formats"


def plugin_rows(registry: Any) -> list[dict[str, Any]]:
    """``plugins list``'s rows: kind, name, plugin, distribution, version, status."""
    rows = []
    for info in registry.components():
        rows.append({"kind": info.kind, "name": info.name, "plugin": info.plugin, "distribution": info.distribution,
                     "version": info.version, "status": "ok"})
    rows += _model_rows(registry) + _format_rows(registry)
    for (kind, name), infos in sorted(registry.conflicts().items()):
        if kind != "format":  # (a format's conflicts are among the format rows)
            rows += [_conflict_row(kind, name, info) for info in infos]
    for plugin in registry.plugins.values():
        if plugin.status != "ok":
            status = plugin.status + (f": {plugin.error}" if plugin.error else "")
            # a plugin that broke in its formats hook registers no format: listed with the formats' kind
            kind = "format" if (plugin.error or "").startswith(f"{_FORMATS_HOOK}()") else "-"
            rows.append({"kind": kind, "name": "-", "plugin": plugin.name, "distribution": plugin.distribution,
                         "version": plugin.version, "status": status})
    return rows


def print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    """The rows as a table (or, `as_json`, a JSON list of objects)."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    headers = ["kind", "name", "plugin", "distribution", "version", "status"]
    widths = {h: max([len(h)] + [len(str(r[h])) for r in rows if h != "status"]) for h in headers}
    print("  ".join(h.upper().ljust(widths[h]) for h in headers).rstrip())
    for row in rows:
        print("  ".join(str(row[h]).ljust(widths[h]) if h != "status" else str(row[h]) for h in headers))


def _conflict_row(kind: str, name: str, info: Any) -> dict[str, Any]:
    """A ``plugins list`` row of one plugin that registers `name`, a name another plugin of `kind`
    registers too (`info`: a component's ComponentInfo, or an output format's PluginInfo)."""
    return {"kind": kind, "name": name, "plugin": getattr(info, "plugin", info.name), "distribution": info.distribution,
            "version": info.version, "status": "conflict: name registered by more than one plugin"
                                               + (" (or by the core: npz)" if name == "npz" else "")}


def _format_rows(registry: Any) -> list[dict[str, Any]]:
    """``plugins list``'s output formats (kind ``format``): the core's own (``npz``), each format a
    plugin registers through `_FORMATS_HOOK` with that plugin, then the names more than one plugin
    registers (unusable, status ``conflict``)."""
    from .. import __version__
    from ..formats import FORMATS

    rows = [{"kind": "format", "name": name, "plugin": "core", "distribution": "setforge", "version": __version__,
             "status": "ok"} for name in sorted(FORMATS)]
    for name, info in registry.format_plugins().items():
        rows.append({"kind": "format", "name": name, "plugin": info.name, "distribution": info.distribution,
                     "version": info.version, "status": "ok"})
    for (kind, name), infos in sorted(registry.conflicts().items()):
        if kind == "format":
            rows += [_conflict_row(kind, name, info) for info in infos]
    return rows


def _describe_format(registry: Any, name: str) -> str | None:
    """``plugins show format/NAME``: where the format comes from, the data it writes, whether it
    streams, and what it writes (the paragraph of its writer's module docstring that names it,
    then the writer's docstring); None when no row of `_format_rows` has that name."""
    import dataclasses
    import inspect

    rows = [r for r in _format_rows(registry) if r["name"] == name]
    if not rows:
        return None
    used = [r for r in rows if r["status"] == "ok"]  # (the core's npz, when a plugin registers an npz too)
    if not used:  # a name two plugins register: no format to describe
        sources = " and ".join(f"plugin '{r['plugin']}' ({r['distribution']} {r['version']})" for r in rows)
        disable = " or ".join("-p no:" + r["plugin"] for r in rows)
        raise PluginError(f"output format '{name}' is registered by {sources}; disable one ({disable}, or "
                          "plugins_deny in the run file)")
    row, fmt = used[0], registry.formats()[name]
    lines = [f"format/{name}  (plugin {row['plugin']}, {row['distribution']} {row['version']})", "status: ok"]
    lines += [f"also registered by plugin '{r['plugin']}' ({r['distribution']} {r['version']}), which is not used"
              for r in rows if r is not row]
    if (modalities := getattr(fmt, "modalities", None)) is not None:  # (a Format that declares none writes any data)
        default = next((f.default for f in dataclasses.fields(fmt) if f.name == "modalities"), None)
        lines.append(f"modalities: {', '.join(modalities)}" + (" (any: the format declares none)"
                                                               if modalities == default else ""))
    lines.append("streams: yes" if fmt.stream is not None else
                 "streams: no (a streaming run, source.stream, needs a format that does)")
    module = inspect.getdoc(inspect.getmodule(fmt.write)) or ""
    about = [p for p in module.split("\n\n") if p.startswith(f"``{name}``")]
    if writer := inspect.getdoc(fmt.write):
        about.append(f"write: {writer}")
    return "\n".join(lines) + "\n\n" + ("\n\n".join(about) or "(no docstring)")


def _model_rows(registry: Any) -> list[dict[str, Any]]:
    """``plugins list``'s downstream models (kind ``model``): the built-in names evaluators take as
    their ``model`` param, read from their `Params` (the names of a ``Literal``; "auto" is a choice,
    not a model), listed with the evaluator's plugin; then the models installed distributions
    contribute under the entry-point group `MODEL_GROUP`, which evaluators whose ``model`` also
    takes a ``str`` accept."""
    import importlib.metadata

    rows: dict[str, dict[str, Any]] = {}
    for info in registry.components("evaluate"):
        for name in (_model_choices(info) or ([], False))[0]:
            rows.setdefault(name, {"kind": "model", "name": name, "plugin": info.plugin,
                                   "distribution": info.distribution, "version": info.version, "status": "ok"})
    contributed = []
    for entry_point in sorted(importlib.metadata.entry_points(group=MODEL_GROUP), key=lambda e: e.name):
        dist = getattr(entry_point, "dist", None)
        row = {"kind": "model", "name": entry_point.name, "plugin": entry_point.module,
               "distribution": getattr(dist, "name", "unknown"), "version": getattr(dist, "version", "-"),
               "status": "ok"}
        if entry_point.name in rows:
            row["status"] = f"conflict: a model of this name comes with plugin '{rows[entry_point.name]['plugin']}'"
        else:
            try:
                entry_point.load()
            except Exception as error:  # noqa: BLE001 - a broken model is listed, as a broken plugin is
                row["status"] = f"broken: failed to import: {type(error).__name__}: {error}"
        contributed.append(row)
    return sorted(rows.values(), key=lambda r: r["name"]) + contributed


def _model_choices(info: Any) -> tuple[list[str], bool] | None:
    """What evaluator `info` takes as its ``model`` param: the built-in models its annotation names
    (a ``Literal``'s names, "auto" left out), and whether it takes a contributed model's name too
    (a ``str``, alone or beside the ``Literal``, as ``model_name`` in plugins/evaluate/_downstream.py
    declares); None when it has no ``model`` param."""
    import types
    import typing

    field = info.cls.Params.model_fields.get("model")
    if field is None:
        return None
    union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
    alternatives = typing.get_args(field.annotation) if union else (field.annotation,)
    names = [n for a in alternatives if typing.get_origin(a) is typing.Literal
             for n in typing.get_args(a) if isinstance(n, str) and n != "auto"]
    return (names, str in alternatives) if names or str in alternatives else None


def _describe_model(registry: Any, name: str) -> str | None:
    """``plugins show model/NAME``: where the model comes from, the data it takes (a contributed
    model's ``modalities``) and which evaluators take it: those naming it in their ``model``'s
    ``Literal``, and for a contributed model those whose ``model`` takes a ``str`` and data it takes."""
    import importlib.metadata

    row = next((r for r in _model_rows(registry) if r["name"] == name), None)
    if row is None:
        return None
    evaluators = [(i, c) for i in registry.components("evaluate") if (c := _model_choices(i)) is not None]
    builtin = any(name in names for _, (names, _) in evaluators)
    modalities = None
    if not builtin and row["status"] == "ok":
        entry_point = next(e for e in importlib.metadata.entry_points(group=MODEL_GROUP) if e.name == name)
        modalities = getattr(entry_point.load(), "modalities", None)
    takes = [i.name for i, (names, free) in evaluators
             if name in names or free and not builtin and (not names or modalities is None
                                                           or set(modalities) & set(i.cls.modalities))]
    lines = [f"model/{name}  (plugin {row['plugin']}, {row['distribution']} {row['version']})",
             f"status: {row['status']}"]
    if isinstance(modalities, tuple):
        lines.append(f"modalities: {', '.join(modalities)}")
    return "\n".join(lines + [
        "", f"A downstream model: the value of `model` in the params of evaluate/{', '.join(takes) or '(none)'}.",
        f"How it is trained (epochs, lr, ...) is those evaluators' params: "
        f"setforge plugins show evaluate/{takes[0] if takes else 'NAME'}"])


def show_component(registry: Any, spec: str) -> int:
    kind, _, name = spec.rpartition("/")
    if kind in ("model", "format") or (not kind and name not in {i.name for i in registry.components()}):
        # a bare name that is no component's: a downstream model's, else an output format's
        describe = {"model": [_describe_model], "format": [_describe_format]}.get(kind, [_describe_model,
                                                                                         _describe_format])
        if (text := next((t for d in describe if (t := d(registry, name)) is not None), None)) is not None:
            print(text)
            return 0
        if kind == "model":
            known = ", ".join(r["name"] for r in _model_rows(registry)) or "(none installed)"
            raise ConfigError(problems=[("name", f"unknown model {name!r}. Known: {known}")])
        if kind == "format":
            known = ", ".join(sorted({r["name"] for r in _format_rows(registry)}))
            raise ConfigError(problems=[("name", f"unknown output format {name!r}. Known: {known}")])
    if kind:
        infos = [registry.get(kind, name, place="name")]
    else:
        infos = [i for i in registry.components() if i.name == name]
        for clash_kind, clash_name in registry.conflicts():
            if clash_name == name and clash_kind in KINDS:  # a PluginError naming the plugins that register it
                registry.get(clash_kind, name, place="name")
        if not infos:
            known = sorted({i.name for i in registry.components()})
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            hint += registry.not_loaded_note()  # as registry.get says
            raise ConfigError(problems=[("name", f"no component named {name!r}{hint}")])
    for info in infos:
        print(describe_component(info))
    return 0


def describe_component(info: Any) -> str:
    """``plugins show``: the docstring, then every param with its type, default and bounds."""
    import inspect

    from ..config import type_words

    cls = info.cls
    lines = [f"{info.kind}/{info.name}  (plugin {info.plugin}, {info.distribution} {info.version})",
             f"modalities: {', '.join(cls.modalities)}", ""]
    lines += [inspect.cleandoc(cls.__doc__ or "(no docstring)"), "", "params:"]
    fields = cls.Params.model_fields
    if not fields:
        lines.append("  (none)")
    for field_name, field in fields.items():
        annotation = type_words(field.annotation, quote="'")
        default = field.get_default(call_default_factory=True)
        bounds = [f"{op} {getattr(m, attr)}" for m in field.metadata
                  for op, attr in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt")) if hasattr(m, attr)]
        line = f"  {field_name}: {annotation} = {default!r}"
        if bounds:
            line += f"  [{', '.join(bounds)}]"
        lines.append(line)
        if field.description:
            lines.append(f"      {field.description}")
    return "\n".join(lines)
