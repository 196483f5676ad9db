"""``setforge demo``: the embedded run file (long-tailed digits, an augment step and random
over-sampling, balance, utility, ablation and leakage), run into ``runs/demo/``, and its headline:
baseline vs optimised on the real test split and which step earned the difference."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from ..errors import SetforgeError

__all__ = ["run_demo", "load_demo_config", "DEMO_FILE"]

DEMO_FILE = "demo.yaml"


def load_demo_config() -> Any:
    """The embedded demo run file (``setforge/tools/demo.yaml``) as a `RunConfig`."""
    from ..config import RunConfig
    from ..runfile import _parse_yaml
    from ..validation import problems_from_validation_error

    text = importlib.resources.files(__package__).joinpath(DEMO_FILE).read_text(encoding="utf-8")
    try:
        return RunConfig.model_validate(_parse_yaml(text))  # read as every run file is
    except Exception as error:  # a broken embedded file is a bug, reported with its places
        problems = problems_from_validation_error(error, "demo.yaml") if hasattr(error, "errors") else []
        raise SetforgeError(f"the embedded demo.yaml is invalid: {problems or error}") from error


def run_demo(force: bool = False, progress: bool = True, output_dir: str | Path | None = None) -> Any:
    """Run the embedded demo into ``runs/demo/`` under the current folder (or `output_dir`); the `RunResult`."""
    from ..checks import check_components
    from ..pipeline import run
    from ..registry import registry_for

    config = load_demo_config()
    if output_dir is not None:
        config = config.model_copy(update={"output": config.output.model_copy(update={"dir": str(output_dir)})})
    _check_demo_folder(config.output.dir, force)
    registry = registry_for(config)
    return run(check_components(config, registry), registry, force=force, progress=progress)


def _check_demo_folder(folder: str, force: bool) -> None:
    """An existing demo folder, said in the demo's words: the demo has no run file whose
    ``output.force`` or ``output.dir`` its user could change (what the run's own check says)."""
    from ..errors import ConfigError
    from ..output import RunFolder

    (run_folder := RunFolder(folder)).recover()  # (a replacement a kill cut short is put back first)
    final = run_folder.final
    if not (final.exists() or final.is_symlink()):
        return
    if not RunFolder.is_run_folder(final) and not (final.is_dir() and not any(final.iterdir())):
        raise ConfigError(problems=[("demo", f"{final} exists and is not a setforge run folder; not replacing it, "
                                             "even with --force: move it away, or run the demo in another folder")])
    if not force:
        raise ConfigError(problems=[("demo", f"{final} exists (an earlier demo); `setforge demo --force` replaces "
                                             "it, or run the demo in another folder")])
