"""Images per second of per-row random augmentation: setforge versus the peers, side by side.

The chain (every row draws its own parameters): horizontal flip (p=0.5), affine (degrees 15,
translate 0.1, scale 0.9-1.1, bilinear, zero fill), colour (brightness, contrast, saturation 0.4;
hue 0), on float32 batches of 512 x 3x32x32 and 64 x 3x224x224:

- setforge: ``Chain([Flip, Affine, Color])`` on the whole batch (flip and affine fuse into one
  resampling);
- torchvision: ``transforms.v2`` Compose of RandomHorizontalFlip, RandomAffine (bilinear) and
  ColorJitter, called per row in a Python loop (v2 draws one parameter set per call, so per-row
  randomness needs the loop);
- kornia: ``kornia.augmentation`` AugmentationSequential of the same three, batched with per-row
  parameters (``same_on_batch=False``);
- albumentations: Compose of HorizontalFlip, Affine and ColorJitter per row **on uint8 HWC
  arrays** (its native type; the conversion from float32 is done before timing and not counted).

Then one row per pixel op: setforge's op (p=1, its default per-row ranges) on the whole batch
versus the matching torchvision v2 transform called per row (p=1; where torchvision's transform
has a fixed parameter — sharpness, posterize, solarize, noise sigma — it keeps it fixed, which
can only favour it).

Then the policies (auto-augment, rand-augment, trivial-augment, aug-mix; every row its own draw,
float32) at 512 x 3x32x32 against torchvision's AutoAugment, RandAugment, TrivialAugmentWide and
AugMix called per row on uint8 (their native type, conversion not counted), and the cost of grad
mode: the 224x224 chain with autograd on (a training loop) over the same chain under ``no_grad``,
for inputs that do not require grad.

Contenders run interleaved, ``--repeats`` rounds; each round times every contender once, back to
back, and a ratio is the median of the rounds' ratios, so all see the same machine load; the load
average is recorded. A peer that is not installed (kornia and
albumentations come with the ``bench`` extra) is skipped with a note. With ``--device cuda`` the
chain runs setforge and kornia on the GPU (synchronised) and reports their ratio.

Targets on a 2-core CPU: 32x32 >= 10x the torchvision loop and >= 1.5x kornia; 224x224 >= 2x
kornia, >= 1.2x the torchvision loop and >= 1.0x albumentations on uint8; every policy >= 3x
torchvision's per-row loop; equalize and autocontrast >= 3x the loop; grad mode costs < 10%.
The script writes ``benchmarks/results/augment.json`` and exits 1 when a target is missed.

    python benchmarks/augment.py [--repeats 3] [--threads N] [--device cpu] [--no-pixel] [--json]

``--only-224-chain`` times the 64 x 3x224x224 chain row alone (more rounds in less time; nothing
is written to the results file).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

SIZES = [(512, 32), (64, 224)]
TARGETS = {32: {"torchvision-loop": 10.0, "kornia": 1.5},
           224: {"kornia": 2.0, "torchvision-loop": 1.2, "albumentations-uint8": 1.0}}
PIXEL_TARGETS = {"equalize": 3.0, "autocontrast": 3.0}
POLICY_TARGET = 3.0
GRAD_MODE_TARGET = 1.10
GRAD_MODE_ROUNDS = 9
#: ``$SETFORGE_BENCH_RESULTS`` (set by ``run_all.py --quick``) keeps quick figures out of the full results.
RESULTS = os.path.join(os.environ.get("SETFORGE_BENCH_RESULTS") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                                "results"), "augment.json")


def _optional(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setforge_chain() -> Any:
    from setforge.chain import Chain
    from setforge.plugins.augment.color import Color
    from setforge.plugins.augment.geometric import Affine, Flip

    return Chain([Flip({"p": 0.5}), Affine({"degrees": 15, "translate": 0.1, "scale": (0.9, 1.1)}),
                  Color({"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.0})])


def chain_contenders(x: torch.Tensor, device: torch.device, notes: list[str]) -> dict[str, Callable[[], Any]]:
    """Name -> a function that augments the batch once."""
    chain = setforge_chain()
    generator = torch.Generator(device=device).manual_seed(0)
    contenders: dict[str, Callable[[], Any]] = {"setforge": lambda: chain(x, generator=generator)}
    if device.type == "cpu":
        import torchvision.transforms.v2 as T

        tv = T.Compose([T.RandomHorizontalFlip(0.5),
                        T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                       interpolation=T.InterpolationMode.BILINEAR),
                        T.ColorJitter(0.4, 0.4, 0.4)])
        contenders["torchvision-loop"] = lambda: torch.stack([tv(row) for row in x])
    kornia = _optional("kornia.augmentation")
    if kornia is None:
        notes.append("kornia is not installed (pip install setforge[bench]): skipped")
    else:
        ka = kornia.AugmentationSequential(
            kornia.RandomHorizontalFlip(p=0.5),
            kornia.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), p=1.0),
            kornia.ColorJitter(0.4, 0.4, 0.4, 0.0, p=1.0)).to(device)
        contenders["kornia"] = lambda: ka(x)
    if device.type == "cpu":
        albumentations = _optional("albumentations")
        if albumentations is None:
            notes.append("albumentations is not installed (pip install setforge[bench]): skipped")
        else:
            A = albumentations
            al = A.Compose([A.HorizontalFlip(p=0.5),
                            A.Affine(rotate=(-15, 15), translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), p=1.0),
                            A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0)])
            rows = [np.ascontiguousarray((row.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)) for row in x]
            contenders["albumentations-uint8"] = lambda: [al(image=row)["image"] for row in rows]
    return contenders


def pixel_contenders(x: torch.Tensor) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(op, setforge batch call, torchvision per-row loop) for every pixel op."""
    import torchvision.transforms.v2 as T

    from setforge.plugins.augment import pixel

    generator = torch.Generator().manual_seed(0)
    pairs = [
        (pixel.Grayscale({"p": 1.0}), T.RandomGrayscale(p=1.0)),
        (pixel.GaussianBlur({"kernel_size": 5, "sigma": (0.1, 2.0)}), T.GaussianBlur(5, sigma=(0.1, 2.0))),
        (pixel.GaussianNoise({"sigma": (0.01, 0.1)}), T.GaussianNoise(sigma=0.1)),
        (pixel.Erasing(), T.RandomErasing(p=1.0)),
        (pixel.Sharpness({"factor": (0.5, 1.5)}), T.RandomAdjustSharpness(1.5, p=1.0)),
        (pixel.Posterize({"bits": (4, 8)}), T.RandomPosterize(4, p=1.0)),
        (pixel.Solarize({"threshold": (0.5, 1.0)}), T.RandomSolarize(0.75, p=1.0)),
        (pixel.Equalize({"p": 1.0}), T.RandomEqualize(p=1.0)),
        (pixel.Autocontrast({"p": 1.0}), T.RandomAutocontrast(p=1.0)),
        (pixel.Invert({"p": 1.0}), T.RandomInvert(p=1.0)),
    ]
    return [(op.name, (lambda op=op: op(x, generator=generator)),
             (lambda tv=tv: torch.stack([tv(row) for row in x]))) for op, tv in pairs]


