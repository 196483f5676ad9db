"""Tabular generators side by side: setforge's ``tabular-gan`` vs the ``ctgan`` package (same epochs)
vs ``gaussian-mixture`` vs SMOTE-NC, on breast cancer, wine and a mixed categorical/numeric CSV.

    python benchmarks/tabular_quality.py                    # 300 epochs (CTGAN's default), seeds 0 1 2
    python benchmarks/tabular_quality.py --epochs 100 --seeds 0 --datasets wine
    pip install -e ".[bench]"                               # the ctgan peer

Per dataset and seed: a stratified 70/30 split of the real rows; every method learns the training
split and makes as many synthetic rows per class as it has real ones:

- ``tabular-gan``: setforge's generator, class-conditional, default params (``pac: auto``: 10
  when a batch holds 50 packs of 10, else 1; the pac used is in each seed's row) but ``epochs``;
  ``tabular-gan-pac10`` the same with CTGAN's ``pac: 10`` forced;
- ``ctgan``: ``ctgan.CTGAN(epochs=...)`` with the label as one more discrete column (how the
  package is used for labelled tables), ``sample(len(train))``, the label read off each row;
- ``gaussian-mixture``: setforge's per-class mixture baseline, when installed (branch gen2);
- ``smote-nc``: imbalanced-learn's SMOTE-NC (SMOTE where no column is categorical), the new rows
  only.

Scores, all on synthetic rows only: TSTR macro-F1 (scikit-learn's HistGradientBoostingClassifier,
native categorical columns, 100 iterations, seeded, trained on the synthetic rows and scored on the
real test split; ``trtr`` is the same model trained on the real training rows), the mean per-column
distance to the real training rows (Kolmogorov-Smirnov statistic for numeric columns, total
variation for categorical ones), the mean absolute difference of the numeric columns' pairwise
Pearson correlations, and fit time (``time.process_time`` of the fit, encoders included; sampling
excluded; torch's one-off import of its compiler, which the first optimiser triggers,
happens before any timed fit). Means over the seeds. Every method runs on one torch thread
(``torch.set_num_threads(1)``), in turn for each seed, so that load on a shared machine hits them
alike; CPU seconds, not wall time, are compared.

Targets, per dataset: tabular-gan's (default params) TSTR macro-F1 at least ctgan's minus 0.02, and its fit CPU time
at most ctgan's. Results go to ``benchmarks/results/tabular_quality.json``; the exit status is 1
when a target is missed (2 when the ctgan package is not installed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "tabular_quality.json"
TSTR_MARGIN = 0.02


# ------------------------------------------------------------------------------ data
def write_mixed_csv(path: Path, n: int = 1000, seed: int = 12345) -> Path:
    """Customers: integer, skewed and bimodal numeric columns, three categorical ones, a churn label
    that depends on several of them."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], size=n, p=[0.6, 0.3, 0.1])
    region = rng.choice(["north", "south", "east", "west", "central"], size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    device = rng.choice(["mobile", "desktop"], size=n, p=[0.7, 0.3])
    age = np.clip(np.round(rng.normal(42, 12, n)), 18, 85).astype(int)
    tenure = np.clip(np.round(rng.exponential(24, n)), 0, 120).astype(int)
    bimodal = rng.random(n) < np.where(plan == "pro", 0.8, 0.3)
    spend = np.round(np.where(bimodal, rng.normal(120, 15, n), rng.gamma(2.0, 15.0, n)), 2)
    logit = (-1.0 + 0.9 * (plan == "basic") - 0.04 * tenure + 0.015 * (spend - 60) + 0.6 * (device == "mobile")
             - 0.5 * (region == "central") + 0.02 * (age - 42))
    churn = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["age", "tenure", "spend", "plan", "region", "device", "label"])
        for row in zip(age, tenure, spend, plan, region, device, np.where(churn, "churn", "stay")):
            writer.writerow(row)
    return path


def load_datasets(names: list[str], folder: Path):
    from setforge import StepContext, create

    out = {}
    ctx = StepContext.from_seed(0)
    for name in names:
        if name == "mixed-csv":
            path = write_mixed_csv(folder / "customers.csv")
            out[name] = create("source", "csv", {"path": str(path)}).load(ctx)
        else:
            out[name] = create("source", f"sklearn-{name}").load(ctx)
    return out


def split(ds, seed: int):
    from sklearn.model_selection import train_test_split

    index = np.arange(len(ds))
    train, test = train_test_split(index, test_size=0.3, stratify=ds.y.numpy(), random_state=seed)
    return ds[torch.as_tensor(np.sort(train))].replace(row_id=None), ds[torch.as_tensor(np.sort(test))]


def categorical_mask(ds) -> np.ndarray:
    features = ds.features
    return np.array([name in features.categorical for name in features.names], dtype=bool)


