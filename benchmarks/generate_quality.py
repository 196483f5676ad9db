"""Quality of setforge's generators on digits and long-tailed digits, mean ± std over seeds.

For each dataset (``digits``: scikit-learn's 8x8 digits, stratified 60/10/30 train/val/test;
``longtail``: the ``sklearn-digits`` source's long-tailed protocol, imbalance 10, a balanced real
test part) and seed, and for each generator (``dcgan``, ``wgan-gp``, ``gaussian-mixture``, ``stylegan2``), with
and without the loop's data-efficient training (``diffaugment``: DiffAugment translation + color
+ cutout; ``ada``: ADA, target 0.6, dcgan and wgan-gp, with its final ``ada_p``; neural generators only), the benchmark fits the
generator on the real training rows (the val
split drives ``select: best-fd``), generates rows and measures:

- ``cas``: share of generated rows that a CNN trained on the real training rows (early-stopped on
  val) assigns to their requested class (digits: one generated row per real training row;
  longtail: the balance fill);
- ``fd_test``: Fréchet distance of generated rows to the real test split in that CNN's feature
  space (the trained feature space; lower is closer), and the real training rows' own distance
  to the test split for scale (``fd_test`` of ``real``);
- ``precision``, ``recall``, ``density``, ``coverage`` (PRDC, k=5) against the real test split
  in the same space;
- ``macro_f1``: downstream macro-F1 on the real test split of a logistic regression trained on
  the real rows plus the generator's balance fill (longtail), against ``smote`` (the same fill by
  setforge's ``smote``) and ``raw`` (real rows only); on balanced digits a fill adds one generated
  row per real row (``multiply: 1``);
- ``wall_s`` and ``cpu_s`` (``time.process_time``) of fit + sample, on one torch thread, and
  ``steps``: the generator steps trained (the rule that chose them is in the JSON's ``selection``).

Every generator runs with its default params (``steps: auto``, ``select: last``; the checkpoint
monitor is on, as in a run with a val split), sample grids off; ``--set`` overrides, and the JSON
says which params each run used. With CUDA present (``--gpu auto``) ``stylegan2`` also trains on
the GPU, ``stylegan2/plain@cuda-bf16`` (the loop's bf16 autocast + channels_last) against
``stylegan2/plain@cuda-fp32`` (``precision: fp32``); without CUDA those rows are skipped.

    python benchmarks/generate_quality.py [--seeds 0,1,2] [--datasets digits,longtail]
        [--generators dcgan,wgan-gp,gaussian-mixture] [--variants plain,diffaugment,ada]
        [--set dcgan.steps=3000] [--json PATH] [--cpu-minutes 5] [--gpu auto|off]

Writes ``benchmarks/results/generate_quality.json`` (after every measured row, so a long run
that is stopped keeps what it measured) and prints the table. On a shared machine, run one
process per dataset and seed with ``--part`` and join them with ``--combine``::

    python benchmarks/generate_quality.py --datasets digits --seeds 0 --part results/gq-digits-0.json
    ...
    python benchmarks/generate_quality.py --combine results/gq-*.json

Parts may share rows (each holds its dataset and seed's ``real`` row); for the same dataset, seed
and config the part named later on the command line wins, so re-measured rows replace old ones.

Targets, for each neural generator with its defaults (``dcgan/plain``, ``wgan-gp/plain``,
``stylegan2/diffaugment``; the other variants are comparisons): CAS >= 0.95 on digits (mean over
seeds) within ``--cpu-minutes`` CPU minutes (stylegan2: at least 10), and ``fd_test`` below
``gaussian-mixture``'s. Exit status 1 when a target is missed or a default was not measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "generate_quality.json"

#: The data-efficient variants of the neural generators. ADA's sign heuristic was designed for a
#: logistic discriminator; on wgan-gp's critic it is measured all the same (each row records the
#: final ``ada_p``). stylegan2 has no ADA row: its default is DiffAugment.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"diff_augment": []},  # no augmentation, whatever the generator's default (stylegan2's is DiffAugment)
    "diffaugment": {"diff_augment": ["translation", "color", "cutout"]},
    "ada": {"ada": {"target": 0.6}},
}
VARIANT_GENERATORS = {"plain": ("dcgan", "wgan-gp", "stylegan2"), "diffaugment": ("dcgan", "wgan-gp", "stylegan2"),
                      "ada": ("dcgan", "wgan-gp")}
#: The generators' params in this benchmark: their defaults (``steps: auto``, ``select: last``, the
#: checkpoint monitor on since the step has a val split), so the table measures what a run file
#: naming the generator gets; only the sample-grid PNGs are off (they change no weights). Override
#: with --set (e.g. ``--set dcgan.select='"best-fd"'``); the JSON records the params used and each
#: row's budget (``steps`` and the rule that chose them).
GENERATOR_PARAMS: dict[str, dict[str, Any]] = {
    "dcgan": {"grid_every": 0},
    "wgan-gp": {"grid_every": 0},
    "stylegan2": {"grid_every": 0},
    "gaussian-mixture": {},
}
#: With CUDA present (``--gpu auto``), these generators also train on the GPU, plain variant: the
#: loop's CUDA path (bf16 autocast + channels_last, ``precision: auto``) against ``precision: fp32``.
GPU_GENERATORS = ("stylegan2",)
GPU_PRECISIONS = {"cuda-bf16": {"precision": "auto"}, "cuda-fp32": {"precision": "fp32"}}
NEURAL = ("dcgan", "wgan-gp", "stylegan2")
#: CPU-minute targets that differ from --cpu-minutes (stylegan2: CAS >= 0.95 within 10 CPU minutes).
CPU_MINUTES = {"stylegan2": 10.0}
#: The variant that is each neural generator's defaults, which the targets are about (stylegan2
#: trains with DiffAugment by default; plain means no augmentation).
DEFAULT_VARIANT = {"dcgan": "plain", "wgan-gp": "plain", "stylegan2": "diffaugment"}


def splits(dataset: str, seed: int):
    """(train, val, test) real splits of `dataset` for `seed`, through setforge's own source and split."""
    import tempfile

    from setforge.config import RunConfig
    from setforge.pipeline import run

    source = {"name": "sklearn-digits", "params": {"imbalance": 10} if dataset == "longtail" else {}}
    with tempfile.TemporaryDirectory(prefix="gq-") as folder:
        config = RunConfig.model_validate({"seed": seed, "device": "cpu", "source": source,
                                           "split": {"test": 0.3, "val": 0.1}, "pipeline": [], "evaluate": [],
                                           "output": {"dir": f"{folder}/run"}})
        result = run(config, progress=False)
    return result.raw_train, result.val, result.test


