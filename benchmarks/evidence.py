"""Evidence: which training-set changes help a classifier on long-tailed digits, measured on the
real, balanced test split that no step touched.

Part ``longtail``: scikit-learn's digits cut to the long-tailed protocol (``sklearn-digits`` with
``imbalance`` 10 and 20: a balanced real test part, the training part long-tailed, val carved from
it), 3 run seeds, each pipeline run through setforge's own pipeline (so the host's step semantics
hold), scored by ``utility`` with logistic regression and with the MLP (one model per run seed):
raw, random-over, smote, augment copies (affine, minority classes), each generator fill
(``dcgan``, plus ``gaussian-mixture`` / ``wgan-gp`` when installed), generator fill + quality gate,
and generator to half the largest class + smote. A scikit-learn / imbalanced-learn reference
(LogisticRegression on raw, RandomOverSampler, SMOTE) runs on the same split.

Generator fills run with ``guard: warn`` (the host's guard records its verdict, kept in
``_guard`` per pipeline, and the run goes on), so the table shows what a weak generator does.

Part ``ablation``: per imbalance, the best pipeline of the ``longtail`` part (mean
logistic-regression balanced accuracy; read from the results file when ``longtail`` ran in
another process) with the ``ablation`` evaluator (cumulative and leave-one-step-out, ``--seeds``
repeats).

Part ``pseudo``: digits (``imbalance: 1``: a balanced real test part, every class the same
training rows) with 10% of the training labels kept and the rest given as unlabelled rows:
labelled only, + the ``pseudo-label`` step, and all labels.

    python benchmarks/evidence.py [--parts longtail,ablation,pseudo] [--seeds 3] [--gan-steps 1500]
    python benchmarks/evidence.py --quick   # the subset: dcgan and gaussian-mixture, 300 GAN steps

``--quick`` runs the same table with the generators ``dcgan`` and ``gaussian-mixture`` only and 300
GAN steps (``wgan-gp`` at a useful budget is the costly row); the mode is saved in ``conditions``.
The ``wgan-gp`` rows at the quick budget were measured apart, into their own file:

    python benchmarks/evidence.py --parts longtail --generators wgan-gp --gan-steps 300 \
        --out benchmarks/results/evidence-wgan.json

Results go to ``benchmarks/results/evidence.json`` (each part updates its own key).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "evidence.json"
SCORES = ("accuracy", "balanced_accuracy", "macro_f1")
MODELS = {"lr": {"model": "logistic-regression"}, "mlp": {"model": "mlp"}}


def _run(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    from setforge.config import RunConfig
    from setforge.pipeline import run

    config = dict(config, output={"dir": str(folder)})
    result = run(RunConfig.model_validate(config), force=True, progress=False)
    return result.report


def _utility(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    measures = report["metrics"]["measures"]
    out = {}
    for key, scope in (("lr", "utility"), ("mlp", "utility-2")):
        out[key] = {s: measures[scope][f"optimised/{s}"]["value"] for s in SCORES}
    return out


def _predictions(folder: Path) -> dict[str, dict[str, Any]]:
    """Each model's test predictions in a finished run: what ``utility`` kept for ``setforge compare``
    (``evaluate/<scope>/test-predictions.npz``: labels, raw and optimised predictions, classes, minority)."""
    import numpy as np

    from setforge.plugins.evaluate.utility import PREDICTIONS_FILE

    out = {}
    for key, scope in (("lr", "utility"), ("mlp", "utility-2")):
        with np.load(folder / "evaluate" / scope / PREDICTIONS_FILE, allow_pickle=False) as kept:
            out[key] = {name: kept[name] for name in ("y", "raw", "optimised", "classes", "minority")}
    return out


def _paired_change(kept: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Optimised minus raw over the run seeds, paired on the same test rows (the run seeds as the
    seeds), each score with the 95% interval of `paired_deltas`: the noise of the test rows and of
    the seeds, which the seeds' spread alone does not show (the test rows are the same in every run).
    None when the runs' test rows differ."""
    import numpy as np
    import torch

    from setforge.plugins.evaluate._downstream import paired_deltas

    if any(not np.array_equal(k["y"], kept[0]["y"]) for k in kept):
        return None
    raw, optimised = (torch.from_numpy(np.concatenate([k[side] for k in kept])) for side in ("raw", "optimised"))
    changes = paired_deltas(torch.from_numpy(kept[0]["y"]), raw, optimised, len(kept[0]["classes"]), 2000,
                            torch.Generator().manual_seed(0), 0.95, kept[0]["minority"].tolist())
    return {key: {"value": c.value, "interval": None if c.interval is None else list(c.interval)}
            for key, c in changes.items() if key in (*SCORES, "minority_recall")}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _generators(wanted: list[str]) -> list[str]:
    from setforge.registry import Registry

    names = set(Registry().load().names("generate"))
    return [g for g in wanted if g in names]