# --------------------------------------------------------------------------- methods
def fit_setforge(name: str, train, seed: int, params: dict):
    from setforge import StepContext, create

    generator = create("generate", name, params)
    ctx = StepContext.from_seed(seed, workdir=Path(tempfile.mkdtemp(prefix=f"bench-{name}-")))
    start = time.process_time()
    generator.fit(train, ctx)
    seconds = time.process_time() - start
    out = generator.sample(train.y, ctx)
    fit_setforge.pac = (getattr(generator, "training_report", None) or {}).get("pac")
    return out.x.numpy().astype(np.float64), out.y.numpy(), seconds


def fit_ctgan(train, seed: int, epochs: int):
    import pandas as pd
    from ctgan import CTGAN

    features = train.features
    x = train.x.numpy().astype(np.float64)
    frame = {}
    for i, name in enumerate(features.names):
        if name in features.categorical:
            frame[name] = np.asarray(features.categorical[name], dtype=object)[x[:, i].astype(int)]
        else:
            frame[name] = x[:, i]
    frame["__label__"] = np.asarray(train.classes, dtype=object)[train.y.numpy()]
    table = pd.DataFrame(frame)
    discrete = [*features.categorical, "__label__"]
    torch.manual_seed(seed)  # ctgan draws from the global RNGs
    np.random.seed(seed)
    model = CTGAN(epochs=epochs, enable_gpu=False)
    start = time.process_time()
    model.fit(table, discrete)
    seconds = time.process_time() - start
    sampled = model.sample(len(train))
    out = np.zeros((len(sampled), len(features.names)))
    for i, name in enumerate(features.names):
        if name in features.categorical:
            codes = {c: k for k, c in enumerate(features.categorical[name])}
            out[:, i] = sampled[name].map(codes).to_numpy(dtype=np.float64)
        else:
            out[:, i] = sampled[name].to_numpy(dtype=np.float64)
    labels = {c: k for k, c in enumerate(train.classes)}
    return out, sampled["__label__"].map(labels).to_numpy(dtype=np.int64), seconds


def fit_smote(train, seed: int):
    from imblearn.over_sampling import SMOTE, SMOTENC

    x, y = train.x.numpy().astype(np.float64), train.y.numpy()
    mask = categorical_mask(train)
    counts = np.bincount(y)
    target = {int(c): int(2 * counts[c]) for c in np.flatnonzero(counts)}
    k = max(1, min(5, int(counts[counts > 0].min()) - 1))
    sampler = (SMOTENC(categorical_features=np.flatnonzero(mask).tolist(), sampling_strategy=target, k_neighbors=k,
                       random_state=seed) if mask.any()
               else SMOTE(sampling_strategy=target, k_neighbors=k, random_state=seed))
    start = time.process_time()
    xs, ys = sampler.fit_resample(x, y)
    seconds = time.process_time() - start
    return xs[len(x):], ys[len(x):], seconds


# --------------------------------------------------------------------------- scores
def tstr(x_train, y_train, test, mask: np.ndarray, seed: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score

    y_test = test.y.numpy()
    if len(set(y_train.tolist())) < 2:
        predictions = np.full(len(y_test), y_train[0] if len(y_train) else 0)
    else:
        model = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=seed,
                                               categorical_features=mask if mask.any() else None)
        predictions = model.fit(x_train, y_train).predict(test.x.numpy().astype(np.float64))
    return float(f1_score(y_test, predictions, average="macro", labels=sorted(set(y_test.tolist()))))