def fill_counts(dataset: str, train) -> list[int]:
    counts = train.class_counts()
    return list(counts) if dataset == "digits" else [max(counts) - c for c in counts]


def judge(train, val, seed: int):
    from setforge.plugins._shared.classifiers import train_classifier

    return train_classifier("cnn", train, val, seed, "cpu")


def quality(model, generated, test) -> dict[str, float]:
    from setforge.plugins.evaluate._stats import frechet_distance_from_features
    from setforge.plugins.evaluate.prdc import prdc

    out: dict[str, float] = {}
    if generated.y.numel():
        out["cas"] = float((model.predict(generated.x) == generated.y).double().mean())
    test_features = model.embed(test.x).double()
    features = model.embed(generated.x).double()
    out["fd_test"] = frechet_distance_from_features(test_features, features)
    out.update({k: float(v) for k, v in prdc(test_features.float(), features.float(), k=5).items()})
    return out


def downstream(train, fill, val, test, seed: int) -> float:
    from setforge.dataset import Dataset
    from setforge.plugins._shared.classifiers import classification_scores, train_classifier

    data = train if fill is None else Dataset.concat([train, fill])
    model = train_classifier("logistic-regression", data, val, seed, "cpu")
    return classification_scores(test.y, model.predict(test.x), test.num_classes)["macro_f1"]


def smote_fill(train, seed: int):
    from setforge import StepContext
    from setforge.dataset import Origin
    from setforge.plugins.resample.imblearn_over import SMOTE

    out = SMOTE({}).resample(train, StepContext.from_seed(seed))
    return out[out.origin != int(Origin.REAL)]