def policy_contenders(x: torch.Tensor) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(policy, setforge batch call on float32, torchvision per-row loop on uint8) for every policy."""
    import torchvision.transforms.v2 as T

    from setforge import create

    generator = torch.Generator().manual_seed(0)
    rows = list((x * 255).round().to(torch.uint8))
    pairs = [("auto-augment", T.AutoAugment()), ("rand-augment", T.RandAugment()),
             ("trivial-augment", T.TrivialAugmentWide()), ("aug-mix", T.AugMix())]
    out = []
    for name, tv in pairs:
        aug = create("augment", name)
        out.append((name, (lambda aug=aug: aug(x, generator=generator)),
                    (lambda tv=tv: torch.stack([tv(row) for row in rows]))))
    return out


def timed_rounds(contenders: dict[str, Callable[[], Any]], repeats: int, device: torch.device,
                 grad: bool = False) -> dict[str, list[float]]:
    """Wall times of each contender per round: rounds interleave the contenders, after one warm-up
    call each. Under ``no_grad`` unless `grad`."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.set_grad_enabled(grad):
        for fn in contenders.values():
            fn()
        _sync(device)
        for _ in range(repeats):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - start)
    return times


def median_ratio(times: dict[str, list[float]], peer: str, ours: str = "setforge") -> float:
    """Median over rounds of peer time / our time (> 1: setforge is faster)."""
    return float(np.median([p / o for p, o in zip(times[peer], times[ours])]))


