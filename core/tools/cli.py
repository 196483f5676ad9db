"""The ``setforge`` command.

Exit codes: 0 ok, 2 bad run file or usage, 3 bad data (`DataError`), 4 a plugin failed
(`PluginError`, named with its distribution), 5 the run folder could not be written (`OutputError`:
permission denied, disk full), 1 a bug in setforge itself.

Only the standard library is imported at module level, so ``setforge --help`` is instant; torch
loads when a command needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PluginError, SetforgeError
from ..hookspecs import KINDS
from .stopping import sigterm_as_interrupt

__all__ = ["main", "build_parser"]

DEBUG_ENV = "SETFORGE_DEBUG"
#: The hook through which plugins register output formats (``setforge.formats.Format``).
EPILOG = """exit codes: 0 ok, 2 bad run file or usage, 3 bad data, 4 a plugin failed,
5 the run folder could not be written (permission, disk full), 1 a bug in setforge,
130 interrupted (Ctrl-C), 143 stopped by SIGTERM
docs: docs/run-files.md (run files), docs/plugins.md (writing plugins)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are exit 2, like a bad run file
        self.print_usage(sys.stderr)
        raise ConfigError(problems=[("usage", message)])


def _add_debug(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help=f"print the full traceback of a plugin failure (also: {DEBUG_ENV}=1)")


def _add_plugin_options(parser: argparse.ArgumentParser) -> None:
    _add_debug(parser)
    parser.add_argument("-p", dest="plugin_options", action="append", default=[], metavar="MODULE|no:NAME",
                        help="load a local plugin (module or .py file), or block one (no:NAME); repeatable")
    parser.add_argument("--strict", action="store_true", help="a plugin that fails to load is fatal (exit 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="setforge", description="Optimise a training set (augment, resample, generate) and "
                                                  "measure the gain on a real held-out test set.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _add_debug(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="run a run file")
    run.add_argument("file", help="the run file (.yaml, .yml, .toml or .json)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override one value, e.g. --set pipeline[2].params.epochs=5; repeatable")
    run.add_argument("--dry-run", action="store_true", help="validate, load the source and print the class counts "
                                                            "each step would produce, without running steps")
    run.add_argument("--force", action="store_true", help="replace an existing run folder")
    run.add_argument("--resume", action="store_true", help="continue from <dir>.partial/")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--observe", action="append", default=[], metavar="OBSERVER",
                     help="add a run observer: a name, or YAML such as '{name: NAME, params: {...}}' "
                          "(the same as --set 'observe[+]=OBSERVER'); repeatable")
    _add_plugin_options(run)

    demo = commands.add_parser("demo", help="run the embedded demo (long-tailed digits) into runs/demo/")
    demo.add_argument("--force", action="store_true", help="replace an existing runs/demo/")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_debug(demo)

    validate = commands.add_parser("validate", help="check a run file and print it resolved")
    validate.add_argument("file", help="the run file (.yaml, .yml, .toml or .json)")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                          help="override one value before validating, as run --set does; repeatable")
    _add_plugin_options(validate)

    plugins = commands.add_parser("plugins", help="list installed plugins or show one component")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND", parser_class=_Parser)
    plugins.set_defaults(print_help=plugins.print_help)  # (`setforge plugins` alone: this help, exit 2)
    plugin_list = plugin_commands.add_parser("list", help="every component (and downstream model and output format) "
                                                          "with its plugin, distribution, version")
    plugin_list.add_argument("--json", action="store_true", help="a JSON list of objects")
    _add_plugin_options(plugin_list)
    plugin_show = plugin_commands.add_parser("show", help="a component's docstring and params; what a "
                                                          "downstream model or an output format is")
    plugin_show.add_argument("name", metavar="[KIND/]NAME", help="a component's name, with its kind where two kinds "
                                                                 "share it (augment/flip); model/NAME: a downstream "
                                                                 "model; format/NAME: an output format")
    _add_plugin_options(plugin_show)

    schema = commands.add_parser("schema", help="JSON Schema of a run file, with every installed plugin's params")
    _add_plugin_options(schema)

    report = commands.add_parser("report", help="print a run folder's summary (and rewrite report.html)")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (the one holding report.json)")

    compare = commands.add_parser("compare", help="finished runs side by side: config differences, counts, "
                                                  "shared metrics, which is better")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more run folders; the first is the reference")
    compare.add_argument("--output", default="compare.html", help="where to write the comparison page "
                                                                  "(and its .json beside it); default compare.html")
    compare.add_argument("--all", action="store_true", help="print every shared metric, also those without a direction")

    new_plugin = commands.add_parser("new-plugin", help="make a plugin package with its entry point and a test")
    new_plugin.add_argument("name", help="the component's name in kebab-case, e.g. my-op: lower-case letters and "
                                         "digits, words joined by '-', starting with a letter")
    new_plugin.add_argument("--kind", required=True, choices=KINDS, metavar="KIND",
                            help=f"the component's kind: {', '.join(KINDS)}")
    new_plugin.add_argument("--dir", default=".", help="where to create the package folder "
                                                       "(default: the current folder)")
    return parser


