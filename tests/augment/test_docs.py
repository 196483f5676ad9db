"""docs/augmenters.md: its training-loop example runs, and it names every built-in augmenter."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from setforge.plugins.augment import color, geometric, pixel, policies, tabular, torchvision_op

DOC = Path(__file__).resolve().parents[2] / "docs" / "augmenters.md"


def test_training_loop_example_runs_and_learns():
    block = next(b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if "optimiser" in b)
    namespace: dict = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    model, x, y = namespace["model"], namespace["x"], namespace["y"]
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean()
    assert float(accuracy) > 0.5  # two epochs on augmented digits: far above chance (0.1)


def test_every_augmenter_is_documented():
    text = DOC.read_text()
    for module in (geometric, color, pixel, tabular, policies, torchvision_op):
        for name in module.__all__:
            if isinstance(getattr(module, name), type):
                assert f"`{getattr(module, name).name}`" in text
