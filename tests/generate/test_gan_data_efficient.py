"""The shared loop's data-efficient training and bookkeeping: DiffAugment's gradients reach the
generator, ADA's controller, resume bit-identical with both on, checkpoint selection by FD and
collapse warnings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from setforge import DataError, Dataset, StepContext
from setforge.plugins.generate._gan_augment import AdaParams, AdaptiveAugment, AugmentedDiscriminator, build_ops
from setforge.plugins.generate._gan_selection import QualityMonitor
from setforge.plugins.generate._gan_training import build_module, init_dcgan_weights
from setforge.plugins.generate.dcgan import DCGAN, _DcganDiscriminator, _DcganGenerator, _to_images, _to_network
from setforge.plugins.generate.wgan_gp import WGANGP
from setforge.testing import sample_dataset

from .test_gan_training import _Killed, _killer

TINY = {"batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4, "grid_every": 0}
EFFICIENT = {"diff_augment": ["translation", "color", "cutout"], "ada": {"target": 0.6, "interval": 2, "speed": 200}}


def test_diff_augment_gradients_reach_the_generator_through_every_op():
    init = torch.Generator().manual_seed(0)
    generator = build_module(lambda: _DcganGenerator(8, 4, 3, 3, 8, 8, 4), "cpu")
    discriminator = build_module(lambda: _DcganDiscriminator(3, 3, 8, 8, 4), "cpu")
    init_dcgan_weights(generator, init)
    init_dcgan_weights(discriminator, init)
    z, labels = torch.randn(6, 8, generator=init), torch.tensor([0, 1, 2, 0, 1, 2])
    grads = {}
    for ops in ([], ["translation"], ["color"], ["cutout"], ["translation", "color", "cutout"]):
        wrapped = AugmentedDiscriminator(discriminator, build_ops(ops), torch.Generator().manual_seed(1),
                                         _to_images, _to_network)
        generator.zero_grad()
        loss = -wrapped(generator(z, labels), labels).mean()
        loss.backward()
        grads[tuple(ops)] = torch.cat([p.grad.flatten() for p in generator.parameters()])
        assert torch.isfinite(grads[tuple(ops)]).all() and grads[tuple(ops)].abs().sum() > 0, ops
    plain = grads[()]
    for ops, grad in grads.items():
        if ops:  # the augmentation is in the graph: the generator's gradient changes with it
            assert not torch.allclose(grad, plain), ops


def test_the_augmented_discriminator_replays_the_ops_and_p_zero_is_the_identity():
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    ops = build_ops(["translation", "color", "cutout"])
    wrapped = AugmentedDiscriminator(nn.Identity(), ops, torch.Generator().manual_seed(3), _to_images, _to_network)
    out = wrapped.augment(x)
    draw = torch.Generator().manual_seed(3)
    images = _to_images(x)
    for op in ops:  # the same ops with the same draws, by hand
        images = op.apply_params(images, None, op.make_params(images, None, draw))
    assert torch.allclose(out, _to_network(images), atol=1e-6)
    wrapped.p = 0.0
    assert torch.equal(wrapped.augment(x), x)


def test_diff_augment_translates_by_whole_pixels_and_does_not_clamp_colour():
    """As in the paper's code: integer shifts with zero fill (no interpolation blurring the reals
    the discriminator sees), and colour factors whose results may leave [0, 1], so the generator's
    gradient reaches saturated pixels too."""
    draw = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 8, 8, generator=draw)
    (translation,) = build_ops(["translation"])
    params = translation.make_params(images, None, draw)
    moved = translation.apply_params(images, None, params)
    for row, out in zip(images, moved):
        assert set(out.flatten().tolist()) <= set(row.flatten().tolist()) | {0.0}
    assert not torch.equal(moved, images)
    (colour,) = build_ops(["color"])
    bright = torch.full((8, 1, 8, 8), 0.95, requires_grad=True)
    params = colour.make_params(bright, None, draw)
    out = colour.apply_params(bright, None, params)
    out.sum().backward()
    assert float(out.detach().max()) > 1.0 and bool((bright.grad.flatten(1).abs().sum(1) > 0).all())


def test_ada_moves_p_towards_the_target_by_batch_times_interval_over_speed():
    ada = AdaptiveAugment(AdaParams(target=0.6, interval=4, speed=640), batch_size=16)  # a step of 0.1
    for sign in (0.9, 0.8):
        ada.observe(torch.tensor(sign))
    assert ada.adjust() == pytest.approx(0.85) and ada.p == pytest.approx(0.1)
    ada.observe(torch.tensor(0.2))
    ada.adjust()
    ada.observe(torch.tensor(0.1))
    ada.adjust()
    assert ada.p == 0.0  # never below 0
    for _ in range(20):
        ada.observe(torch.tensor(1.0))
        ada.adjust()
    assert ada.p == 1.0  # nor above max_p


@pytest.mark.parametrize("cls, norm", [(DCGAN, "batch"), (DCGAN, "spectral"), (WGANGP, "none")])
def test_resume_is_bit_identical_with_diff_augment_ada_and_selection_on(tmp_path, cls, norm):
    ds = sample_dataset("image")
    params = {**TINY, **EFFICIENT, "steps": 24, "checkpoint_every": 8, "log_every": 4, "select": "best-fd",
              "monitor_samples": 60, "discriminator_norm": norm, **({"critic_steps": 2} if cls is WGANGP else {})}
    reference = cls(params)
    reference.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "straight", val=ds))
    if cls is DCGAN:
        assert reference.result.ada_p > 0  # ADA did move p

    workdir = tmp_path / "interrupted"
    with pytest.raises(_Killed):
        cls(params).fit(ds, StepContext.from_seed(0, workdir=workdir, val=ds, emit=_killer(20)))
    resumed = cls(params)
    resumed.fit(ds, StepContext.from_seed(0, workdir=workdir, val=ds, resume=True))
    assert resumed.result.resumed_from == 16
    for key, value in reference._net.state_dict().items():
        assert torch.equal(value, resumed._net.state_dict()[key]), key
    assert resumed.result.ada_p == reference.result.ada_p
    assert {**resumed.training_report, "resumed_from": None} == reference.training_report
    labels = [0, 1, 2, 0]
    assert torch.equal(reference.sample(labels, StepContext.from_seed(4)).x,
                       resumed.sample(labels, StepContext.from_seed(4)).x)


def test_best_fd_keeps_the_checkpoint_with_the_lowest_distance(tmp_path):
    ds = sample_dataset("image")
    params = {**TINY, "steps": 30, "checkpoint_every": 5, "select": "best-fd", "monitor_samples": 60, "ema_decay": 0.0}
    generator = DCGAN(params)
    generator.fit(ds, StepContext.from_seed(0, workdir=tmp_path, val=ds))
    report = generator.training_report
    curve = report["curve"]
    assert [p["iteration"] for p in curve] == [5, 10, 15, 20, 25, 30]
    best = min(curve, key=lambda p: p["fd"])
    assert report["chosen_iteration"] == best["iteration"] and report["select"] == "best-fd"
    # the weights kept are those of that checkpoint: a run stopped there ends with the same network
    # (measuring draws nothing from the step's generator)
    stopped = DCGAN({**params, "steps": best["iteration"], "select": "last"})
    stopped.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "stopped", val=ds))
    for key, value in stopped._net.state_dict().items():
        assert torch.equal(value, generator._net.state_dict()[key]), key
    last = DCGAN({**params, "select": "last"})
    last.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "last", val=ds))
    assert last.training_report["chosen_iteration"] == 30
    assert [p["fd"] for p in last.training_report["curve"]] == [p["fd"] for p in curve]


def test_a_collapsed_class_is_a_warning_naming_the_class_and_the_iteration():
    ds = sample_dataset("image")
    from setforge.plugins.generate._gan_selection import feature_network

    features = feature_network(ds, ds, 0, torch.device("cpu"), None)
    monitor = QualityMonitor(ds, ds, features, _to_images, 4, 0, "last", 0.2, samples=90)
    # class 0 collapses onto one real image; classes 1 and 2 give their real rows back in turn
    class Mixed(nn.Module):
        latent_dim = 4

        def forward(self, z, labels):
            out = torch.empty(len(labels), *ds.shape)
            for c in range(3):
                rows = (labels == c).nonzero().flatten()
                real = ds.x[ds.y == c]
                out[rows] = torch.zeros(ds.shape) if c == 0 else real[torch.arange(len(rows)) % len(real)]
            return out * 2 - 1

    monitor.measure(Mixed(), 40)
    warnings = monitor.report(40)["warnings"]
    assert len(warnings) == 1 and "class '0'" in warnings[0] and "iteration 40" in warnings[0]
    assert monitor.curve[0]["by_class"]["1"]["coverage"] == 1.0


def test_select_auto_is_best_fd_with_a_val_split_and_last_without(tmp_path):
    ds = sample_dataset("image")
    params = {**TINY, "steps": 30, "checkpoint_every": 5, "monitor_samples": 60, "ema_decay": 0.0}
    auto = DCGAN({**params, "select": "auto"})
    auto.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "auto", val=ds))
    best = DCGAN({**params, "select": "best-fd"})
    best.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "best", val=ds))
    assert auto.training_report["select"] == "best-fd"
    assert auto.training_report["chosen_iteration"] == best.training_report["chosen_iteration"]
    for key, value in best._net.state_dict().items():
        assert torch.equal(value, auto._net.state_dict()[key]), key
    alone = DCGAN({**params, "select": "auto"})  # no val split: no monitor, the last weights, no error
    alone.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "alone"))
    assert alone.training_report["iterations"] == 30 and "curve" not in alone.training_report


def test_best_fd_without_a_val_split_is_a_data_error():
    with pytest.raises(DataError, match="val split"):
        DCGAN({**TINY, "steps": 2, "select": "best-fd"}).fit(sample_dataset("image"), StepContext.from_seed(0))


def test_diff_augment_on_a_generator_without_encode_is_a_data_error():
    from setforge.plugins.generate._gan_training import GanTrainer, NonSaturatingLoss

    params = DCGAN.Params(**TINY, steps=2, diff_augment=["cutout"])
    trainer = GanTrainer(_DcganGenerator(8, 4, 3, 1, 8, 8, 4), _DcganDiscriminator(3, 1, 8, 8, 4),
                         NonSaturatingLoss(), params, name="x", decode=_to_images)
    ds = sample_dataset("image")
    with pytest.raises(DataError, match="diff_augment.*encode"):
        trainer.fit(ds.x, ds.y, 3, StepContext.from_seed(0))