def _registry(args: argparse.Namespace, config: Any = None) -> Any:
    from ..registry import is_plugin_file, registry_for

    options = getattr(args, "plugin_options", [])
    local = [p for p in options if not p.startswith("no:")]
    # a -p file is the shell's: it resolves against the current folder (a run file's plugins, against the file's)
    files = [p for p in local if is_plugin_file(p)]
    missing = [("-p", f"local plugin file {p} does not exist (in the current folder, {Path.cwd()})")
               for p in files if not Path(p).is_file()]
    disabled = [p[3:] for p in options if p.startswith("no:")]
    blocked = disabled + list(getattr(config, "plugins_deny", []))
    missing += _unimportable(list(getattr(config, "plugins", [])), "plugins",
                             getattr(config, "base_dir", Path.cwd()), "the run file's", blocked)
    missing += _unimportable([p for p in local if p not in files], "-p", Path.cwd(), "the current", blocked)
    if missing:
        raise ConfigError(problems=missing)
    return registry_for(config, local=[str(Path(p).resolve()) if p in files else p for p in local],
                        disabled=disabled, strict=getattr(args, "strict", False))


def _unimportable(specs: list[str], place: str, folder: Path, whose: str, disabled: list[str]) -> list[tuple[str, str]]:
    """A problem for each module name in `specs` (a run file's ``plugins`` or ``-p``) that no module
    answers to; a module that is found but fails to import is a broken plugin, as any other."""
    import importlib.util

    from ..registry import is_plugin_file

    problems = []
    for index, spec in enumerate(specs):
        if is_plugin_file(spec) or spec in disabled:
            continue
        try:
            found = importlib.util.find_spec(spec) is not None
        except (ImportError, ValueError):  # (a dotted name whose package is missing, or an empty name)
            found = False
        if found:
            continue
        where = f"{place}[{index}]" if place == "plugins" else place
        accepts = (f"`{place}` takes .py files (paths from {whose} folder) and names of importable "
                   "modules; installed plugins (entry points) load without being named")
        if (folder / f"{spec}.py").is_file():
            problems.append((where, f"{spec!r} is not an importable module; to load {folder / spec}.py, write "
                                    f"'{spec}.py'. {accepts}"))
        else:
            problems.append((where, f"no importable module is named {spec!r}. {accepts}"))
    return problems


# ------------------------------------------------------------------------------ plugins
def _cmd_plugins(args: argparse.Namespace) -> int:
    from .listing import plugin_rows, print_rows, show_component

    registry = _registry(args)
    if args.plugins_command == "show":
        return show_component(registry, args.name)
    print_rows(plugin_rows(registry), args.json)
    return 0