def _gen_params(name: str, steps: int) -> dict[str, Any]:
    if name in ("dcgan", "wgan-gp"):
        return {"steps": steps, "batch_size": 64, "width": 32, "grid_every": 0}
    return {}


def save(path: Path, keys: tuple[str, ...], value: Any) -> None:
    """Set ``results[keys...] = value`` in the JSON file at `path`, under a file lock, so that
    several processes (one per imbalance) update one results file."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        node = results
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def longtail(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    evaluate = [{"name": "utility", "params": MODELS["lr"]}, {"name": "utility", "params": MODELS["mlp"]}]
    gate = {"resample": "quality-gate", "params": {"model": "mlp", "threshold": 0.5}}
    affine = {"augment": "affine", "params": {"degrees": 10, "translate": 0.1}, "copies": 3, "minority": True}
    out: dict[str, Any] = {}
    for imbalance in args.imbalances:
        save(args.out, ("longtail", str(imbalance)), {})  # no row of an earlier run stays beside this one's
        source = {"name": "sklearn-digits", "params": {"imbalance": imbalance}}
        pipelines: dict[str, list[dict[str, Any]]] = {
            "raw": [], "random-over": [{"resample": "random-over"}], "smote": [{"resample": "smote", "params": {"k_neighbors": "auto"}}],
            "augment copies": [affine],
        }
        for name in _generators(args.generators):
            fill = {"generate": name, "params": _gen_params(name, args.gan_steps), "target": "balance", "guard": "warn"}
            pipelines[f"{name} fill"] = [fill]
            pipelines[f"{name} fill + quality-gate"] = [fill, gate]
            pipelines[f"{name} half + smote"] = [dict(fill, target=None, per_class=args.half), {"resample": "smote", "params": {"k_neighbors": "auto"}}]
        rows: dict[str, Any] = {}
        for label, steps in pipelines.items():
            per_seed: dict[str, dict[str, list[float]]] = {m: {s: [] for s in SCORES} for m in MODELS}
            kept: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
            started = time.perf_counter()
            for seed in range(args.seeds):
                steps_now = [{k: v for k, v in s.items() if v is not None} for s in steps]
                report = _run({"seed": seed, "device": "cpu", "source": source, "split": {"val": 0.1},
                               "pipeline": steps_now, "evaluate": evaluate}, work / f"r{imbalance}-{seed}")
                for model, scores in _utility(report).items():
                    for s, v in scores.items():
                        per_seed[model][s].append(v)
                for model, predictions in _predictions(work / f"r{imbalance}-{seed}").items():
                    kept[model].append(predictions)
                if seed == 0:
                    rows.setdefault("_counts", {})[label] = report["counts"]["optimised"]["by_origin"]
                    guards = [{k: s["guard"].get(k) for k in ("passed", "ratio", "generated", "reference")}
                              for s in report["steps"] if s.get("guard") is not None]
                    if guards:
                        rows.setdefault("_guard", {})[label] = guards
            rows[label] = {m: {s: _mean_std(v) for s, v in scores.items()} for m, scores in per_seed.items()}
            for model in MODELS:  # against the raw rows, paired on the test rows and the run seeds
                rows[label][model]["paired_change"] = _paired_change(kept[model])
            rows[label]["seconds"] = time.perf_counter() - started
            save(args.out, ("longtail", str(imbalance), label), rows[label])  # each pipeline as it finishes
            change = (rows[label]["lr"]["paired_change"] or {}).get("balanced_accuracy") or {}
            interval = change.get("interval")
            print(f"imbalance {imbalance} {label:32s} lr {rows[label]['lr']['balanced_accuracy']['mean']:.4f} "
                  + (f"(change {change['value']:+.4f}, 95% interval {interval[0]:+.4f} to {interval[1]:+.4f}) "
                     if interval else "") +
                  f"mlp {rows[label]['mlp']['balanced_accuracy']['mean']:.4f}", flush=True)
        rows["_pipelines"] = pipelines
        rows["_sklearn_reference"] = _sklearn_reference(imbalance)
        for key in ("_counts", "_guard", "_pipelines", "_sklearn_reference"):
            if key in rows:
                save(args.out, ("longtail", str(imbalance), key), rows[key])
        out[str(imbalance)] = rows
    return out


def _sklearn_reference(imbalance: float) -> dict[str, float]:
    """LogisticRegression (scikit-learn) on the same protocol's train part: raw, ROS, SMOTE."""
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    from setforge import StepContext
    from setforge.plugins.source.sklearn import DigitsSource

    splits = DigitsSource({"imbalance": imbalance}).load(StepContext.from_seed(0))
    x, y = splits.train.x.reshape(len(splits.train), -1).numpy(), splits.train.y.numpy()
    xt, yt = splits.test.x.reshape(len(splits.test), -1).numpy(), splits.test.y.numpy()
    out = {}
    for name, sampler in (("raw", None), ("random-over", RandomOverSampler(random_state=0)),
                          ("smote", SMOTE(random_state=0))):
        xs, ys = (x, y) if sampler is None else sampler.fit_resample(x, y)
        model = LogisticRegression(max_iter=2000).fit(xs, ys)
        out[name] = float(balanced_accuracy_score(yt, model.predict(xt)))
    return out