def fit_and_sample(name: str, params: dict[str, Any], train, val, counts: list[int], seed: int, cache,
                   device: str = "cpu"):
    """Fit `name` on `train` (val drives the monitor), sample the `counts` fill; rows come back on the CPU."""
    from setforge import StepContext
    from setforge.registry import Registry

    cls = Registry(use_env=False).load().get("generate", name).cls
    cuda = device == "cuda"
    if cuda:
        train, val = train.to(device), val.to(device)
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    generator = cls(params)
    ctx = StepContext.from_seed(seed, device=device, val=val, cache=cache)  # the run's cache: the monitor's network
    generator.fit(train, ctx)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(device)
    generated = generator.sample(labels, StepContext.from_seed(seed + 1000, device=device))
    if cuda:
        torch.cuda.synchronize()
    timing = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    result = getattr(generator, "result", None)
    if result is not None:
        timing["steps"] = result.iterations
        if result.ada_p is not None:  # ADA's augmentation probability when training ended
            timing["ada_p"] = result.ada_p
    extra = {"selection": getattr(result, "selection", None), "budget": getattr(result, "budget", None)}
    return generated.to("cpu"), timing, extra


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--part", type=Path, default=None, help="write this process's raw rows here (no table)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, help="join --part files into the table")
    parser.add_argument("--datasets", default="digits,longtail")
    parser.add_argument("--generators", default="dcgan,wgan-gp,gaussian-mixture,stylegan2")
    parser.add_argument("--variants", default="plain,diffaugment,ada")
    parser.add_argument("--set", action="append", default=[], metavar="GEN.KEY=JSON",
                        help="override a generator param, e.g. dcgan.steps=3000")
    parser.add_argument("--cpu-minutes", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--gpu", choices=("auto", "off"), default="auto",
                        help=f"auto: with CUDA present, also train {', '.join(GPU_GENERATORS)} on the GPU "
                             f"({' vs '.join(GPU_PRECISIONS)}); skipped without CUDA")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        gen, _, param = key.partition(".")
        overrides.setdefault(gen, {})[param] = json.loads(value)

    datasets = args.datasets.split(",")
    generators = args.generators.split(",")
    variants = args.variants.split(",")
    params_used = {n: {**GENERATOR_PARAMS[n], **overrides.get(n, {})} for n in generators}
    raw: list[dict[str, Any]] = []  # one entry per (dataset, seed, config)
    started = time.perf_counter(), time.process_time()
    if args.combine:
        parts = [json.loads(path.read_text()) for path in args.combine]
        raw = [row for part in parts for row in part["rows"]]
        params_used = {name: params for part in parts for name, params in part["params"].items()}
        return finish(args, raw, params_used, variants, started, sum(p["total_cpu_s"] for p in parts))

    def record(dataset: str, seed: int, config: str, values: dict[str, Any]) -> None:
        raw.append({"dataset": dataset, "seed": seed, "config": config, **values})
        out = args.part or args.json
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": raw, "params": params_used, "variants": VARIANTS,
                                   "total_cpu_s": time.process_time() - started[1]}, indent=1))

    for dataset in datasets:
        for seed in (int(s) for s in args.seeds.split(",")):
            train, val, test = splits(dataset, seed)
            counts = fill_counts(dataset, train)
            model = judge(train, val, seed)
            from setforge.context import Cache
            from setforge.plugins.generate._gan_selection import feature_network
            from setforge.rng import Rng

            cache, cpu = Cache(), time.process_time()  # the monitor's feature network: once per run, as a run does
            if any(name in NEURAL for name in generators):
                feature_network(train, val, Rng(seed, ("gan-monitor-features",)).sk_seed(), torch.device("cpu"), cache)
            monitor_cpu = time.process_time() - cpu
            real_q = quality(model, train, test)
            record(dataset, seed, "real", {"fd_test": real_q["fd_test"], "coverage": real_q["coverage"],
                                     "macro_f1": downstream(train, None, val, test, seed),
                                     "judge_test_accuracy": float((model.predict(test.x) == test.y).double().mean()),
                                     "monitor_network_cpu_s": monitor_cpu})
            if dataset == "longtail":
                fill = smote_fill(train, seed)
                record(dataset, seed, "smote", {**quality(model, fill, test),
                                          "macro_f1": downstream(train, fill, val, test, seed)})
            runs = [(name, variant, "cpu", f"{name}/{variant}", {})
                    for name in generators for variant in (variants if name in NEURAL else ["plain"])
                    if name not in NEURAL or name in VARIANT_GENERATORS[variant]]
            if args.gpu == "auto" and torch.cuda.is_available():  # issue 19's GPU figures; none without CUDA
                runs += [(name, "plain", "cuda", f"{name}/plain@{tag}", extra)
                         for name in generators if name in GPU_GENERATORS and "plain" in variants
                         for tag, extra in GPU_PRECISIONS.items()]
            for name, variant, device, config, extra in runs:
                params = {**GENERATOR_PARAMS[name], **overrides.get(name, {}),
                          **(VARIANTS[variant] if name in NEURAL else {}), **extra}
                generated, timing, notes = fit_and_sample(name, params, train, val, counts, seed, cache, device)
                values = {**quality(model, generated, test), **timing,
                          "macro_f1": downstream(train, generated, val, test, seed)}
                print(f"{dataset} seed {seed} {config}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()),
                      flush=True)
                if notes["selection"] is not None:
                    values["chosen_iteration"] = notes["selection"]["chosen_iteration"]
                    values["selection"] = {k: notes["selection"][k] for k in ("curve", "warnings")}
                if notes["budget"]:
                    values["selection"] = {**values.get("selection", {}), "budget": notes["budget"]["rule"]}
                record(dataset, seed, config, values)
    if args.part:
        print(f"wrote {args.part}")
        return 0
    return finish(args, raw, params_used, variants, started, time.process_time() - started[1])