def column_distance(synthetic: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    distances = []
    for i in range(real.shape[1]):
        if mask[i]:
            k = int(max(real[:, i].max(), synthetic[:, i].max())) + 1
            p = np.bincount(real[:, i].astype(int), minlength=k) / len(real)
            q = np.bincount(synthetic[:, i].astype(int), minlength=k) / len(synthetic)
            distances.append(0.5 * np.abs(p - q).sum())
        else:
            distances.append(ks_2samp(synthetic[:, i], real[:, i]).statistic)
    return float(np.mean(distances))


def correlation_difference(synthetic: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float | None:
    numeric = np.flatnonzero(~mask)
    if len(numeric) < 2:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.nan_to_num(np.corrcoef(synthetic[:, numeric], rowvar=False))
        b = np.nan_to_num(np.corrcoef(real[:, numeric], rowvar=False))
    upper = np.triu_indices(len(numeric), k=1)
    return float(np.abs(a - b)[upper].mean())


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["wine", "mixed-csv", "breast-cancer"],
                        choices=["breast-cancer", "wine", "mixed-csv"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        import ctgan
    except ImportError:
        print("the ctgan package is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    from setforge.registry import default_registry

    has_mixture = any(info.name == "gaussian-mixture" for info in default_registry().components("generate"))
    torch.set_num_threads(1)
    # torch's first optimiser imports torch._dynamo (seconds); pay it before any timed fit, so that
    # whichever method runs first is not charged for it
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    methods = ["tabular-gan", "tabular-gan-pac10", "ctgan"] + (["gaussian-mixture"] if has_mixture else []) + ["smote-nc"]
    results: dict = {"conditions": {
        "epochs": args.epochs, "seeds": args.seeds, "torch_threads": 1, "ctgan": ctgan.__version__,
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(), "downstream": "HistGradientBoostingClassifier(max_iter=100)",
        "gaussian_mixture": "installed" if has_mixture else "not installed (branch gen2), skipped"},
        "datasets": {}}
    with tempfile.TemporaryDirectory() as folder:
        datasets = load_datasets(args.datasets, Path(folder))
    for name, ds in datasets.items():
        per_seed = {m: [] for m in methods}
        trtr = []
        for seed in args.seeds:
            train, test = split(ds, seed)
            mask = categorical_mask(train)
            real = train.x.numpy().astype(np.float64)
            trtr.append(tstr(real, train.y.numpy(), test, mask, seed))
            for method in methods:
                if method == "tabular-gan":
                    x, y, seconds = fit_setforge("tabular-gan", train, seed, {"epochs": args.epochs})
                elif method == "tabular-gan-pac10":
                    x, y, seconds = fit_setforge("tabular-gan", train, seed, {"epochs": args.epochs, "pac": 10})
                elif method == "gaussian-mixture":
                    x, y, seconds = fit_setforge("gaussian-mixture", train, seed, {})
                elif method == "ctgan":
                    x, y, seconds = fit_ctgan(train, seed, args.epochs)
                else:
                    x, y, seconds = fit_smote(train, seed)
                row = {"seed": seed, "tstr_macro_f1": tstr(x, y, test, mask, seed),
                       "column_distance": column_distance(x, real, mask),
                       "correlation_difference": correlation_difference(x, real, mask), "fit_cpu_s": seconds,
                       "rows": int(len(x))}
                if method.startswith("tabular-gan"):
                    row["pac"] = fit_setforge.pac
                per_seed[method].append(row)
                print(f"{name:14s} seed {seed} {method:17s} tstr {row['tstr_macro_f1']:.3f} "
                      f"dist {row['column_distance']:.3f} fit {seconds:7.1f} s cpu", flush=True)
        summary = {"rows": len(ds), "columns": int(ds.x.shape[1]), "categorical": int(categorical_mask(ds).sum()),
                   "trtr_macro_f1": float(np.mean(trtr)), "methods": {}}
        for method, rows in per_seed.items():
            mean = {}
            for key in ("tstr_macro_f1", "column_distance", "correlation_difference", "fit_cpu_s"):
                values = [r[key] for r in rows if r[key] is not None]
                mean[key] = float(np.mean(values)) if values else None
                if key == "tstr_macro_f1":
                    mean["tstr_macro_f1_std"] = float(np.std(values))
            summary["methods"][method] = {"mean": mean, "per_seed": rows}
        ours, peer = summary["methods"]["tabular-gan"]["mean"], summary["methods"]["ctgan"]["mean"]
        summary["targets"] = {
            "tstr_within_0.02_of_ctgan": ours["tstr_macro_f1"] >= peer["tstr_macro_f1"] - TSTR_MARGIN,
            "fit_cpu_at_most_ctgan": ours["fit_cpu_s"] <= peer["fit_cpu_s"],
            "fit_cpu_ratio_ctgan_over_ours": peer["fit_cpu_s"] / ours["fit_cpu_s"]}
        results["datasets"][name] = summary
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # after each dataset: a partial run keeps what it has
    results["conditions"]["load_average_end"] = os.getloadavg()

    print(f"\nmeans over seeds {args.seeds}, {args.epochs} epochs, one torch thread each")
    print(f"{'dataset':14s} {'method':17s} {'TSTR F1':>8s} {'+-':>6s} {'col dist':>8s} {'corr diff':>9s} {'fit cpu s':>9s}")
    for name, summary in results["datasets"].items():
        print(f"{name:14s} {'(train real)':17s} {summary['trtr_macro_f1']:8.3f}")
        for method, entry in summary["methods"].items():
            m = entry["mean"]
            corr = "-" if m["correlation_difference"] is None else f"{m['correlation_difference']:.3f}"
            print(f"{'':14s} {method:17s} {m['tstr_macro_f1']:8.3f} {m['tstr_macro_f1_std']:6.3f} "
                  f"{m['column_distance']:8.3f} {corr:>9s} {m['fit_cpu_s']:9.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    missed = [f"{name}: {target}" for name, summary in results["datasets"].items()
              for target, ok in summary["targets"].items() if ok is False]
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    print(f"results: {args.out}")
    return 1 if missed else 0

if __name__ == "__main__":
    sys.exit(main())
