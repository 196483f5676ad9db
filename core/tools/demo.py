"""``setforge demo``: the embedded run file (long-tailed digits, an augment step and random
over-sampling, balance, utility, ablation and leakage), run into ``runs/demo/``, and its headline:
baseline vs optimised on the real test split and which step earned the difference."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from ..errors import SetforgeError

__all__ = ["run_demo", "load_demo_config", "headline", "DEMO_FILE"]

DEMO_FILE = "demo.yaml"


def load_demo_config() -> Any:
    """The embedded demo run file (``setforge/tools/demo.yaml``) as a `RunConfig`."""
    import yaml

    from ..config import RunConfig
    from ..validation import problems_from_validation_error

    text = importlib.resources.files(__package__).joinpath(DEMO_FILE).read_text(encoding="utf-8")
    try:
        return RunConfig.model_validate(yaml.safe_load(text))
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
    registry = registry_for(config)
    check_components(config, registry)
    return run(config, registry, force=force, progress=progress)


def headline(report: dict[str, Any], score: str = "balanced_accuracy") -> str:
    """One line from a run's ``ablation`` numbers: the raw baseline vs the optimised set on the real
    test split (mean ± std over its seeds) and the step whose addition helped most ("" without them)."""
    measures = report.get("metrics", {}).get("measures", {}).get("ablation", {})
    table = report.get("metrics", {}).get("tables", {}).get("ablation", {}).get("steps")
    steps = report.get("steps", [])
    last = f"cumulative/{len(steps)}/{score}"
    if f"cumulative/0/{score}" not in measures or last not in measures or not table:
        return ""
    raw, opt = measures[f"cumulative/0/{score}"], measures[last]
    n_seeds = report.get("evaluators", {}).get("ablation", {}).get("params", {}).get("repeats", "?")
    text = (f"ablation: {score.replace('_', ' ')} on the real test split ({raw['n']} rows), mean ± std over "
            f"{n_seeds} seeds: baseline {raw['value']:.4f} ± {raw['std']:.4f} -> optimised "
            f"{opt['value']:.4f} ± {opt['std']:.4f} ({opt['value'] - raw['value']:+.4f})")
    verdicts = {row[0]: row[3] for row in table["rows"][1:]}
    gains = {label: measures[f"step/{label}/gain/{score}"] for label in verdicts}
    helped = [label for label in verdicts if verdicts[label] == "helped"]
    if helped:
        best = max(helped, key=lambda label: gains[label]["value"])
        text += (f"; earned by step {best} ({gains[best]['value']:+.4f} ± {gains[best]['std']:.4f} when added)")
    else:
        text += "; no step helped beyond the seeds' spread"
    others = [f"{label} {verdicts[label]} ({gains[label]['value']:+.4f})" for label in verdicts
              if not helped or label != best]
    if others:
        text += "; " + ", ".join(others)
    return text
