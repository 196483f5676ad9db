"""Plugin discovery and the name -> component-class registry.

This is the only module that touches pluggy's hooks. It iterates the entry points of group
``setforge`` itself (pluggy's ``load_setuptools_entrypoints`` aborts on the first broken plugin),
wraps every load and hook call, and remembers each plugin's distribution and version, so that
every error names them. Built-in plugins arrive by the very same entry points as a third party's.

A broken plugin (fails to import, raises in its hook, returns something that is not a valid
component class) is listed with its error and skipped; ``strict=True`` makes it fatal.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigError, DataError, InvalidDatasetError, OutputError, PluginError, SetforgeError
from .hookspecs import KINDS, REGISTER_HOOK_FOR_KIND

__all__ = ["Registry", "PluginInfo", "ComponentInfo", "registry_for", "default_registry", "create", "ENTRY_POINT_GROUP",
           "DISABLE_ENV"]

ENTRY_POINT_GROUP = "setforge"
DISABLE_ENV = "SETFORGE_DISABLE_PLUGINS"
_SELF_DISTRIBUTION = "setforge"
#: Errors writing files that no plugin can help: a full disk, a full quota, a read-only file system.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _call(info: PluginInfo, what: str, fn: Any) -> tuple[bool, Any]:
    """``(True, fn())``, or ``(False, None)`` with the plugin marked broken when `fn` (its import or
    one of its hooks, `what`) raises: one broken plugin is named and skipped."""
    try:
        return True, fn()
    except BaseException as error:  # noqa: BLE001 - a plugin may raise anything
        if isinstance(error, KeyboardInterrupt):
            raise
        info.status, info.error = "broken", f"{what}: {_format_exception(error)}"
        return False, None


def _checked_formats(formats: Any) -> list[Any]:
    from .formats import Format

    found = formats or []
    if not isinstance(found, (list, tuple)) or not all(isinstance(f, Format) for f in found):
        raise PluginError(f"must return a list of setforge.formats.Format, got {formats!r}")
    return list(found)


def is_plugin_file(spec: str) -> bool:
    """Whether a local plugin `spec` names a Python file (``x.py``, ``dir/x``) rather than a module."""
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def _exec_file(path: Path) -> Any:
    """The module of the Python file `path`, run (a local plugin given by path)."""
    module_name = f"setforge_local_plugin_{abs(hash(str(path.resolve())))}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    # a run file's folder gets no __pycache__: loading a plugin writes nothing
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


@dataclass
class PluginInfo:
    """One plugin: an entry point or a local module, where it came from and how loading went."""

    name: str
    distribution: str
    version: str
    status: str = "ok"  # ok | broken | disabled
    error: str | None = None
    module: Any = None
    builtin: bool = False

    @property
    def label(self) -> str:
        return f"plugin '{self.name}' ({self.distribution} {self.version})"


@dataclass(frozen=True)
class ComponentInfo:
    """One registered component class and the plugin that brought it."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}' (plugin '{self.plugin}', {self.distribution} {self.version})"


def _format_exception(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(error), error)).strip()