# --------------------------------------------------------------------- run files
def _load_config(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..checks import load_and_check

    # load_and_check = load_run_config + check_components, reporting both kinds of problems at once
    return load_and_check(args.file, args.overrides, lambda config: _registry(args, config))


def _cmd_validate(args: argparse.Namespace) -> int:
    from .dump import dump_resolved

    config, _ = _load_config(args)
    print(dump_resolved(config))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from .schema import run_file_schema

    print(json.dumps(run_file_schema(_registry(args)), indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ..pipeline import run
    from .dryrun import dry_run

    args.overrides += [f"observe[+]={spec}" for spec in args.observe]
    config, registry = _load_config(args)
    try:
        if args.dry_run:
            print(dry_run(config, registry, force=args.force))
            return 0
        with sigterm_as_interrupt():
            result = run(config, registry, force=args.force or config.output.force, resume=args.resume,
                         progress=not args.quiet)
    except ConfigError as error:  # found once the run began (device: cuda without CUDA): name the --set too
        from ..problems import tidy_problems

        if not error.problems:
            raise
        raise ConfigError(problems=tidy_problems(error.problems, getattr(config, "_overrides", {}))) from error
    except KeyboardInterrupt as interrupt:
        streamed = " (a streaming run does not resume: it starts over)" if config.source.stream is True else ""
        _note_partial(interrupt, config.output.dir, f"`{_resume_command(args)}` continues it{streamed}; a rerun "
                                                    "without --resume removes it")
        raise
    if result.report:  # under torchrun only rank 0 has one (and prints it)
        print(result.summary())
    from .. import distributed

    distributed.finish()  # every rank got through: they leave the process group together
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import load_demo_config, run_demo

    try:
        with sigterm_as_interrupt():
            result = run_demo(force=args.force, progress=not args.quiet)
    except KeyboardInterrupt as interrupt:
        _note_partial(interrupt, load_demo_config().output.dir,
                      "the demo cannot resume: `setforge demo` starts it afresh and removes it")
        raise
    print(result.summary())  # ends on the headline: raw against optimised, and the step that earned it
    return 0


def _resume_command(args: argparse.Namespace) -> str:
    """The command line that resumes the interrupted ``setforge run`` of `args`: the same file,
    ``--set`` values (``--observe`` among them), ``-p`` plugins and ``--force``, with ``--resume``."""
    import shlex

    words = ["setforge", "run", args.file]
    for flag, values in (("--set", args.overrides), ("-p", args.plugin_options)):
        words += [word for value in values for word in (flag, value)]
    return shlex.join(words + ["--force"] * bool(args.force) + ["--resume"])


def _note_partial(interrupt: KeyboardInterrupt, output_dir: str, then: str) -> None:
    """Add to an interrupted run's `interrupt` a note (printed under ``setforge: interrupted``)
    saying that ``<output_dir>.partial/`` keeps the work done, and `then`: how to go on. Nothing
    when there is no such folder (interrupted before it was made), nor on a torchrun rank but 0."""
    from .. import distributed
    from ..output import RunFolder

    partial = RunFolder(Path(output_dir)).partial
    if partial.is_dir() and distributed.is_main():
        interrupt.add_note(f"{partial}/ keeps what was done; {then}")


def _check_run_dirs(paths: Sequence[str]) -> None:
    """A usage error (exit 2) naming each of `paths` that is not a finished run folder (no
    report.json there); a report.json that cannot be read is `read_report`'s to say (exit 3)."""
    from ..record import unfinished_hint

    problems = []
    for given in paths:
        path = Path(given)
        if (path / "report.json").is_file():
            continue
        if path.is_file():
            hint = f"give its folder, {path.parent}" if path.name == "report.json" else "give a run folder"
            problems.append(("RUN_DIR", f"{given} is a file, not a run folder; {hint}"))
            continue
        hint = unfinished_hint(path) or " (a run folder is the output.dir of a finished run)"
        what = "is not a finished setforge run folder: no report.json" if path.is_dir() else "does not exist"
        problems.append(("RUN_DIR", f"{given or '.'} {what}{hint}"))
    if problems:
        raise ConfigError(problems=problems)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import summarize_run_dir

    _check_run_dirs([args.run_dir])
    print(summarize_run_dir(args.run_dir))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs, format_comparison, write_comparison

    if len(args.run_dirs) < 2:
        raise ConfigError(problems=[("usage", "compare needs at least two run folders")])
    _check_run_dirs(args.run_dirs)
    comparison = compare_runs(args.run_dirs)
    print(format_comparison(comparison, all_metrics=args.all))
    print(f"\nwritten: {write_comparison(comparison, args.output)}")
    return 0


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import new_plugin

    path = new_plugin(args.name, args.kind, args.dir)
    print(f"created {path}")
    return 0


_COMMANDS = {"run": _cmd_run, "demo": _cmd_demo, "validate": _cmd_validate, "plugins": _cmd_plugins,
             "schema": _cmd_schema, "report": _cmd_report, "compare": _cmd_compare, "new-plugin": _cmd_new_plugin}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv
    args = None
    try:
        args = parser.parse_args(argv)
        if args.version:
            from .. import __version__

            print(f"setforge {__version__}")
            return 0
        if args.command is None or (args.command == "plugins" and args.plugins_command is None):
            # (not parse_args(["plugins", "--help"]): its SystemExit(0) made a missing subcommand exit 0)
            parser.print_help() if args.command is None else args.print_help()
            return 2
        return _COMMANDS[args.command](args)
    except SystemExit as exit_:  # --help, or argparse giving up
        return int(exit_.code or 0) if isinstance(exit_.code, int) else 2
    except ConfigError as error:
        # (the command as typed, where argparse gave up before naming it)
        command = args.command if args is not None else next((a for a in argv if not a.startswith("-")), None)
        title = "invalid run file or usage" if command in ("run", "validate") else "invalid usage"
        _print_error(title if error.problems else "error", error)
        return 2
    except SetforgeError as error:
        writes_a_run = getattr(args, "command", "run") in ("run", "demo")
        titles = {3: "bad data", 4: "plugin failure", 5: "cannot write the run folder" if writes_a_run else "cannot write"}
        _print_error(titles.get(error.exit_code, "error"), error)
        if isinstance(error, PluginError):
            if debug:
                traceback.print_exception(error, file=sys.stderr)
            else:
                print(f"  (the full traceback: rerun with --debug, or set {DEBUG_ENV}=1)", file=sys.stderr)
        if getattr(error, "linger_s", 0):  # (a rank stopped by its peer: torchrun must see the peer fail first)
            _linger(error.linger_s)  # type: ignore[attr-defined]
        return error.exit_code
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM while a run runs (`Terminated`)
        print(f"setforge: interrupted{f' ({interrupt})' if str(interrupt) else ''}", file=sys.stderr)
        for note in getattr(interrupt, "__notes__", ()):  # (where the work done is kept, from _note_partial)
            print(f"  {note}", file=sys.stderr)
        return getattr(interrupt, "exit_status", 130)
    except BrokenPipeError:  # `setforge plugins list | head`: the reader left early, which is no error of ours
        try:  # nothing more reaches the closed pipe (nor a complaint at exit, when Python flushes stdout)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # 128 + SIGPIPE, as a command killed by the broken pipe would exit


def _linger(seconds: float) -> None:
    """Wait `seconds`, or until SIGTERM (torchrun stopping this rank), which then ends the wait as
    the process's ordinary end: its exit handlers still remove its scratch folder."""
    sys.stderr.flush()
    with contextlib.suppress(KeyboardInterrupt), sigterm_as_interrupt():
        time.sleep(seconds)


def _print_error(title: str, error: SetforgeError) -> None:
    problems = getattr(error, "problems", None)
    if problems:
        print(f"setforge: {title}:", file=sys.stderr)
        for place, text in problems:
            print(f"  {place}: {text}" if place else f"  {text}", file=sys.stderr)
    else:
        print(f"setforge: {title}: {error}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
