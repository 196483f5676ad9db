"""Issue 26's case, small: a 32x32 RGB shapes set, long-tailed 50:1, filled up to balance by a
(briefly trained) DCGAN and measured by fid, kid, prdc and memorisation. Every minority class
gets a distance with its estimator named (the small-sample one for classes with fewer real rows
than min_rows), and the overall numbers are class-weighted."""

from __future__ import annotations

import json

import numpy as np
import yaml

from setforge.tools.cli import main

SHAPES = ("square", "disc", "triangle", "ring", "cross")
COUNTS = (400, 150, 60, 16, 8)  # 50:1


def shapes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Procedural 32x32 RGB images of five shapes, in random colours, sizes and places, on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    images, labels = [], []
    for label, count in enumerate(COUNTS):
        for _ in range(count):
            cy, cx = rng.uniform(10, 22, size=2)
            r = rng.uniform(5, 9)
            dy, dx = yy - cy, xx - cx
            mask = {
                "square": (np.abs(dy) < r * 0.8) & (np.abs(dx) < r * 0.8),
                "disc": dy ** 2 + dx ** 2 < r ** 2,
                "triangle": (dy < r * 0.7) & (dy > -r) & (np.abs(dx) < (dy + r) * 0.6),
                "ring": np.abs(np.sqrt(dy ** 2 + dx ** 2) - r * 0.8) < 1.6,
                "cross": ((np.abs(dy) < 1.8) | (np.abs(dx) < 1.8)) & (np.abs(dy) < r) & (np.abs(dx) < r),
            }[SHAPES[label]]
            colour = rng.uniform(0.5, 1.0, size=3)
            image = rng.uniform(0, 0.25, size=(3, 32, 32)).astype(np.float32)
            image[:, mask] = colour[:, None]
            images.append(image)
            labels.append(label)
    return np.stack(images).astype(np.float32), np.array(labels)


def test_every_minority_class_gets_a_distance_with_its_estimator(tmp_path):
    x, y = shapes()
    np.savez(tmp_path / "shapes.npz", x=x, y=y, classes=np.array(SHAPES))
    raw = {"feature_space": "raw"}
    config = {
        "seed": 0, "device": "cpu",
        "source": {"name": "npz", "params": {"path": "shapes.npz"}},
        "split": {"test": 0.3, "val": 0.1},
        "pipeline": [{"generate": "dcgan", "guard": "off", "target": "balance",
                      "params": {"steps": 8, "width": 8, "latent_dim": 8, "embedding_dim": 4, "batch_size": 32,
                                 "grid_every": 0}}],
        "evaluate": [{"name": "fid", "params": {"cnn_epochs": 3}},
                     {"name": "kid", "params": {**raw, "subsets": 10, "subset_size": 100, "bootstrap": 50}},
                     {"name": "prdc", "params": raw},
                     {"name": "memorisation", "params": {**raw, "figure_pairs": 0}}],
        "output": {"dir": str(tmp_path / "out")},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "run.yaml"), "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    real = report["counts"]["raw_train"]["by_class"]
    measures = report["metrics"]["measures"]
    minority = [c for c in SHAPES if real[c] < max(real.values())]
    assert real["cross"] < 10 and len(minority) == 4
    for name in minority:
        fid = measures["fid"][f"generated/by_class/{name}"]
        kid = measures["kid"][f"generated/by_class/{name}"]
        # Below min_rows real rows (50 for fid, 20 for kid) the small-sample estimator, with its interval.
        fid_small, kid_small = real[name] < 50, real[name] < 20
        assert fid["estimator"] == (f"frechet-pca{real[name] - 1}-bootstrap" if fid_small else "frechet")
        assert kid["estimator"] == ("kid-unbiased-bootstrap" if kid_small else "kid-subsets")
        for measure, small in ((fid, fid_small), (kid, kid_small)):
            assert measure["n"] == max(real.values()) - real[name]
            if small:
                low, high = measure["interval"]
                assert low <= measure["value"] <= high
        assert measures["prdc"][f"generated/by_class/{name}/coverage"]["estimator"].startswith("prdc-k")
        assert measures["memorisation"][f"generated/by_class/{name}/dcr_median"]["estimator"]
    # Overall: against real rows in the generated rows' class mix, not the mostly-'square' real rows.
    for evaluator in ("fid", "kid"):
        assert measures[evaluator]["generated/overall"]["estimator"].endswith("-class-weighted")
    assert measures["prdc"]["generated/overall/precision"]["estimator"].endswith("-class-weighted")
    assert not any(path.startswith("generated/by_class/") for ev in ("fid", "kid")
                   for path in report["metrics"]["skipped"].get(ev, {}))
    page = (tmp_path / "out" / "report.html").read_text()
    assert "estimator" in page and "frechet-pca" in page
