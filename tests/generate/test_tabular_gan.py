"""tabular-gan: the mode-specific normaliser, training-by-sampling, decoding, save/load and resume."""

import numpy as np
import pytest
import torch

from setforge.context import StepContext
from setforge.dataset import Dataset, FeatureInfo
from setforge.errors import DataError
from setforge.plugins.generate._tabular_encoding import ModeSpecificNormaliser
from setforge.plugins.generate.tabular_gan import TabularGAN, TrainingBySampling, auto_pac

TINY = {"steps": 6, "batch_size": 40, "embedding_dim": 8, "generator_dims": [16], "critic_dims": [16],
        "max_modes": 3, "checkpoint_every": 3, "pac": 4}


def mixed_rows(n=240, seed=0):
    """Two numeric columns (one bimodal float, one integer 18..90), one categorical of 4 skewed categories."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int64)
    bimodal = np.where(rng.random(n) < 0.5, rng.normal(-5, 0.5, n), rng.normal(5, 1.0, n)) + 2 * y
    age = np.clip(np.round(rng.normal(45 + 10 * y, 12, n)), 18, 90)
    colour = rng.choice(4, size=n, p=[0.6, 0.25, 0.1, 0.05]).astype(np.float64)
    x = np.stack([bimodal, age, colour], axis=1)
    features = FeatureInfo(names=("bimodal", "age", "colour"),
                           categorical={"colour": ("red", "green", "blue", "grey")},
                           dtypes={"bimodal": "float64", "age": "int64", "colour": "str"})
    return Dataset(x=torch.tensor(x, dtype=torch.float32), y=torch.from_numpy(y), classes=("no", "yes"),
                   modality="tabular", features=features)


def test_mode_specific_normaliser_round_trips_and_finds_the_modes():
    ds = mixed_rows()
    x = ds.x.double().numpy()
    normaliser = ModeSpecificNormaliser(max_modes=10).fit(x, ds.features, seed=0)
    bimodal = normaliser.columns[0]
    means = np.sort(np.asarray(bimodal["means"]) * bimodal["scale"] + bimodal["loc"])
    assert len(means) >= 2 and means[0] < -3 and means[-1] > 4  # both humps have a mode
    encoded = normaliser.transform(x, np.random.default_rng(1))
    assert encoded.shape == (len(x), normaliser.width)
    alphas = encoded[:, normaliser.layout.tanh_index.numpy()]
    assert np.abs(alphas).max() <= 0.99
    for start, width in normaliser.layout.spans:  # every span is one-hot
        np.testing.assert_array_equal(encoded[:, start:start + width].sum(1), 1.0)
    back = normaliser.inverse(torch.from_numpy(encoded)).double().numpy()
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-4)
    state = ModeSpecificNormaliser.from_state_dict(normaliser.state_dict())
    np.testing.assert_array_equal(state.inverse(torch.from_numpy(encoded)).numpy(), back.astype(np.float32))


def test_normaliser_refuses_codes_outside_the_categories():
    ds = mixed_rows()
    x = ds.x.double().numpy()
    x[0, 2] = 7
    with pytest.raises(DataError, match="'colour' is categorical with 4 categories"):
        ModeSpecificNormaliser().fit(x, ds.features, seed=0)


def test_training_by_sampling_draws_categories_by_log_frequency_within_class():
    ds = mixed_rows(n=600)
    labels, codes = ds.y.numpy(), ds.x[:, 2:3].numpy().astype(np.int64)
    sampler = TrainingBySampling(labels, 500, True, np.random.default_rng(0), codes=codes, sizes=[4],
                                 num_classes=2, pac=10)
    drawn_classes, drawn_conditions, drawn_rows = [], [], []
    for _ in range(80):
        rows = sampler.next()
        conditions = sampler.labels(ds.y, torch.from_numpy(rows)).numpy()
        drawn_rows.append(rows)
        drawn_classes.append(conditions[:, 0])
        drawn_conditions.append(conditions[:, 1])
    rows, classes, conditions = map(np.concatenate, (drawn_rows, drawn_classes, drawn_conditions))
    # the row drawn has the class and the category of its condition
    np.testing.assert_array_equal(labels[rows], classes)
    np.testing.assert_array_equal(codes[rows, 0], conditions)
    assert abs(np.mean(classes) - 0.5) < 0.02  # balanced classes
    for c in (0, 1):
        counts = np.bincount(codes[labels == c, 0], minlength=4)
        expected = np.log1p(counts) / np.log1p(counts).sum()
        observed = np.bincount(conditions[classes == c], minlength=4) / (classes == c).sum()
        np.testing.assert_allclose(observed, expected, atol=0.015)
        assert observed[3] > 1.5 * counts[3] / counts.sum()  # rare categories drawn far above their share


def test_generated_rows_are_decoded_integer_bounded_and_conditioned_on_real_frequencies():
    ds = mixed_rows(n=300)
    ctx = StepContext.from_seed(0)
    generator = TabularGAN(TINY).fit(ds, ctx)
    out = generator.sample(torch.tensor([0] * 1500 + [1] * 1500), ctx)
    x = out.x.numpy()
    real = ds.x.numpy()
    assert set(np.unique(x[:, 2])) <= {0.0, 1.0, 2.0, 3.0}
    np.testing.assert_array_equal(x[:, 1], np.round(x[:, 1]))  # the int64 column stays whole
    for column in range(2):  # every value within the training range
        assert x[:, column].min() >= real[:, column].min() and x[:, column].max() <= real[:, column].max()
    assert not np.array_equal(x[:, 0], np.round(x[:, 0]))  # the float column is not rounded
    # the condition is drawn from the real frequencies and the cross-entropy ties the output to it:
    # even a barely trained generator puts the common category first
    observed = np.bincount(x[:, 2].astype(np.int64), minlength=4) / len(x)
    assert observed.argmax() == 0
    # the conditions themselves follow each class's real category frequencies (one categorical column)
    for label in (0, 1):
        drawn = generator._conditions(torch.full((20000,), label), torch.Generator().manual_seed(label))
        real_share = np.bincount(real[ds.y.numpy() == label, 2].astype(np.int64), minlength=4) / int((ds.y == label).sum())
        np.testing.assert_allclose(np.bincount(drawn.numpy(), minlength=4) / 20000, real_share, atol=0.015)


def test_save_load_and_resume_match(tmp_path):
    ds = mixed_rows(n=200)
    ctx = StepContext.from_seed(3, workdir=tmp_path / "a")
    first = TabularGAN(TINY).fit(ds, ctx)
    path = first.save(tmp_path / "gan.pt")
    loaded = TabularGAN().load(path)
    labels = torch.tensor([0, 1] * 20)
    a = first.sample(labels, StepContext.from_seed(9))
    b = loaded.sample(labels, StepContext.from_seed(9))
    torch.testing.assert_close(a.x, b.x)
    # a run interrupted after its first checkpoint and resumed ends with the same weights
    partial = TabularGAN({**TINY, "steps": 3}).fit(ds, StepContext.from_seed(3, workdir=tmp_path / "b"))
    assert partial.result.iterations == 3
    resumed = TabularGAN(TINY).fit(ds, StepContext.from_seed(3, workdir=tmp_path / "b", resume=True))
    assert resumed.result.resumed_from == 3
    for key, value in first._net.state_dict().items():
        torch.testing.assert_close(resumed._net.state_dict()[key], value, rtol=0, atol=0)


def test_too_few_rows_for_a_pack():
    ds = mixed_rows(n=8)
    with pytest.raises(DataError, match="pac=10"):
        TabularGAN({"steps": 1, "pac": 10}).fit(ds, StepContext.from_seed(0))
    # (a small batch_size is named as the cause: the message said "got 93 rows" for 93 training rows)
    with pytest.raises(DataError, match=r"^a batch of 10 rows \(params.batch_size 10, 240 training rows\) holds no "
                                        r"pack of pac=64 rows; set params.batch_size to at least 64, or a smaller"):
        TabularGAN({"steps": 1, "pac": 64, "batch_size": 10}).fit(mixed_rows(), StepContext.from_seed(0))


def test_pac_auto_packs_only_batches_of_at_least_fifty_packs():
    assert auto_pac("auto", 500, 10_000) == 10  # CTGAN's batch of 500: 50 packs of 10
    assert auto_pac("auto", 500, 124) == 1  # the batch is cut to the 124 rows there are
    assert auto_pac("auto", 499, 10_000) == 1
    assert auto_pac(4, 500, 124) == 4  # an int is taken as given
    gan = TabularGAN({**TINY, "pac": "auto"}).fit(mixed_rows(), StepContext.from_seed(0))
    assert gan.training_report["pac"] == 1
    assert gan.result.sampler is not None


def test_the_quality_monitor_measures_decoded_rows_and_best_fd_keeps_the_lowest(tmp_path):
    # (the monitor once built its Dataset from encoded rows, 4x wider than the columns: every run failed)
    ds, val = mixed_rows(), mixed_rows(80, seed=1)
    params = {**TINY, "select": "best-fd", "monitor_samples": 80}
    generator = TabularGAN(params).fit(ds, StepContext.from_seed(0, workdir=tmp_path / "best", val=val))
    report = generator.training_report
    assert [point["iteration"] for point in report["curve"]] == [3, 6]
    assert all(np.isfinite(point["fd"]) for point in report["curve"])
    assert report["select"] == "best-fd"
    assert report["chosen_iteration"] == min(report["curve"], key=lambda point: point["fd"])["iteration"]
    # measuring draws nothing from the step's generator: with the monitor on, the last weights are those of
    # a run without it
    watched = TabularGAN({**TINY, "monitor": True}).fit(ds, StepContext.from_seed(0, workdir=tmp_path / "on", val=val))
    plain = TabularGAN({**TINY, "monitor": False}).fit(ds, StepContext.from_seed(0, workdir=tmp_path / "off", val=val))
    assert "curve" in watched.training_report and "curve" not in plain.training_report
    labels = torch.tensor([0, 1] * 20)
    assert torch.equal(watched.sample(labels, StepContext.from_seed(5)).x, plain.sample(labels, StepContext.from_seed(5)).x)


def test_the_standing_batch_norm_statistics_are_taken_once_with_sampling_conditions(monkeypatch):
    # tabular-gan refreshed them a second time after the trainer's refresh, which had already drawn
    # each class's conditions as `_sample` draws them (the trainer's `condition`)
    from setforge.plugins.generate import _gan_training, tabular_gan

    calls = []
    real = _gan_training.refresh_batch_norm

    def counted(net, latent_dim, labels, batch_size, seed):
        calls.append(labels.clone())
        return real(net, latent_dim, labels, batch_size, seed)

    monkeypatch.setattr(_gan_training, "refresh_batch_norm", counted)
    monkeypatch.setattr(tabular_gan, "refresh_batch_norm", counted, raising=False)
    ds = mixed_rows()
    TabularGAN({**TINY, "monitor": False}).fit(ds, StepContext.from_seed(0))
    [labels] = calls
    # the classes present equally often, each row with the category drawn for it (column 1)
    assert labels.shape[1] == 2 and torch.bincount(labels[:, 0]).tolist() == [2048, 2048]
    assert (labels[:, 1] >= 0).all()
