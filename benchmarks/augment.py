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

Contenders run interleaved, ``--repeats`` times each, and the best time counts, so all see the
same machine load; the load average is recorded. A peer that is not installed (kornia and
albumentations come with the ``bench`` extra) is skipped with a note. With ``--device cuda`` the
chain runs setforge and kornia on the GPU (synchronised) and reports their ratio.

Targets on a 2-core CPU: 32x32 >= 10x the torchvision loop and >= 1.5x kornia; 224x224 >= 2x
kornia and >= 1.2x the torchvision loop.

    python benchmarks/augment.py [--repeats 3] [--threads N] [--device cpu] [--no-pixel] [--json]
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
TARGETS = {32: {"torchvision-loop": 10.0, "kornia": 1.5}, 224: {"kornia": 2.0, "torchvision-loop": 1.2}}


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


def best_times(contenders: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Best wall time of each contender, run interleaved after one warm-up call each."""
    best = {name: float("inf") for name in contenders}
    with torch.no_grad():
        for fn in contenders.values():
            fn()
        _sync(device)
        for _ in range(repeats):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                _sync(device)
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each contender (best one counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch (and OpenCV) CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (GPU: setforge and kornia only)")
    parser.add_argument("--no-pixel", action="store_true", help="skip the per-op rows")
    parser.add_argument("--pixel-size", type=int, nargs=2, default=[512, 32], metavar=("N", "SIZE"),
                        help="batch of the per-op rows: N images of 3 x SIZE x SIZE")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)

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
        "load_average_start": list(os.getloadavg()), "chain": [], "pixel": [], "notes": notes,
    }
    for n, size in SIZES:
        x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        times = best_times(chain_contenders(x, device, notes), args.repeats, device)
        rates = {name: n / t for name, t in times.items()}
        row: dict[str, Any] = {"batch": [n, 3, size, size], "images_per_s": rates,
                               "ratio": {name: rates["setforge"] / r for name, r in rates.items() if name != "setforge"}}
        if device.type == "cpu":
            row["targets"] = {peer: {"ratio_at_least": goal, "met": row["ratio"].get(peer, 0.0) >= goal}
                              for peer, goal in TARGETS[size].items() if peer in row["ratio"]}
        report["chain"].append(row)
    if not args.no_pixel and device.type == "cpu":
        n, size = args.pixel_size
        x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
        for name, ours, theirs in pixel_contenders(x):
            times = best_times({"setforge": ours, "torchvision-loop": theirs}, args.repeats, device)
            report["pixel"].append({"op": name, "batch": [n, 3, size, size],
                                    "images_per_s": {k: n / t for k, t in times.items()},
                                    "ratio": times["torchvision-loop"] / times["setforge"]})
    report["load_average_end"] = list(os.getloadavg())
    notes = list(dict.fromkeys(notes))
    report["notes"] = notes + ["albumentations runs on uint8 HWC arrays (its native type), the others on float32",
                               "timings on a shared machine: compare ratios within one run, not across runs"]

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"device {report['device']}, {report['threads']} threads, best of {args.repeats}, "
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
            print(f"  {row['op']:16s} {rates['setforge']:10.0f} vs {rates['torchvision-loop']:8.0f} img/s"
                  f"   {row['ratio']:6.1f}x")
    for note in report["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