class Registry:
    """Loads plugins and maps ``(kind, name)`` to component classes.

    ``local``: modules or ``.py`` files to load as plugins besides the entry points (``-p`` and
    a run file's ``plugins``; files resolve against ``base_dir``). ``disabled``: entry-point
    names not to load (``-p no:NAME``, ``plugins_deny``, and the ``SETFORGE_DISABLE_PLUGINS``
    variable, comma-separated). ``allow``: when given, only these third-party entry points load
    (built-in ones always load unless disabled). ``strict``: a broken plugin is fatal.
    """

    def __init__(self, local: Sequence[str] = (), disabled: Iterable[str] = (), allow: Iterable[str] | None = None,
                 strict: bool = False, base_dir: str | Path | None = None, use_env: bool = True):
        self.local = list(local)
        named = os.environ.get(DISABLE_ENV, "") if use_env else ""  # comma-separated entry-point names
        self.disabled = set(disabled) | {part.strip() for part in named.split(",") if part.strip()}
        self.allow = None if allow is None else set(allow)
        self.strict = strict
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[str, str], list[ComponentInfo]] = {}
        self._by_class: dict[type, ComponentInfo] = {}
        self._formats: dict[str, tuple[Any, PluginInfo]] = {}
        self._format_conflicts: dict[str, list[PluginInfo]] = {}
        self._local_sources: dict[str, str] = {}  # a local plugin's name -> its module name or resolved file
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._loaded = False

    # ---------------------------------------------------------------------------- loading
    def load(self) -> "Registry":
        """Load every plugin once; returns self. With ``strict``, the first failure raises."""
        if self._loaded:
            return self
        self._loaded = True
        for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            self._load_entry_point(entry_point)
        for spec in self.local:
            self._load_local(spec)
        self._collect()
        broken = [p for p in self.plugins.values() if p.status == "broken"]
        if self.strict and broken:
            raise PluginError("broken plugins (--strict):\n" + "\n".join(f"  {p.label}: {p.error}" for p in broken))
        return self

    def _load_entry_point(self, entry_point: importlib.metadata.EntryPoint) -> None:
        dist = getattr(entry_point, "dist", None)
        info = PluginInfo(name=entry_point.name, distribution=getattr(dist, "name", None) or "unknown",
                          version=getattr(dist, "version", None) or "unknown")
        info.builtin = info.distribution == _SELF_DISTRIBUTION
        if entry_point.name in self.plugins:
            other = self.plugins[entry_point.name]
            info.status, info.error = "broken", f"entry point name '{entry_point.name}' is also used by {other.label}"
            self.plugins[f"{entry_point.name} ({info.distribution})"] = info
            return
        self.plugins[entry_point.name] = info
        if entry_point.name in self.disabled or (self.allow is not None and not info.builtin
                                                 and entry_point.name not in self.allow):
            info.status = "disabled"
            return
        self._import(info, entry_point.load)

    def _load_local(self, spec: str) -> None:
        name = Path(spec).stem if spec.endswith(".py") else spec
        info = PluginInfo(name=name, distribution="local", version="-")
        is_module = not is_plugin_file(spec)
        path = Path(spec) if Path(spec).is_absolute() or self.base_dir is None else self.base_dir / spec
        source = spec if is_module else str(path.resolve())
        if name in self.plugins and self.plugins[name].module is not None:
            # the same plugin named twice (a run file's plugins and -p) loads once; another of its name is refused
            if self._local_sources.get(name, source) != source:
                self.plugins[f"{name} ({spec})"] = PluginInfo(f"{name} ({spec})", "local", "-", status="broken", error=(
                    f"its name '{name}' is also used by {self.plugins[name].label}"))
            return
        self.plugins[name], self._local_sources[name] = info, source
        if name in self.disabled:
            info.status = "disabled"
            return
        if is_module:
            self._import(info, lambda: importlib.import_module(spec))
            return
        if not path.is_file():
            raise ConfigError(problems=[("plugins", f"local plugin file {path} does not exist")])
        self._import(info, lambda: _exec_file(path))

    def _import(self, info: PluginInfo, load: Any) -> None:
        """Register the module `load()` gives; a plugin whose import raises is broken."""
        ok, module = _call(info, "failed to import", load)
        if ok:
            self._register(info, module)

    def _register(self, info: PluginInfo, module: Any) -> None:
        try:
            self._pm.register(module, name=info.name)
            self._pm.check_pending()
        except Exception as error:  # noqa: BLE001 - e.g. a misspelt hook name
            with contextlib.suppress(Exception):
                self._pm.unregister(name=info.name)
            info.status, info.error = "broken", f"invalid hooks: {_format_exception(error)}"
            return
        info.module = module

    def _collect(self) -> None:
        from .components import BASE_FOR_KIND

        found: dict[str, list[ComponentInfo]] = {}
        for kind in KINDS:
            for impl, info in self._usable(REGISTER_HOOK_FOR_KIND[kind]):
                ok, items = _call(info, f"{REGISTER_HOOK_FOR_KIND[kind]}() failed",
                                  lambda: self._validate_classes(kind, impl.function(), BASE_FOR_KIND[kind]))
                if not ok:
                    continue
                found.setdefault(info.name, []).extend(
                    ComponentInfo(kind, cls.name, cls, info.name, info.distribution, info.version) for cls in items)
        self._collect_formats()  # before the tables: a plugin its formats hook breaks brings no component either
        for plugin_name, components in found.items():
            if self.plugins[plugin_name].status != "ok":
                continue
            for component in components:
                table = self._components[component.kind]
                if component.name in table or (component.kind, component.name) in self._conflicts:
                    clash = self._conflicts.setdefault((component.kind, component.name), [])
                    if component.name in table:
                        clash.append(table.pop(component.name))
                    clash.append(component)
                    continue
                table[component.name] = component
                self._by_class[component.cls] = component

    def _collect_formats(self) -> None:
        from .formats import FORMATS

        for impl, info in self._usable("setforge_register_formats"):
            _, formats = _call(info, "setforge_register_formats() failed", lambda: _checked_formats(impl.function()))
            for fmt in formats or []:  # (None when the hook failed: the plugin is broken)
                if fmt.name in FORMATS or fmt.name in self._formats or fmt.name in self._format_conflicts:
                    clash = self._format_conflicts.setdefault(fmt.name, [])
                    if fmt.name in self._formats:
                        clash.append(self._formats.pop(fmt.name)[1])
                    clash.append(info)
                    continue
                self._formats[fmt.name] = (fmt, info)

    def format_plugins(self) -> dict[str, PluginInfo]:
        """The plugin that registered each usable format of a plugin (the core's ``npz`` is none's)."""
        return {name: info for name, (_, info) in sorted(self.load()._formats.items())}

    def formats(self) -> dict[str, Any]:
        """Every usable ``output.format`` by name: the core's ``npz`` and the plugins' formats (another
        distribution's inside `guard`, so that its failures name its plugin)."""
        from .formats import FORMATS, guarded

        self.load()
        named = lambda name, info: lambda action: self.guard(info, f"output format '{name}' {action}")  # noqa: E731
        return {**FORMATS, **{name: fmt if info.distribution == "setforge" else guarded(fmt, named(name, info))
                              for name, (fmt, info) in sorted(self._formats.items())}}

    @staticmethod
    def _validate_classes(kind: str, classes: Any, base: type) -> list[type]:
        from .components import NAME_PATTERN

        if classes is None:
            return []
        if not isinstance(classes, (list, tuple)):
            raise PluginError(f"must return a list of {base.__name__} classes, got {type(classes).__name__}")
        names = set()
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"returned {cls!r}, which is not a subclass of setforge.{base.__name__}")
            if not isinstance(cls.name, str) or not NAME_PATTERN.match(cls.name):
                raise PluginError(f"{cls.__qualname__}.name must be kebab-case (e.g. 'my-op'), got {cls.name!r}")
            if cls.kind != kind:
                raise PluginError(f"{cls.__qualname__} is of kind {cls.kind!r}, returned from the {kind} hook")
            if cls.name in names:
                raise PluginError(f"returned two {kind} components named '{cls.name}'")
            names.add(cls.name)
            if not (isinstance(cls.Params, type) and issubclass(cls.Params, base.Params)):  # as the contract says
                raise PluginError(f"{cls.__qualname__}.Params must subclass {base.__name__}.Params, got {cls.Params!r}")
            try:
                cls.Params()
            except Exception as error:  # noqa: BLE001
                raise PluginError(f"{cls.__qualname__}.Params() must build with defaults only: {error}") from None
        return list(classes)

    # ---------------------------------------------------------------------------- queries
    def components(self, kind: str | None = None) -> list[ComponentInfo]:
        """Every usable component (of one kind), sorted by kind and name."""
        self.load()
        kinds = KINDS if kind is None else (self._check_kind(kind),)
        return [self._components[k][n] for k in kinds for n in sorted(self._components[k])]

    def conflicts(self) -> dict[tuple[str, str], list[Any]]:
        """Names registered by more than one plugin within a kind (their `ComponentInfo`s), and
        output formats (kind ``format``, their plugins' `PluginInfo`s): unusable until resolved."""
        self.load()
        return {**self._conflicts, **{("format", name): infos for name, infos in self._format_conflicts.items()}}

    def names(self, kind: str) -> list[str]:
        self.load()
        return sorted(self._components[self._check_kind(kind)])

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in KINDS:
            raise ConfigError(problems=[("kind", f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")])
        return kind

    def get(self, kind: str, name: str, place: str | None = None) -> ComponentInfo:
        """The component `name` of `kind`; an unknown name is a `ConfigError` listing the known
        names with the closest match, a clash a `PluginError` naming both distributions."""
        self.load()
        table = self._components[self._check_kind(kind)]
        if (kind, name) in self._conflicts:
            clash = self._conflicts[(kind, name)]
            sources = " and ".join(f"plugin '{c.plugin}' ({c.distribution} {c.version})" for c in clash)
            raise PluginError(f"{kind} '{name}' is registered by {sources}; disable one "
                              f"({' or '.join(f'-p no:{c.plugin}' for c in clash)}, or plugins_deny in the run file)")
        if name in table:
            return table[name]
        raise ConfigError(problems=[(place or kind, self.unknown_message(kind, name))])

    def unknown_message(self, kind: str, name: Any) -> str:
        known = self.names(kind)
        message = f"unknown {kind} {name!r}"
        if close := difflib.get_close_matches(str(name), known, n=1, cutoff=0.5):
            message += f"; did you mean '{close[0]}'?"
        message += f"{'' if close else '.'} Known: {', '.join(known) if known else '(none installed)'}"
        return message + self.not_loaded_note()

    def not_loaded_note(self) -> str:
        """What an unknown name's message adds: the plugins that failed to load, and those disabled
        here (``-p no:``, ``plugins_deny``, ``plugins_allow``); empty when every plugin loaded."""
        broken, off = ([p.name for p in self.plugins.values() if p.status == status] for status in ("broken", "disabled"))
        return ((f" (plugins that failed to load: {', '.join(broken)}; see `setforge plugins list`)" if broken else "")
                + (f" (plugins disabled here: {', '.join(off)})" if off else ""))

    def providers(self, hook: str) -> list[PluginInfo]:
        """The loaded plugins implementing `hook`, in the order pluggy calls them."""
        self.load()
        return [info for _, info in self._usable(hook)]

    def _usable(self, hook: str) -> Iterator[tuple[Any, PluginInfo]]:
        """Each implementation of `hook` with its plugin, in pluggy's order, skipping every plugin
        that is not ok (one that broke in any hook is skipped in all of them, events included)."""
        for impl in reversed(getattr(self._pm.hook, hook).get_hookimpls()):
            info = self.plugins.get(impl.plugin_name)
            if info is not None and info.status == "ok":
                yield impl, info

    def first_result(self, hook: str, **kwargs: Any) -> Any:
        """Call the implementations of a ``firstresult`` hook in pluggy's order and return the first
        result that is not None (None if there is none); a failure names the plugin."""
        self.load()
        for impl, info in self._usable(hook):
            with self.guard(info, hook):
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            if result is not None:
                return result
        return None

    def info_for(self, component: Any) -> ComponentInfo | None:
        """The registry entry of a component instance or class (None for unregistered ones)."""
        cls = component if isinstance(component, type) else type(component)
        return self._by_class.get(cls)

    def label(self, component: Any) -> str:
        """``kind 'name' (plugin 'P', DIST VERSION)`` for a component, its class or its `ComponentInfo`."""
        if isinstance(component, (ComponentInfo, PluginInfo)):
            return component.label
        if (info := self.info_for(component)) is not None:
            return info.label
        if (ops := getattr(component, "ops", None)) is not None:
            return "augment chain [" + ", ".join(self.label(op) for op in ops) + "]"
        return f"{getattr(component, 'kind', '?')} '{getattr(component, 'name', type(component).__name__)}'"

    # --------------------------------------------------------------------------- building
    def create(self, kind: str, name: str, params: Mapping[str, Any] | Any = None, place: str | None = None) -> Any:
        """A ready instance of `kind`/`name` with validated `params` (the path a run file takes)."""
        info = self.get(kind, name, place=place)
        with self.guard(info, "__init__"):
            return info.cls(info.cls.parse_params(params, place=f"{place}.params" if place else "params"))

    @contextlib.contextmanager
    def guard(self, component: Any, action: str) -> Iterator[None]:
        """Name the component, plugin and distribution in anything a plugin raises: a
        `DataError` stays one (exit 3), a `ConfigError` passes, anything else is a `PluginError`."""
        try:
            yield
        except ConfigError:
            raise
        except InvalidDatasetError as error:
            raise PluginError(f"{self.label(component)} built an invalid Dataset in {action}: {error}") from error
        except DataError as error:
            raise DataError(self._named(component, error)) from error
        except PluginError as error:
            raise PluginError(self._named(component, error)) from error
        except SetforgeError:
            raise
        except SystemExit as error:  # sys.exit() inside a plugin must not end the run as if it succeeded
            raise PluginError(f"{self.label(component)} called sys.exit({error.code!r}) in {action}") from error
        except Exception as error:  # noqa: BLE001
            if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:  # the machine's fault, not the plugin's
                where = f" {error.filename}" if error.filename else ""
                raise OutputError(f"{self.label(component)} could not write{where} in {action}: {error.strerror}; "
                                  "free some space (or choose another output.dir) and rerun with --resume",
                                  errno=error.errno) from error
            from .distributed import peer_failed  # under torchrun, another rank's failure is not this plugin's

            raise peer_failed(error) or PluginError(f"{self.label(component)} failed in {action}: "
                                                    f"{_format_exception(error)}") from error

    def _named(self, component: Any, error: BaseException) -> str:
        """`error`'s message led by the component's label, without repeating a leading ``kind 'name'``."""
        text, label = str(error), self.label(component)
        short = f"{getattr(component, 'kind', '')} '{getattr(component, 'name', '')}'"
        if text.startswith(short) and not text.startswith(label):
            return label + text[len(short):]
        return text if text.startswith(label) else f"{label}: {text}"

    # ----------------------------------------------------------------------------- events
    def emit(self, event: Any) -> list[str]:
        """Send `event` to every ``setforge_on_event``; failures are returned, not raised."""
        self.load()
        failures = []
        for impl, _ in self._usable("setforge_on_event"):
            try:
                impl.function(**{arg: event for arg in impl.argnames})
            except (Exception, SystemExit) as error:  # noqa: BLE001 - an observer never stops a run
                failures.append(f"plugin '{impl.plugin_name}' setforge_on_event: {_format_exception(error)}")
        return failures

    def hook_names(self) -> list[str]:
        """Every hook in the specification (for docs and meta-tests)."""
        return sorted(name for name in dir(self._pm.hook) if name.startswith("setforge_"))


_DEFAULT: Registry | None = None


def registry_for(config: Any = None, local: Sequence[str] = (), disabled: Iterable[str] = (),
                 strict: bool = False) -> Registry:
    """The loaded registry a run file asks for: its ``plugins``, ``plugins_deny``, ``plugins_allow``
    and folder (`config`: a `RunConfig`, what an invalid run file still tells, or None), plus the
    command line's ``-p`` modules (`local`) and ``-p no:NAME`` (`disabled`)."""
    local, disabled = list(local), list(disabled)
    if config is not None:
        local = list(config.plugins) + local
        disabled += list(config.plugins_deny)
    return Registry(local=local, disabled=disabled, allow=None if config is None else config.plugins_allow,
                    strict=strict, base_dir=None if config is None else config.base_dir).load()


def default_registry() -> Registry:
    """The process-wide registry of installed plugins (loaded on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry().load()
    return _DEFAULT


def create(kind: str, name: str, params: Mapping[str, Any] | Any = None) -> Any:
    """Build the installed component `kind`/`name` with `params`, exactly as a run file would.

    >>> op = setforge.create("augment", NAME, {"p": 0.5})  # NAME: any installed augmenter
    """
    return default_registry().create(kind, name, params)
