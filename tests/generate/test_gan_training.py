"""The shared GAN training loop: resume, checkpoints, events, grids, progress bar, EMA, and the
batch sampler. (A real kill of `setforge run` and `--resume`: test_dcgan_runs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from setforge import DataError, StepContext
from setforge.plugins.generate._gan_training import (BatchSampler, GanTrainer, NonSaturatingLoss, build_module,
                                                   init_dcgan_weights, is_skewed)
from setforge.plugins.generate.dcgan import DCGAN, _DcganDiscriminator, _DcganGenerator
from setforge.testing import sample_dataset

TINY = {"batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4, "grid_every": 0}


class _Killed(Exception):
    pass


def _killer(at: int):
    def emit(event):
        if event.kind == "train_progress" and event.data["iteration"] >= at:
            raise _Killed
    return emit


def _weights(generator: DCGAN) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in generator._net.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _uninterrupted(ds, workdir: Path, params: dict) -> DCGAN:
    generator = DCGAN(params)
    generator.fit(ds, StepContext.from_seed(0, workdir=workdir))
    return generator


def test_resume_after_an_interruption_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    ds = sample_dataset("image")
    params = {**TINY, "steps": 30, "checkpoint_every": 10, "log_every": 5}
    reference = _uninterrupted(ds, tmp_path / "straight", params)

    workdir = tmp_path / "interrupted"
    with pytest.raises(_Killed):
        DCGAN(params).fit(ds, StepContext.from_seed(0, workdir=workdir, emit=_killer(25)))
    assert [p.name for p in workdir.glob("training-*.pt")] == ["training-00000020.pt"]
    resumed = DCGAN(params)
    resumed.fit(ds, StepContext.from_seed(0, workdir=workdir, resume=True))
    assert resumed.result.resumed_from == 20
    _assert_same(_weights(reference), _weights(resumed))
    labels = [0, 1, 2, 0]
    assert torch.equal(reference.sample(labels, StepContext.from_seed(4)).x, resumed.sample(labels, StepContext.from_seed(4)).x)

    # a resumed run whose training had finished trains no more and gives the same generator
    again = DCGAN(params)
    again.fit(ds, StepContext.from_seed(0, workdir=workdir, resume=True))
    assert again.result.resumed_from == 30
    _assert_same(_weights(reference), _weights(again))


def test_checkpoints_hold_networks_optimisers_ema_and_rng_states_and_only_the_newest_is_kept(tmp_path):
    ds = sample_dataset("image")
    DCGAN({**TINY, "steps": 12, "checkpoint_every": 5}).fit(ds, StepContext.from_seed(0, workdir=tmp_path))
    assert [p.name for p in tmp_path.glob("*.pt")] == ["training-00000012.pt"]
    state = torch.load(tmp_path / "training-00000012.pt", weights_only=True)
    assert state["iteration"] == 12
    assert set(state["networks"]) == {"generator", "discriminator", "ema"}
    assert set(state["optimisers"]) == {"generator", "discriminator"}
    assert state["optimisers"]["generator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert json.loads(state["rng"]["data"]["numpy"])["bit_generator"] == "PCG64"


def test_resuming_on_other_data_is_refused_with_a_remedy(tmp_path):
    ds = sample_dataset("image")
    params = {**TINY, "steps": 4}
    DCGAN(params).fit(ds, StepContext.from_seed(0, workdir=tmp_path))
    with pytest.raises(DataError, match=r"written for another run \(other training rows\); delete it"):
        DCGAN(params).fit(ds[:30], StepContext.from_seed(0, workdir=tmp_path, resume=True))
    with pytest.raises(DataError, match=r"\(other seed\); delete it"):  # what differs is named
        DCGAN(params).fit(ds, StepContext.from_seed(1, workdir=tmp_path, resume=True))
    with pytest.raises(DataError, match=r"\(other params.latent_dim, params.width\); delete it"):
        DCGAN({**params, "width": 4, "latent_dim": 4}).fit(ds, StepContext.from_seed(0, workdir=tmp_path, resume=True))
    # a lower learning rate (the remedy after a divergence) may resume
    DCGAN({**params, "steps": 6, "lr_generator": 1e-4}).fit(ds, StepContext.from_seed(0, workdir=tmp_path, resume=True))
    # a budget below the checkpoint's step would keep its longer-trained weights under the shorter budget's name
    with pytest.raises(DataError, match=r"checkpoint at step 6 \(training-00000006.pt\), past this run's budget of "
                                        r"3 steps \(steps: 3 \(given\)\); resume with a budget of at least 6"):
        DCGAN({**params, "steps": 3}).fit(ds, StepContext.from_seed(0, workdir=tmp_path, resume=True))


def test_events_grids_and_epochs(tmp_path):
    ds = sample_dataset("image")  # 36 rows: 2 batches of 16 per epoch
    events = []
    generator = DCGAN({**TINY, "epochs": 3, "grid_every": 4, "log_every": 2})
    generator.fit(ds, StepContext.from_seed(0, workdir=tmp_path, emit=events.append, step=2))
    progress = [e for e in events if e.kind == "train_progress"]
    assert [e.data["iteration"] for e in progress] == [2, 4, 6]
    assert all(e.step == 2 and e.name == "dcgan" and e.data["total"] == 6 for e in progress)
    # real_sign: the mean sign of D(real), ADA's r_t, logged with the losses
    assert set(progress[-1].data["losses"]) == {"discriminator", "generator", "real_sign"}
    assert all(np.isfinite(v) for v in progress[-1].data["losses"].values())
    samples = [e for e in events if e.kind == "samples"]
    assert [e.data["iteration"] for e in samples] == [4, 6]
    assert samples[0].data["images"].shape == (3 * 8, 1, 8, 8)
    assert samples[0].data["labels"].tolist() == [0] * 8 + [1] * 8 + [2] * 8
    from PIL import Image

    with Image.open(tmp_path / "samples-00000006.png") as image:
        # 8 columns and 3 class rows of 8x8 images shown at 32x32 with 2-pixel gaps
        assert image.size == (8 * 34 + 2, 3 * 34 + 2) and image.mode == "L"
    assert generator.result.grids == [tmp_path / "samples-00000004.png", tmp_path / "samples-00000006.png"]


def test_progress_bar_shows_the_losses(tmp_path, capsys):
    DCGAN({**TINY, "steps": 4, "log_every": 2}).fit(sample_dataset("image"),
                                                    StepContext.from_seed(0, workdir=tmp_path, progress=True))
    err = capsys.readouterr().err
    assert "dcgan" in err and "discriminator=" in err and "4/4" in err


def _networks(seed: int = 0):
    generator_rng = torch.Generator().manual_seed(seed)
    gen = build_module(lambda: _DcganGenerator(8, 4, 3, 1, 8, 8, 8), "cpu")
    disc = build_module(lambda: _DcganDiscriminator(3, 1, 8, 8, 8), "cpu")
    init_dcgan_weights(gen, generator_rng)
    init_dcgan_weights(disc, generator_rng)
    return gen, disc


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_ema_follows_the_warmed_up_moving_average(tmp_path, decay):
    ds = sample_dataset("image")
    gen, disc = _networks()
    initial = [p.detach().clone() for p in gen.parameters()]
    trainer = GanTrainer(gen, disc, NonSaturatingLoss(), DCGAN.Params(**TINY, steps=1, ema_decay=decay),
                         name="dcgan", decode=lambda t: (t + 1) / 2)
    result = trainer.fit(ds.x * 2 - 1, ds.y, 3, StepContext.from_seed(0, workdir=tmp_path))
    weight = 1 - min(decay, 2 / 11)  # after one step the warm-up caps the decay at (1 + 1) / (10 + 1)
    for start, live, ema in zip(initial, gen.parameters(), result.sampler.parameters()):
        assert not torch.equal(start, live)
        torch.testing.assert_close(ema, start + weight * (live.detach() - start))
    assert not result.sampler.training


def test_is_skewed():
    assert not is_skewed(np.array([10, 10, 9]))
    assert is_skewed(np.array([10, 6]))
    assert not is_skewed(np.array([10, 0, 9]))  # absent classes are not drawn, so they do not count


def test_balanced_sampler_draws_classes_uniformly_and_rows_uniformly_within_them():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = BatchSampler(labels, 64, balanced=True, rng=np.random.default_rng(0))
    drawn = np.concatenate([sampler.next() for _ in range(200)])
    assert abs((labels[drawn] == 1).mean() - 0.5) < 0.03  # binomial sd 0.0044
    minority = np.bincount(drawn[labels[drawn] == 1], minlength=100)[90:]
    assert minority.min() > 640 - 150 and minority.max() < 640 + 150


def test_plain_sampler_visits_every_row_once_per_epoch_and_resumes_mid_epoch():
    labels = np.arange(100) % 3
    sampler = BatchSampler(labels, 32, balanced=False, rng=np.random.default_rng(1))
    assert sampler.steps_per_epoch == 3
    epoch = np.concatenate([sampler.next() for _ in range(3)])
    assert len(set(epoch.tolist())) == 96
    sampler.next()
    state = sampler.state()
    expected = [sampler.next() for _ in range(4)]
    other = BatchSampler(labels, 32, balanced=False, rng=np.random.default_rng(99))
    other.load_state(state)
    for want in expected:
        np.testing.assert_array_equal(other.next(), want)


def test_auto_balancing_switches_on_for_skewed_classes(tmp_path):
    ds = sample_dataset("image")  # 18, 12 and 6 rows
    skewed = DCGAN({**TINY, "steps": 2})
    skewed.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "a"))
    even = DCGAN({**TINY, "steps": 2})
    even.fit(ds[ds.y != 2][:24], StepContext.from_seed(0, workdir=tmp_path / "b"))  # 18 and 6 -> skewed too
    off = DCGAN({**TINY, "steps": 2, "balanced": False})
    off.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "c"))
    level = DCGAN({**TINY, "steps": 2})
    level.fit(ds[torch.cat([torch.arange(0, 12), torch.arange(18, 30)])], StepContext.from_seed(0, workdir=tmp_path / "d"))
    assert skewed.result.balanced and even.result.balanced and not off.result.balanced and not level.result.balanced


def test_forward_macs_counts_convolutions_transposed_convolutions_and_linear_layers():
    from setforge.plugins.generate._gan_training import forward_macs

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, 2, 1), torch.nn.BatchNorm2d(4),  # 8x8 -> 4x4
                              torch.nn.ConvTranspose2d(4, 3, 4, 2, 1),  # 4x4 -> 8x8
                              torch.nn.Flatten(), torch.nn.Linear(3 * 64, 5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    macs = forward_macs(net, torch.zeros(2, 2, 8, 8))
    assert macs == 2 * (4 * 2 * 9 * 16 + 4 * 3 * 16 * 16 + 5 * 192)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_small_models_train_on_one_thread_and_the_count_is_restored(tmp_path, monkeypatch):
    from setforge.plugins.generate import _gan_training as gan_training

    seen = []
    original = gan_training.BatchSampler.next
    monkeypatch.setattr(gan_training.BatchSampler, "next", lambda self: seen.append(torch.get_num_threads())
                        or original(self))
    before = torch.get_num_threads()
    DCGAN({**TINY, "steps": 2}).fit(sample_dataset("image"), StepContext.from_seed(0, workdir=tmp_path))
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_the_generator_example_in_the_docs_trains_through_the_loop_and_conforms():
    import re

    from setforge.testing import check_component

    text = (Path(__file__).resolve().parents[2] / "docs" / "generators.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "class TinyTabularGan" in b)
    namespace: dict = {}
    exec(compile(block, "docs/generators.md", "exec"), namespace)
    check_component(namespace["TinyTabularGan"])
    generator = namespace["TinyTabularGan"]({"steps": 5, "batch_size": 16})
    generator.fit(sample_dataset("tabular"), StepContext.from_seed(0))
    assert generator.sample([0, 2], StepContext.from_seed(1)).x.shape == (2, 13)


def test_the_default_budget_is_chosen_from_the_data_and_says_why():
    from setforge.plugins.generate._gan_training import (AUTO_EPOCHS, AUTO_MACS, MIN_AUTO_STEPS, STEPS_PER_CLASS,
                                                         training_budget)

    auto = DCGAN.Params()
    assert auto.steps == "auto" and auto.epochs is None
    counts = np.array([400, 150, 57, 21, 8])
    # 5 classes need more steps than 10 passes over 636 rows (9 batches each) or the floor
    small = training_budget(auto, counts, steps_per_epoch=9, critic_steps=1, step_macs=10**8, row_shape=(3, 32, 32))
    assert small["steps"] == max(5 * STEPS_PER_CLASS, MIN_AUTO_STEPS)
    assert small["rule"].startswith("auto: 636 rows of 3x32x32") and f"5 classes x {STEPS_PER_CLASS}" in small["rule"]
    # many rows: the passes over them decide
    many = training_budget(auto, np.array([50_000, 50_000]), 1562, 1, 10**8, (8,))
    assert many["steps"] == AUTO_EPOCHS * 1562 and "10 passes over 100000 rows" in many["rule"]
    # an expensive step: the compute budget caps the steps, and the rule says so
    cost = int(AUTO_MACS // 1000)
    capped = training_budget(auto, counts, 9, 1, cost, (3, 64, 64))
    assert capped["steps"] == 1000 and "capped at 1000 by the compute budget" in capped["rule"]
    # critic steps share the passes over the rows; explicit steps and epochs are taken as given
    assert training_budget(DCGAN.Params(epochs=4), counts, 9, 3, cost, (1, 8, 8))["steps"] == 12
    assert training_budget(DCGAN.Params(steps=7, epochs=4), counts, 9, 1, cost, (1, 8, 8)) == \
        {"steps": 7, "rule": "steps: 7 (given)"}
    with pytest.raises(ValueError):
        DCGAN.Params(steps=0)


def test_the_fitted_generator_reports_its_budget(tmp_path):
    generator = DCGAN({**TINY, "epochs": 2})  # 36 rows, 2 batches of 16 per pass
    generator.fit(sample_dataset("image"), StepContext.from_seed(0, workdir=tmp_path))
    assert generator.training_report["budget"] == {"steps": 4, "rule": "epochs: 2 x 2 batches per pass over the "
                                                                       "rows, 1 batch per step"}
    assert generator.result.iterations == 4


def test_precision_fp32_is_the_cpu_path_and_other_values_are_refused(tmp_path):
    # on the CPU both precisions train in float32 with contiguous memory: the same weights bit for bit
    ds = sample_dataset("image")
    auto = _uninterrupted(ds, tmp_path / "auto", {**TINY, "steps": 3})
    fp32 = _uninterrupted(ds, tmp_path / "fp32", {**TINY, "steps": 3, "precision": "fp32"})
    _assert_same(_weights(auto), _weights(fp32))
    with pytest.raises(ValueError):
        DCGAN.Params(precision="bf16")
