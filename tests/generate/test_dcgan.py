"""dcgan: shapes and range on digits and on padded 3-channel images, determinism, save/load, errors."""

from __future__ import annotations

import pytest
import torch

from setforge import DataError, Dataset, Origin, StepContext
from setforge.plugins.generate.dcgan import DCGAN, _DcganDiscriminator, _DcganGenerator, network_size
from setforge.testing import check_component, sample_dataset

TINY = {"steps": 6, "batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4, "grid_every": 0}


def _squares(n_per_class: int = 12, size: int = 20) -> Dataset:
    """3-channel size x size images: class 0 a red square on black, class 1 a blue one, at random places."""
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(2 * n_per_class, 3, size, size)
    corners = torch.randint(0, size - 6, (2 * n_per_class, 2), generator=generator)
    for i, (top, left) in enumerate(corners.tolist()):
        x[i, 0 if i < n_per_class else 2, top:top + 6, left:left + 6] = 1.0
    y = torch.tensor([0] * n_per_class + [1] * n_per_class)
    return Dataset(x=x, y=y, classes=("red", "blue"), modality="image")


def _fit(ds: Dataset, seed: int = 0, tmp_path=None, **params) -> DCGAN:
    generator = DCGAN({**TINY, **params})
    generator.fit(ds, StepContext.from_seed(seed, workdir=tmp_path))
    return generator


def test_digits_fit_and_sample_have_the_requested_shape_labels_and_range(tmp_path):
    ds = sample_dataset("image")
    generator = _fit(ds, tmp_path=tmp_path)
    labels = torch.tensor([0, 1, 2, 2, 0])
    out = generator.sample(labels, StepContext.from_seed(1, batch_size=2))
    assert out.x.shape == (5, 1, 8, 8) and out.x.dtype == torch.float32
    assert float(out.x.min()) >= 0.0 and float(out.x.max()) <= 1.0
    assert torch.equal(out.y, labels)
    assert bool((out.origin == int(Origin.GENERATED)).all()) and bool((out.parent == -1).all())
    assert out.classes == ds.classes


def test_three_channel_20x20_is_padded_to_32_and_cropped_back(tmp_path):
    ds = _squares()
    generator = _fit(ds, tmp_path=tmp_path)
    out = generator.sample([0, 1, 1], StepContext.from_seed(1))
    assert out.x.shape == (3, 3, 20, 20)
    assert float(out.x.min()) >= 0.0 and float(out.x.max()) <= 1.0
    # the generator works at 32x32 (3 stages) and crops the centre; the discriminator pads alike
    assert network_size(20, 20) == 32
    net = generator._net
    assert (net.top, net.left) == (6, 6)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules()) == 4


@pytest.mark.parametrize(("height", "width", "size", "stages"),
                         [(8, 8, 8, 1), (9, 8, 16, 2), (20, 20, 32, 3), (64, 64, 64, 4), (100, 30, 128, 5),
                          (128, 128, 128, 5)])
def test_depth_adapts_to_the_image_size(height, width, size, stages):
    assert network_size(height, width) == size
    generator = _DcganGenerator(4, 2, 3, 5, height, width, 2)
    discriminator = _DcganDiscriminator(3, 5, height, width, 2)
    z, labels = torch.zeros(2, 4), torch.tensor([0, 2])
    rows = generator(z, labels)
    assert rows.shape == (2, 5, height, width)
    assert discriminator(rows, labels).shape == (2,)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in discriminator.modules()) == stages


@pytest.mark.parametrize("size", [(7, 8), (8, 130)])
def test_sizes_outside_8_to_128_are_refused_with_a_remedy(size):
    x = torch.zeros(4, 1, *size)
    ds = Dataset(x=x, y=torch.tensor([0, 1, 0, 1]), classes=("a", "b"), modality="image")
    with pytest.raises(DataError, match=r"dcgan.*8x8 to 128x128.*resize"):
        _fit(ds)


def test_tabular_data_is_refused():
    with pytest.raises(DataError, match="dcgan"):
        _fit(sample_dataset("tabular"))


def test_fixed_seed_gives_identical_generators_and_samples_and_another_seed_does_not(tmp_path):
    ds = sample_dataset("image")
    runs = [_fit(ds, seed=seed, tmp_path=tmp_path / str(i)) for i, seed in enumerate((3, 3, 4))]
    samples = [g.sample([0, 1, 2] * 3, StepContext.from_seed(9)).x for g in runs]
    assert torch.equal(samples[0], samples[1])
    assert not torch.equal(samples[0], samples[2])
    for a, b in zip(runs[0]._net.state_dict().values(), runs[1]._net.state_dict().values()):
        assert torch.equal(a, b)


