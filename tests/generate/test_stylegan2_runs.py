"""``generate: stylegan2`` from run files: digits with cas in the report, a 3-channel 32x32 npz, and
fine-tuning (``init_from`` + ``freeze_d``) on other classes from the generator a first run saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from setforge import Origin
from setforge.pipeline import run
from setforge.registry import Registry
from setforge.runfile import load_run_config

TINY = {"steps": 6, "width": 4, "max_width": 8, "latent_dim": 8, "w_dim": 8, "batch_size": 16, "r1_every": 2,
        "grid_every": 0}
STEP = "00-generate-stylegan2"


@pytest.fixture(scope="module")
def registry():
    return Registry(use_env=False).load()


def _run_file(tmp_path: Path, name: str, source: dict, pipeline: list[dict], evaluate: list | None = None) -> Path:
    config = {"seed": 0, "device": "cpu", "source": source, "split": {"val": 0.1}, "pipeline": pipeline,
              "evaluate": evaluate or [], "output": {"dir": str(tmp_path / name)}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(path: Path, registry):
    return run(load_run_config(path), registry, progress=False)


def test_digits_run_file_balances_the_classes_and_reports_cas(tmp_path, registry):
    path = _run_file(tmp_path, "digits", {"name": "sklearn-digits", "params": {"imbalance": 4}},
                     [{"generate": "stylegan2", "guard": "off", "params": {**TINY, "psi": 0.7}, "target": "balance"}],
                     evaluate=[{"name": "cas", "params": {"model": "mlp", "epochs": 5, "patience": 2}}])
    result = _run(path, registry)
    train = result.train
    real = train.class_counts(Origin.REAL)
    generated = train[train.origin == int(Origin.GENERATED)]
    assert generated.class_counts() == [max(real) - r for r in real]
    assert tuple(generated.x.shape[1:]) == (1, 8, 8)
    assert float(generated.x.min()) >= 0 and float(generated.x.max()) <= 1
    cas = result.report["metrics"]["measures"]["cas"]["overall"]
    assert cas["n"] == len(generated) and 0.0 <= cas["value"] <= 1.0
    assert (tmp_path / "digits" / "steps" / STEP / "generator.pt").is_file()


def test_three_channel_32x32_npz_run_file(tmp_path, registry):
    rng = np.random.default_rng(0)
    x = np.zeros((60, 3, 32, 32), dtype=np.uint8)  # class c: a bright square in channel c, at random places
    y = np.repeat(np.arange(3), 20)
    for i, (top, left) in enumerate(rng.integers(0, 24, size=(60, 2))):
        x[i, y[i], top:top + 8, left:left + 8] = 255
    np.savez(tmp_path / "squares.npz", x=x, y=y, classes=np.array(["r", "g", "b"]))
    path = _run_file(tmp_path, "squares", {"name": "npz", "params": {"path": str(tmp_path / "squares.npz")}},
                     [{"generate": "stylegan2", "guard": "off", "params": TINY, "per_class": 30}])
    result = _run(path, registry)
    generated = result.train[result.train.origin == int(Origin.GENERATED)]
    assert tuple(generated.x.shape[1:]) == (3, 32, 32)
    assert result.train.class_counts() == [30, 30, 30]
    saved = torch.load(tmp_path / "squares" / "steps" / STEP / "generator.pt", weights_only=True)
    assert saved["row_shape"] == [3, 32, 32] and len(saved["state"]["generator"]["synthesis.const"]) == 8


def _digits_npz(path: Path, classes: list[int]) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, classes)
    np.savez(path, x=(digits.images[keep] / 16.0)[:, None].astype(np.float32), y=digits.target[keep].astype(str))
    return path


def test_a_model_trained_on_one_class_set_is_fine_tuned_on_another_with_frozen_discriminator_blocks(tmp_path,
                                                                                                      registry):
    first = _run_file(tmp_path, "first", {"name": "npz", "params": {"path": str(_digits_npz(tmp_path / "a.npz",
                                                                                             [0, 1, 2, 3, 4]))}},
                      [{"generate": "stylegan2", "guard": "off", "params": TINY, "multiply": 0.2}])
    _run(first, registry)
    pretrained = tmp_path / "first" / "steps" / STEP / "generator.pt"
    second = _run_file(tmp_path, "second", {"name": "npz", "params": {"path": str(_digits_npz(tmp_path / "b.npz",
                                                                                              [5, 6, 7, 8, 9]))}},
                       [{"generate": "stylegan2", "guard": "off", "params": {**TINY, "init_from": str(pretrained), "freeze_d": 1},
                         "multiply": 0.2}])
    result = _run(second, registry)
    assert result.train.classes == ("5", "6", "7", "8", "9")
    assert int((result.train.origin == int(Origin.GENERATED)).sum()) > 0
    before = torch.load(pretrained, weights_only=True)["state"]
    after = torch.load(tmp_path / "second" / "steps" / STEP / "generator.pt", weights_only=True)["state"]
    # FreezeD: fromRGB and the first block are the pretrained weights; the rest trained on
    for key, value in before["discriminator"].items():
        assert torch.equal(value, after["discriminator"][key]) == key.startswith(("from_rgb.", "blocks.0.")), key
    assert not torch.equal(before["generator"]["synthesis.const"], after["generator"]["synthesis.const"])


def test_init_from_a_file_of_another_architecture_is_a_data_error_naming_the_keys(tmp_path, registry):
    source = {"name": "npz", "params": {"path": str(_digits_npz(tmp_path / "a.npz", [0, 1]))}}
    _run(_run_file(tmp_path, "first", source, [{"generate": "stylegan2", "guard": "off", "params": TINY, "multiply": 0.1}]),
         registry)
    pretrained = tmp_path / "first" / "steps" / STEP / "generator.pt"
    wider = {**TINY, "width": 8, "max_width": 16, "init_from": str(pretrained)}
    from setforge import DataError

    with pytest.raises(DataError, match=r"synthesis.const: file \[8, 4, 4\] vs model \[16, 4, 4\]"):
        _run(_run_file(tmp_path, "second", source, [{"generate": "stylegan2", "guard": "off", "params": wider, "multiply": 0.1}]),
             registry)