def best_times(contenders: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Best wall time of each contender, run interleaved after one warm-up call each."""
    return {name: min(t) for name, t in timed_rounds(contenders, repeats, device).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each contender (best one counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch (and OpenCV) CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (GPU: setforge and kornia only)")
    parser.add_argument("--no-pixel", action="store_true", help="skip the per-op rows")
    parser.add_argument("--pixel-size", type=int, nargs=2, default=[512, 32], metavar=("N", "SIZE"),
                        help="batch of the per-op rows: N images of 3 x SIZE x SIZE")
    parser.add_argument("--no-policies", action="store_true", help="skip the policy rows")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--only-224-chain", action="store_true",
                        help="time only the 64 x 3x224x224 chain row (no grad-mode row; the results file is not written)")
    args = parser.parse_args(argv)
    if args.only_224_chain:
        args.no_pixel = args.no_policies = True

    if args.threads:
        torch.set_num_threads(args.threads)
        cv2 = _optional("cv2")
        if cv2 is not None:
            cv2.setNumThreads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    notes: list[str] = []
    versions = {"torch": torch.__version__}
    for name in ("torchvision", "kornia", "albumentations"):
        module = _optional(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    report: dict[str, Any] = {
        "device": str(device), "threads": torch.get_num_threads(), "repeats": args.repeats, "versions": versions,
        "load_average_start": list(os.getloadavg()), "chain": [], "pixel": [], "policies": [], "notes": notes,
    }
    for n, size in [s for s in SIZES if s[1] == 224] if args.only_224_chain else SIZES:
        x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        contenders = chain_contenders(x, device, notes)
        if size == 224 and device.type == "cpu":
            channels_last = x.contiguous(memory_format=torch.channels_last)
            chain = setforge_chain()
            generator = torch.Generator().manual_seed(0)
            contenders["setforge-channels-last"] = lambda: chain(channels_last, generator=generator)
        rounds = timed_rounds(contenders, args.repeats, device)
        rates = {name: n / min(t) for name, t in rounds.items()}
        row: dict[str, Any] = {"batch": [n, 3, size, size], "images_per_s": rates,
                               "ratio": {name: median_ratio(rounds, name) for name in rates if name != "setforge"}}
        if device.type == "cpu":
            row["targets"] = {peer: {"ratio_at_least": goal, "met": row["ratio"].get(peer, 0.0) >= goal}
                              for peer, goal in TARGETS[size].items() if peer in row["ratio"]}
        report["chain"].append(row)
    if not args.no_pixel and device.type == "cpu":
        n, size = args.pixel_size
        x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
        for name, ours, theirs in pixel_contenders(x):
            rounds = timed_rounds({"setforge": ours, "torchvision-loop": theirs}, args.repeats, device)
            row = {"op": name, "batch": [n, 3, size, size],
                   "images_per_s": {k: n / min(t) for k, t in rounds.items()},
                   "ratio": median_ratio(rounds, "torchvision-loop")}
            if name in PIXEL_TARGETS:
                row["target"] = {"ratio_at_least": PIXEL_TARGETS[name], "met": row["ratio"] >= PIXEL_TARGETS[name]}
            report["pixel"].append(row)
    if not args.no_policies and device.type == "cpu":
        x = torch.rand(512, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        for name, ours, theirs in policy_contenders(x):
            rounds = timed_rounds({"setforge": ours, "torchvision-loop-uint8": theirs}, args.repeats, device)
            ratio = median_ratio(rounds, "torchvision-loop-uint8")
            report["policies"].append({"policy": name, "batch": [512, 3, 32, 32],
                                       "images_per_s": {k: 512 / min(t) for k, t in rounds.items()}, "ratio": ratio,
                                       "target": {"ratio_at_least": POLICY_TARGET, "met": ratio >= POLICY_TARGET}})
    if not args.only_224_chain:
        report["grad_mode"] = grad_mode_row(args.repeats, device)
    report["load_average_end"] = list(os.getloadavg())
    notes = list(dict.fromkeys(notes))
    report["notes"] = notes + ["albumentations runs on uint8 HWC arrays (its native type), the others on float32",
                               "timings on a shared machine: compare ratios within one run, not across runs",
                               "ratios: median over rounds of the interleaved per-round ratio"]

    missed = [f"chain {row['batch'][2]}x{row['batch'][3]} vs {peer}" for row in report["chain"]
              for peer, goal in row.get("targets", {}).items() if not goal["met"]]
    missed += [f"{row['op']} vs torchvision-loop" for row in report["pixel"] if not row.get("target", {}).get("met", True)]
    missed += [f"{row['policy']} vs torchvision-loop-uint8" for row in report["policies"] if not row["target"]["met"]]
    missed += ["grad mode"] if not report.get("grad_mode", {}).get("target", {}).get("met", True) else []
    report["targets_missed"] = missed
    if not args.only_224_chain:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if missed else 0
    print_report(report, args.repeats, None if args.only_224_chain else RESULTS)
    return 1 if missed else 0


def grad_mode_row(repeats: int, device: torch.device) -> dict[str, Any]:
    """The 224x224 chain with grad mode on over the same chain under ``no_grad``, nothing requiring grad."""
    # grad mode on, nothing requires grad: what a training loop that augments inside autograd pays
    x = torch.rand(64, 3, 224, 224, generator=torch.Generator().manual_seed(3)).to(device)
    chain, generator = setforge_chain(), torch.Generator(device=device).manual_seed(0)
    costs = []
    # at least GRAD_MODE_ROUNDS rounds, the order alternating, so that neither mode always runs
    # second (one round's ratio swings 0.4-1.4x on a loaded machine; the median settles)
    for grad in (True, False):
        timed_rounds({"setforge": lambda: chain(x, generator=generator)}, 0, device, grad=grad)  # warm-up
    for i in range(max(repeats, GRAD_MODE_ROUNDS)):
        both = {}
        for grad in ((True, False) if i % 2 == 0 else (False, True)):
            with torch.set_grad_enabled(grad):
                start = time.perf_counter()
                chain(x, generator=generator)
                _sync(device)
                both[grad] = time.perf_counter() - start
        costs.append(both[True] / both[False])
    cost = float(np.median(costs))
    return {"batch": [64, 3, 224, 224], "time_ratio_grad_over_no_grad": cost, "rounds": len(costs),
            "target": {"ratio_below": GRAD_MODE_TARGET, "met": cost < GRAD_MODE_TARGET}}


def print_report(report: dict[str, Any], repeats: int, results: str | None) -> None:
    print(f"device {report['device']}, {report['threads']} threads, best of {repeats}, "
          f"load average {report['load_average_start'][0]:.1f} -> {report['load_average_end'][0]:.1f}")
    for row in report["chain"]:
        n, _, size, _ = row["batch"]
        print(f"\nchain flip+affine+color, {n} x 3x{size}x{size}")
        for name, rate in sorted(row["images_per_s"].items(), key=lambda item: -item[1]):
            ratio = "" if name == "setforge" else f"   setforge is {row['ratio'][name]:.2f}x"
            goal = row.get("targets", {}).get(name)
            verdict = "" if goal is None else f" (target {goal['ratio_at_least']}x: {'met' if goal['met'] else 'NOT met'})"
            print(f"  {name:22s} {rate:10.0f} img/s{ratio}{verdict}")
    if report["pixel"]:
        n, _, size, _ = report["pixel"][0]["batch"]
        print(f"\npixel ops, {n} x 3x{size}x{size}: setforge batch vs torchvision per-row loop")
        for row in report["pixel"]:
            rates = row["images_per_s"]
            goal = row.get("target")
            verdict = "" if goal is None else f" (target {goal['ratio_at_least']}x: {'met' if goal['met'] else 'NOT met'})"
            print(f"  {row['op']:16s} {rates['setforge']:10.0f} vs {rates['torchvision-loop']:8.0f} img/s"
                  f"   {row['ratio']:6.1f}x{verdict}")
    if report["policies"]:
        print("\npolicies, 512 x 3x32x32: setforge per-row batch (float32) vs torchvision per-row loop (uint8)")
    for row in report["policies"]:
        rates = row["images_per_s"]
        verdict = "met" if row["target"]["met"] else "NOT met"
        print(f"  policy {row['policy']:16s} {rates['setforge']:8.0f} vs {rates['torchvision-loop-uint8']:8.0f} img/s"
              f"   {row['ratio']:6.1f}x (target {POLICY_TARGET}x: {verdict})")
    grad = report.get("grad_mode")
    if grad is not None:
        print(f"\ngrad mode on, nothing requires grad, 64 x 3x224x224 chain: {grad['time_ratio_grad_over_no_grad']:.3f}x "
              f"the no_grad time (target < {GRAD_MODE_TARGET}: {'met' if grad['target']['met'] else 'NOT met'})")
    for note in report["notes"]:
        print(f"note: {note}")
    if results is not None:
        print(f"results: {results}")
    if report["targets_missed"]:
        print("targets missed: " + "; ".join(report["targets_missed"]))


if __name__ == "__main__":
    sys.exit(main())