def test_training_does_not_touch_the_global_rng(tmp_path):
    before = torch.random.get_rng_state()
    generator = _fit(sample_dataset("image"), tmp_path=tmp_path)
    generator.sample([0, 1], StepContext.from_seed(1))
    assert torch.equal(before, torch.random.get_rng_state())


def test_a_spectrally_normalised_discriminator_has_unit_spectral_norm_and_no_batch_norm():
    from setforge.plugins.generate._gan_training import init_dcgan_weights, spectral_normalise

    disc = _DcganDiscriminator(3, 3, 16, 16, 8, batch_norm=False)
    init_dcgan_weights(disc, torch.Generator().manual_seed(0))
    before = torch.random.get_rng_state()
    spectral_normalise(disc, torch.Generator().manual_seed(1))
    assert torch.equal(before, torch.random.get_rng_state())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in disc.modules())
    x, labels = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for _ in range(30):  # one power iteration per training forward pass
        disc(x, labels)
    layers = [m for m in disc.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
    assert len(layers) == 4  # 16x16: two convolutions, the linear head and the projection embedding
    for layer in layers:
        weight = layer.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_spectral_norm_training_is_deterministic_and_leaves_the_global_rng(tmp_path):
    ds = sample_dataset("image")
    before = torch.random.get_rng_state()
    runs = [_fit(ds, seed=3, tmp_path=tmp_path / str(i)) for i in range(2)]  # spectral: the default
    assert torch.equal(before, torch.random.get_rng_state())
    plain = _fit(ds, seed=3, tmp_path=tmp_path / "batch", discriminator_norm="batch")
    samples = [g.sample([0, 1, 2] * 3, StepContext.from_seed(9)).x for g in (*runs, plain)]
    assert torch.equal(samples[0], samples[1])
    assert not torch.equal(samples[0], samples[2])  # the discriminator's normalisation changes the training


def test_save_then_checkpoint_param_loads_the_same_generator(tmp_path):
    ds = sample_dataset("image")
    trained = _fit(ds, tmp_path=tmp_path / "work")
    path = trained.save(tmp_path / "generator.pt")
    loaded = DCGAN({**TINY, "checkpoint": str(path)})
    loaded.fit(ds, StepContext.from_seed(123))
    assert loaded.result is None  # loaded, not trained
    labels = [0, 1, 2, 1]
    assert torch.equal(trained.sample(labels, StepContext.from_seed(5)).x, loaded.sample(labels, StepContext.from_seed(5)).x)
    # the base's load() alone works too, without fitting
    bare = DCGAN(TINY).load(path)
    assert torch.equal(bare.sample(labels, StepContext.from_seed(5)).x, loaded.sample(labels, StepContext.from_seed(5)).x)


def test_a_checkpoint_of_other_classes_is_refused(tmp_path):
    path = _fit(sample_dataset("image"), tmp_path=tmp_path / "w").save(tmp_path / "generator.pt")
    with pytest.raises(DataError, match="classes"):
        DCGAN({**TINY, "checkpoint": str(path)}).fit(_squares(), StepContext.from_seed(0))


def test_a_class_without_training_rows_cannot_be_sampled(tmp_path):
    ds = sample_dataset("image")
    generator = _fit(ds[ds.y != 2], tmp_path=tmp_path)
    with pytest.raises(DataError, match=r"no training rows of class '2'"):
        generator.sample([0, 2], StepContext.from_seed(0))


def test_huge_learning_rate_diverges_with_a_data_error_naming_the_iteration(tmp_path):
    ds = sample_dataset("image")
    with pytest.raises(DataError) as caught:
        DCGAN({**TINY, "steps": 40, "lr_generator": 1e6, "lr_discriminator": 1e6, "checkpoint_every": 1,
               "log_every": 5}).fit(ds, StepContext.from_seed(0, workdir=tmp_path, step=3))
    message = str(caught.value)
    assert "pipeline step 3" in message and "diverged at iteration" in message and "lr_generator" in message
    assert caught.value.exit_code == 3
    # checkpoints are written only at verified iterations: the one kept holds finite weights
    kept = sorted(tmp_path.glob("training-*.pt"))
    assert len(kept) == 1 and f"last good checkpoint is {kept[0]}" in message
    state = torch.load(kept[0], weights_only=True)
    assert state["iteration"] < int(message.split("diverged at iteration ")[1].split()[0])
    for network in state["networks"].values():
        assert all(bool(torch.isfinite(t).all()) for t in network.values() if t.is_floating_point())


def test_conforms_to_the_kit():
    check_component(DCGAN)
