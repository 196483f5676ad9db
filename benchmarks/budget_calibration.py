"""How many generator steps a GAN needs: CAS of the live generator every ``--every`` steps on one
torch thread, with the CPU seconds (``time.process_time``) spent training so far.

    python benchmarks/budget_calibration.py --data shapes --generator dcgan --set width=32 --steps 3000

``--data``: ``shapes`` (benchmarks/_shapes.py: 32x32 RGB, 5 classes, 50:1) or ``digits``
(scikit-learn's 8x8 digits, long-tailed 10:1 by the ``sklearn-digits`` source). CAS here: share of
100 generated rows per class that a CNN trained on the real training rows (early-stopped on the
real val rows) assigns to their class, averaged over classes; the generator's live weights in eval
mode (the step's EMA weights, which the default budget's runs sample from, are usually better).
Prints one JSON line per measurement and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _data(name: str):
    from setforge.dataset import Dataset

    if name == "shapes":
        from _shapes import make_shapes

        a = make_shapes(0)
        part = {s: a["split"] == s for s in ("train", "val", "test")}
        make = lambda m: Dataset(x=torch.from_numpy(a["x"][m]), y=torch.from_numpy(a["y"][m]).long(),  # noqa: E731
                                 classes=tuple(a["classes"].tolist()), modality="image")
        return make(part["train"]), make(part["val"])
    from setforge import StepContext
    from setforge.plugins.source.sklearn import DigitsSource

    splits = DigitsSource({"imbalance": 10}).load(StepContext.from_seed(0))
    return splits.train, splits.test  # the source's balanced test part stands in for val here


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shapes", choices=["shapes", "digits"])
    parser.add_argument("--generator", default="dcgan")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--set", action="append", default=[], help="generator param KEY=VALUE (JSON value)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from setforge import StepContext
    from setforge.plugins.evaluate._classifiers import train_classifier
    from setforge.plugins.generate import _gan_training

    train, val = _data(args.data)
    classifier = train_classifier("cnn", train, val, 0)
    params = {"steps": args.steps, "grid_every": 0, "monitor": False, "checkpoint_every": 10**9}
    for item in args.set:
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    from setforge.plugins.generate.dcgan import DCGAN
    from setforge.plugins.generate.wgan_gp import WGANGP
    from setforge.plugins.generate.stylegan2 import StyleGAN2
    cls = {"dcgan": DCGAN, "wgan-gp": WGANGP, "stylegan2": StyleGAN2}[args.generator]
    holder, rows, spent = {}, [], {"cpu": 0.0}
    original = _gan_training.GanTrainer.__init__

    def keep(self, *a, **k):
        original(self, *a, **k)
        holder["trainer"] = self

    _gan_training.GanTrainer.__init__ = keep
    labels = torch.arange(len(train.classes)).repeat_interleave(100)
    started = time.process_time()

    def emit(event):
        if event.kind != "train_progress" or event.data["iteration"] % args.every:
            return
        cpu = time.process_time() - started - spent["cpu"]
        measuring = time.process_time()
        net = holder["trainer"].generator
        net.eval()
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            z = torch.randn(len(labels), holder["trainer"].latent_dim, generator=g)
            x = holder["trainer"].decode(net(z, labels).float())
        net.train()
        pred = classifier.predict(x)
        cas = float(np.mean([(pred[labels == c] == c).float().mean().item() for c in range(len(train.classes))]))
        row = {"data": args.data, "generator": args.generator, "params": params, "iteration": event.data["iteration"],
               "cas": round(cas, 4), "train_cpu_s": round(cpu, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        spent["cpu"] += time.process_time() - measuring
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")

    cls(params).fit(train, StepContext.from_seed(0, workdir=Path("/tmp") / f"calibration-{args.data}-{args.generator}",
                                                  emit=emit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