def ablation(args: argparse.Namespace, work: Path, longtail_results: dict[str, Any]) -> dict[str, Any]:
    if not longtail_results:  # longtail ran in another process: its rows are in the results file
        saved = json.loads(args.out.read_text()).get("longtail", {}) if args.out.is_file() else {}
        longtail_results = {str(i): saved[str(i)] for i in args.imbalances if "_pipelines" in saved.get(str(i), {})}
        if not longtail_results:
            raise SystemExit(f"ablation: no finished longtail part for imbalance {args.imbalances} in {args.out}")
    out = {}
    for imbalance, rows in longtail_results.items():
        candidates = {k: v for k, v in rows.items() if not k.startswith("_") and k != "raw"}
        best = max(candidates, key=lambda k: candidates[k]["lr"]["balanced_accuracy"]["mean"])
        steps = rows["_pipelines"][best]
        steps = [{k: v for k, v in s.items() if v is not None} for s in steps]
        report = _run({"seed": 0, "device": "cpu", "source": {"name": "sklearn-digits",
                                                               "params": {"imbalance": float(imbalance)}},
                       "split": {"val": 0.1}, "pipeline": steps,
                       "evaluate": [{"name": "ablation", "params": {**MODELS["lr"], "repeats": max(2, args.seeds)}}]},
                      work / f"ablation-{imbalance}")
        out[imbalance] = {"pipeline": best, "steps": steps, "table": report["metrics"]["tables"]["ablation"]["steps"],
                          "measures": report["metrics"]["measures"]["ablation"]}
        print(f"ablation imbalance {imbalance}: {best}", flush=True)
        for row in out[imbalance]["table"]["rows"]:
            print("   ", " | ".join(row), flush=True)
    return out