def finish(args: argparse.Namespace, raw: list[dict[str, Any]], params_used: dict[str, Any], variants: list[str],
           started: tuple[float, float], cpu_s: float) -> int:
    """The table (mean ± std over seeds), the targets, the JSON and the printout."""
    rows: dict[str, dict[str, dict[str, list[float]]]] = {}
    notes: dict[str, Any] = {}
    unique = {(row["dataset"], row["seed"], row["config"]): row for row in raw}  # a later part's row wins
    raw = list(unique.values())
    seeds = sorted({row["seed"] for row in raw})
    for row in sorted(raw, key=lambda r: (r["dataset"], r["config"], r["seed"])):
        bucket = rows.setdefault(row["dataset"], {}).setdefault(row["config"], {})
        for k, v in row.items():
            if k == "selection":
                notes.setdefault(row["dataset"], {}).setdefault(row["config"], []).append(
                    {"seed": row["seed"], "chosen_iteration": row.get("chosen_iteration"), **v})
            elif k not in ("dataset", "seed", "config"):
                bucket.setdefault(k, []).append(float(v))
    table = {dataset: {config: {k: summarise(v) for k, v in metrics.items()} for config, metrics in by.items()}
             for dataset, by in rows.items()}
    failures, missing = [], []
    digits = table.get("digits", {})
    for name in NEURAL:  # the targets are each generator's defaults; other variants are comparisons
        for variant in VARIANT_GENERATORS:
            if name in VARIANT_GENERATORS[variant] and variant in variants and f"{name}/{variant}" not in digits:
                missing.append(f"digits {name}/{variant}")
        entry = digits.get(f"{name}/{DEFAULT_VARIANT[name]}")
        if entry is None:
            failures.append(f"digits {name} with its defaults ({name}/{DEFAULT_VARIANT[name]}): not measured")
            continue
        label = f"digits {name}/{DEFAULT_VARIANT[name]}"
        cas, cpu = entry["cas"]["mean"], max(entry["cpu_s"]["values"])
        minutes = max(args.cpu_minutes, CPU_MINUTES.get(name, 0.0))
        if cas < 0.95 or cpu > 60 * minutes:
            failures.append(f"{label}: CAS {cas:.3f} (target >= 0.95) in at most {cpu / 60:.2f} CPU minutes "
                            f"(target <= {minutes:g})")
        gmm = digits.get("gaussian-mixture/plain")
        if gmm is not None and entry["fd_test"]["mean"] >= gmm["fd_test"]["mean"]:
            failures.append(f"{label}: fd_test {entry['fd_test']['mean']:.3f} is not below "
                            f"gaussian-mixture's {gmm['fd_test']['mean']:.3f}")
    result = {
        "benchmark": "generate/quality", "seeds": seeds, "threads": torch.get_num_threads(),
        "params": params_used, "variants": VARIANTS, "table": table, "selection": notes,
        "total_wall_s": time.perf_counter() - started[0], "total_cpu_s": cpu_s,
        "targets_missed": failures, "not_measured": missing, "ok": not failures,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    shown = ("cas", "fd_test", "precision", "recall", "coverage", "macro_f1", "steps", "cpu_s", "wall_s")
    for dataset, by in table.items():
        print(f"\n{dataset} (mean ± std over seeds {seeds})")
        print(f"  {'config':30s}" + "".join(f"{k:>16s}" for k in shown))
        for config, metrics in by.items():
            cells = "".join(f"{metrics[k]['mean']:9.3f}±{metrics[k]['std']:<6.3f}" if k in metrics else f"{'':>16s}"
                            for k in shown)
            print(f"  {config:30s}{cells}")
    if missing:
        print("not measured (comparison rows, no target): " + ", ".join(missing))
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
