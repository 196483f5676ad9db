"""The `torchvision` augmenter: any transforms.v2 class by name, checked at validate, seeded per row."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2 as T
import yaml

from setforge import ConfigError, Origin, create
from setforge.pipeline import run
from setforge.checks import check_components
from setforge.registry import default_registry
from setforge.runfile import load_run_config

from ._helpers import smooth_images


def _write(tmp_path, pipeline) -> object:
    data = {"seed": 0, "device": "cpu", "source": {"name": "sklearn-digits", "params": {"imbalance": 10}},
            "split": {"val": 0.1}, "pipeline": pipeline, "evaluate": [], "output": {"dir": str(tmp_path / "out")}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_three_torchvision_transforms_from_a_run_file(tmp_path):
    chain = [{"name": "torchvision", "params": {"transform": "RandomPerspective", "kwargs": {"distortion_scale": 0.3,
                                                                                          "p": 1.0}}},
             {"name": "torchvision", "params": {"transform": "GaussianBlur", "kwargs": {"kernel_size": 3,
                                                                                      "sigma": [0.1, 1.0]}}},
             {"name": "torchvision", "params": {"transform": "RandomAdjustSharpness",
                                                "kwargs": {"sharpness_factor": 2.0, "p": 1.0}}}]
    pipeline = [{"augment": chain, "copies": 1, "classes": ["9"]},
                {"augment": "torchvision", "params": {"transform": "AutoAugment", "kwargs": {"policy": "svhn"},
                                                      "dtype": "uint8"}, "copies": 1, "classes": ["8"]}]
    first = run(load_run_config(_write(tmp_path / "a", pipeline)), progress=False)
    new = first.train[first.train.origin == int(Origin.AUGMENTED)]
    raw = first.raw_train
    assert len(new) == int(raw.class_counts()[raw.classes.index("9")] + raw.class_counts()[raw.classes.index("8")])
    assert float(new.x.min()) >= 0.0 and float(new.x.max()) <= 1.0
    assert float((new.x - raw.x[new.parent]).abs().amax(dim=(1, 2, 3)).gt(0).float().mean()) > 0.5
    again = run(load_run_config(_write(tmp_path / "b", pipeline)), progress=False)
    assert torch.equal(first.train.x, again.train.x)  # seeded from the step's generator only


def test_each_row_is_torchvision_seeded_with_its_own_draw():
    aug = create("augment", "torchvision", {"transform": "RandomAffine", "kwargs": {"degrees": 30}})
    x = smooth_images(4)
    state = torch.get_rng_state()
    out = aug(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    tv = T.RandomAffine(degrees=30)
    for i, seed in enumerate(aug.last_params["seed"].tolist()):
        torch.manual_seed(seed)
        assert torch.equal(tv(x[i]), out[i])
    assert len(torch.unique(out.flatten(1), dim=0)) == 4


def test_bad_names_and_arguments_are_refused_at_validate():
    with pytest.raises(ConfigError, match="one of: .*RandomPerspective"):
        create("augment", "torchvision", {"transform": "RandomWarp"})
    with pytest.raises(ConfigError, match="do not fit RandomRotation"):
        create("augment", "torchvision", {"transform": "RandomRotation", "kwargs": {"degree": 3}})
    with pytest.raises(ConfigError, match="refused"):
        create("augment", "torchvision", {"transform": "RandomRotation", "kwargs": {"degrees": -3}})


def test_values_torchvision_checks_only_when_called_are_refused_at_validate_too():
    # (found by an audit: both passed validate and failed the run with exit 4)
    with pytest.raises(ConfigError, match="Invalid interpolation mode: 'bilnear'"):
        create("augment", "torchvision", {"transform": "RandomRotation",
                                          "kwargs": {"degrees": 10, "interpolation": "bilnear"}})
    with pytest.raises(ConfigError, match="dtype should be uint8; it may need dtype: uint8"):
        create("augment", "torchvision", {"transform": "JPEG", "kwargs": {"quality": [50, 90]}})
    create("augment", "torchvision", {"transform": "JPEG", "kwargs": {"quality": [50, 90]}, "dtype": "uint8"})
    create("augment", "torchvision", {"transform": "RandomCrop", "kwargs": {"size": 300}})  # larger than 64 px


def test_a_transform_named_without_kwargs_takes_its_own_defaults():
    # (found by an audit: the default RandomRotation's degrees were handed to any transform)
    for name in ("RandomHorizontalFlip", "ElasticTransform", "RandomPerspective", "TrivialAugmentWide"):
        assert create("augment", "torchvision", {"transform": name}).params.kwargs == {}
    assert create("augment", "torchvision").params.kwargs == {"degrees": 10.0}
    assert create("augment", "torchvision", {"transform": "RandomRotation"}).params.kwargs == {"degrees": 10.0}


def test_a_bad_run_file_fails_at_validate_with_its_place(tmp_path):
    path = _write(tmp_path, [{"augment": "torchvision", "params": {"transform": "Rotate"}}])
    with pytest.raises(ConfigError) as error:
        check_components(load_run_config(path), default_registry())
    assert "pipeline[0].params" in str(error.value) and "RandomRotation" in str(error.value)


def test_shape_and_range_changes_are_data_errors():
    from setforge import DataError

    with pytest.raises(DataError, match="keep the image's shape"):
        create("augment", "torchvision", {"transform": "CenterCrop", "kwargs": {"size": 4}})(smooth_images(2))
    with pytest.raises(DataError, match=r"left \[0, 1\]"):
        create("augment", "torchvision", {"transform": "Normalize",
                                          "kwargs": {"mean": [0.5] * 3, "std": [0.1] * 3}})(smooth_images(2))


def test_a_shape_change_says_what_changed_and_what_keeps_it():
    from setforge import DataError

    images = smooth_images(2, height=24, width=32)
    with pytest.raises(DataError) as error:
        create("augment", "torchvision", {"transform": "Grayscale"})(images)
    assert str(error.value) == ("augment 'torchvision': Grayscale turned a (3, 24, 32) image into (1, 24, 32): it "
                                "changed the channels from 3 to 1 (kwargs: {num_output_channels: 3} keeps them); "
                                "an augmenter must keep the image's shape")
    kept = create("augment", "torchvision", {"transform": "Grayscale", "kwargs": {"num_output_channels": 3}})(images)
    assert kept.shape == images.shape
    with pytest.raises(DataError) as error:
        create("augment", "torchvision", {"transform": "RandomResizedCrop", "kwargs": {"size": 16}})(images)
    assert "turned a (3, 24, 32) image into (3, 16, 16): it changed the size from 24x32 to 16x16 " \
           "(kwargs: {size: [24, 32]} keeps it)" in str(error.value)
    with pytest.raises(DataError) as error:  # no argument keeps it: none is suggested
        create("augment", "torchvision", {"transform": "Pad", "kwargs": {"padding": 2}})(images)
    assert "changed the size from 24x32 to 28x36; an augmenter must keep" in str(error.value)


def test_rows_seeded_on_worker_threads_do_not_take_each_others_draws(monkeypatch):
    import time

    from setforge.chain import Chain

    real_seed = torch.manual_seed

    def slow_seed(seed):  # yields the GIL between seeding and drawing, so other threads run there
        generator = real_seed(seed)
        time.sleep(0.002)
        return generator

    x = smooth_images(12, height=16, width=16)
    chain = Chain([create("augment", "torchvision", {"transform": "RandomRotation", "kwargs": {"degrees": 40}}),
                   create("augment", "invert", {"p": 1.0})])
    params = chain.make_params(x, None, torch.Generator().manual_seed(0))
    whole = chain(x, params=params)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(Chain, "chunk_bytes", 2 * x[0].numel() * 4)  # six chunks shared by two worker threads
    monkeypatch.setattr(torch, "manual_seed", slow_seed)
    try:
        assert torch.equal(chain(x, params=params), whole)
    finally:
        torch.set_num_threads(before)


def test_the_defaults_build_and_loading_the_plugins_does_not_import_torchvision():
    import subprocess
    import sys

    from setforge.plugins.augment.torchvision_op import Torchvision

    fields = Torchvision.Params.model_fields
    explicit = Torchvision.Params(**{name: field.get_default(call_default_factory=True) for name, field in fields.items()})
    assert explicit.model_fields_set == set(fields) and explicit == Torchvision.Params()  # checked, and valid
    code = ("import sys; from setforge.registry import default_registry; default_registry().load(); "
            "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]