def pseudo(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    source = {"name": "sklearn-digits", "params": {"imbalance": 1.0, "labelled_share": args.labelled_share}}
    full = {"name": "sklearn-digits", "params": {"imbalance": 1.0}}
    evaluate = [{"name": "utility", "params": MODELS["lr"]}, {"name": "utility", "params": MODELS["mlp"]}]
    variants = {
        "labelled only": (source, []),
        "+ pseudo-label (default cnn judge, 0.9, 2 rounds)": (source, [{"resample": "pseudo-label", "params": {
            "threshold": args.pseudo_threshold, "rounds": 2}}]),
        "+ pseudo-label (logistic-regression judge, 0.95, 2 rounds)": (source, [{"resample": "pseudo-label", "params": {
            "model": "logistic-regression", "threshold": 0.95, "rounds": 2}}]),
        "all labels": (full, []),
    }
    out: dict[str, Any] = {}
    for label, (src, steps) in variants.items():
        per_seed: dict[str, dict[str, list[float]]] = {m: {s: [] for s in SCORES} for m in MODELS}
        kept: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
        added = []
        for seed in range(args.seeds):
            report = _run({"seed": seed, "device": "cpu", "source": src, "split": {"val": 0.1},
                           "pipeline": steps, "evaluate": evaluate}, work / f"pseudo-{seed}")
            for model, scores in _utility(report).items():
                for s, v in scores.items():
                    per_seed[model][s].append(v)
            for model, predictions in _predictions(work / f"pseudo-{seed}").items():
                kept[model].append(predictions)
            added.append(report["counts"]["optimised"]["by_origin"].get("pseudo-labelled", 0))
            if steps:
                out.setdefault("_details", []).append(report["steps"][0].get("details"))
        out[label] = {m: {s: _mean_std(v) for s, v in scores.items()} for m, scores in per_seed.items()}
        for model in MODELS:  # the step against the labelled rows alone (a run's raw set), paired
            out[label][model]["paired_change"] = _paired_change(kept[model]) if steps else None
        out[label]["pseudo_labelled_rows"] = added
        change = (out[label]["lr"]["paired_change"] or {}).get("accuracy") or {}
        interval = change.get("interval")
        print(f"pseudo {label:56s} lr {out[label]['lr']['accuracy']['mean']:.4f} "
              + (f"(change {change['value']:+.4f}, 95% interval {interval[0]:+.4f} to {interval[1]:+.4f}) "
                 if interval else "") +
              f"mlp {out[label]['mlp']['accuracy']['mean']:.4f} added {added}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="longtail,ablation,pseudo")
    parser.add_argument("--imbalances", type=float, nargs="+", default=[10.0, 20.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--gan-steps", type=int, default=1500)
    parser.add_argument("--half", type=int, default=61, help="generator + smote: rows per class the generator "
                                                             "fills to (half the largest class) before smote")
    parser.add_argument("--labelled-share", type=float, default=0.1)
    parser.add_argument("--pseudo-threshold", type=float, default=0.9)
    parser.add_argument("--generators", nargs="+", default=["dcgan", "gaussian-mixture", "wgan-gp"])
    parser.add_argument("--quick", action="store_true", help="the subset: dcgan and gaussian-mixture, 300 GAN steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.generators = [g for g in args.generators if g in ("dcgan", "gaussian-mixture")]
        args.gan_steps = min(args.gan_steps, 300)
    import torch

    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    save(args.out, ("conditions",), {"python": platform.python_version(), "torch": torch.__version__,
                                     "threads": args.threads, "seeds": args.seeds, "gan_steps": args.gan_steps,
                                     "mode": "quick" if args.quick else "full", "generators": args.generators,
                                     "machine": f"{os.cpu_count()} CPU cores shared with other engineers' jobs",
                                     "load_average_at_start": os.getloadavg()})
    tag = ",".join(str(i) for i in args.imbalances)
    longtail_results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="setforge-evidence-") as tmp:
        work = Path(tmp)
        for part in parts:
            started = time.perf_counter()
            if part == "longtail":
                longtail_results = longtail(args, work)
            elif part == "ablation":
                for imbalance, value in ablation(args, work, longtail_results).items():
                    save(args.out, ("ablation", imbalance), value)
            elif part == "pseudo":
                save(args.out, ("pseudo",), pseudo(args, work))
            else:
                parser.error(f"unknown part {part!r}")
            save(args.out, ("seconds", f"{part} ({tag})" if part != "pseudo" else part), time.perf_counter() - started)
            save(args.out, ("load_average_after", f"{part} ({tag})" if part != "pseudo" else part), os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
