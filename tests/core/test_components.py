import pytest
import torch

from setforge import (Chain, ConfigError, DataError, Dataset, EvalContext, Origin, PluginError, StepContext)
from setforge.testing import sample_dataset
from tests.core.toys import Brighten, ClassMean, Duplicate, Leaky, RowCount, Scale


def test_params_are_validated_with_places():
    with pytest.raises(ConfigError) as error:
        Brighten({"amount": 2.0, "nope": 1})
    places = [place for place, _ in error.value.problems]
    assert places == ["params.amount", "params.nope"]
    assert Brighten({"p": 0.5}).params.p == 0.5


def test_augmenter_gate_is_per_row_and_replayable():
    x = torch.full((64, 1, 2, 2), 0.5)
    aug = Brighten({"p": 0.5, "amount": 0.4})
    g = torch.Generator().manual_seed(0)
    out = aug(x, generator=g)
    changed = (out != x).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 48  # about half the rows, drawn per row
    assert torch.equal(changed, aug.last_params["apply"])
    assert torch.equal(aug(x, params=aug.last_params), out)
    assert len({round(v, 6) for v in out[changed, 0, 0, 0].tolist()}) == int(changed.sum())


def test_augment_step_appends_copies_with_provenance():
    ds = sample_dataset("image")
    ctx = StepContext.from_seed(1, step=3, batch_size=7)
    out = Brighten().augment(ds, ctx, copies=2, rows=torch.tensor([0, 5, 35]))
    assert len(out) == len(ds) + 6
    new = out[len(ds):]
    assert new.origin.tolist() == [Origin.AUGMENTED] * 6
    assert new.step.tolist() == [3] * 6
    assert new.parent.tolist() == [0, 5, 35, 0, 5, 35]
    assert torch.equal(new.y, ds.y[new.parent])
    assert new.row_id.tolist() == [-1] * 6


def test_chain_applies_ops_in_order_and_composes_parents():
    from setforge import Augmenter

    class Halve(Augmenter):
        """Halves every value (does not commute with adding a brightness)."""

        name = "toy-halve"

        def _transform(self, x, y, params):
            return x * 0.5

    ds = sample_dataset("image")
    n = len(ds)
    chain = Chain([Brighten({"amount": 0.1, "p": 1.0}), Halve({"p": 1.0})])
    out = chain(ds.x, generator=torch.Generator().manual_seed(0))
    delta = chain.last_params["0"]["delta"].view(-1, 1, 1, 1)
    assert torch.allclose(out, (ds.x + delta).clamp(0, 1) * 0.5)  # brighten first, then halve
    assert not torch.allclose(out, (ds.x * 0.5 + delta).clamp(0, 1))
    assert torch.equal(chain(ds.x, params=chain.last_params), out)
    grown = chain.augment(ds, StepContext.from_seed(0, step=1), copies=1)
    new = grown[n:]
    assert len(grown) == 2 * n and not torch.equal(new.x, ds.x)
    assert new.parent.tolist() == list(range(n)) and bool((new.step == 1).all())
    assert bool((new.origin == int(Origin.AUGMENTED)).all()) and torch.equal(new.y, ds.y)
    with pytest.raises(ConfigError, match="at least one"):
        Chain([])


def test_augmenter_output_is_checked():
    ds = sample_dataset("image")
    with pytest.raises(PluginError, match="toy-leaky"):
        Leaky().augment(ds, StepContext.from_seed(0), copies=1)


def test_resampler_traces_parents_to_real_rows():
    ds = sample_dataset("tabular")
    ctx = StepContext.from_seed(0, step=2)
    once = Duplicate().resample(ds, ctx)
    twice = Duplicate().resample(once, StepContext.from_seed(0, step=4))
    smallest_rows = (ds.y == 2).nonzero().flatten()
    new = twice[twice.origin == int(Origin.RESAMPLED)]
    assert len(new) == 2 * len(smallest_rows) + len(smallest_rows)
    assert set(new.parent.tolist()) == set(smallest_rows.tolist())  # copies of copies still name the real row
    assert sorted(new.step.tolist()) == [2] * 6 + [4] * 12


def test_modality_is_checked_with_the_components_name():
    with pytest.raises(DataError, match="toy-scale"):
        Scale().fit(sample_dataset("image"), StepContext.from_seed(0))


def test_preprocessor_inverse_and_state():
    ds = sample_dataset("tabular")
    pre = Scale().fit(ds, StepContext.from_seed(0))
    scaled = pre.transform(ds)
    assert float(scaled.x.abs().max()) == pytest.approx(1.0)
    assert torch.allclose(pre.inverse(scaled).x, ds.x)
    restored = Scale().load_state_dict(pre.state_dict())
    assert torch.equal(restored.transform(ds).x, scaled.x)
    with pytest.raises(PluginError, match="before fit"):
        Scale().transform(ds)


def test_generator_samples_in_batches_and_round_trips(tmp_path):
    ds = sample_dataset("image")
    ctx = StepContext.from_seed(0, step=5, batch_size=4)
    gen = ClassMean().fit(ds, ctx)
    out = gen.sample(torch.tensor([2] * 10), ctx)
    assert len(out) == 10 and out.y.tolist() == [2] * 10
    assert out.origin.tolist() == [Origin.GENERATED] * 10 and out.parent.tolist() == [-1] * 10
    path = gen.save(tmp_path / "gen.pt")
    loaded = ClassMean({"checkpoint": str(path)}).fit(ds, StepContext.from_seed(0))
    assert torch.equal(loaded.means, gen.means)
    with pytest.raises(DataError, match="labels"):
        gen.sample(torch.tensor([3]), ctx)
    other = Dataset(x=ds.x, y=ds.y, classes=("a", "b", "c"), modality="image")
    with pytest.raises(DataError, match="fitted on classes"):
        ClassMean({"checkpoint": str(path)}).fit(other, StepContext.from_seed(0))
    larger = Dataset(x=torch.nn.functional.interpolate(ds.x, scale_factor=2.0), y=ds.y, classes=ds.classes,
                     modality="image")
    with pytest.raises(DataError, match=r"fitted on image rows of shape \(1, 8, 8\); the data has image rows of "
                                        r"shape \(1, 16, 16\)"):
        ClassMean({"checkpoint": str(path)}).fit(larger, StepContext.from_seed(0))


def test_a_generator_checkpoint_names_the_columns_it_was_fitted_on(tmp_path):
    ds = sample_dataset("tabular")
    path = ClassMean().fit(ds, StepContext.from_seed(0)).save(tmp_path / "gen.pt")
    names = list(ds.features.names)
    renamed = ds.replace(features=ds.features.__class__(names=tuple(reversed(names))))
    with pytest.raises(DataError, match="columns " + ", ".join(names)):
        ClassMean({"checkpoint": str(path)}).fit(renamed, StepContext.from_seed(0))
    assert ClassMean({"checkpoint": str(path)}).fit(ds, StepContext.from_seed(0)).fitted


def test_evaluator_files_measures_under_its_name():
    ds = sample_dataset("tabular")
    metrics = RowCount().evaluate(EvalContext.from_seed(0, ds))
    assert metrics.get("toy-row-count/rows").value == len(ds)
    assert metrics.to_dict()["measures"] == {"toy-row-count": {"rows": {"value": 36.0, "n": 36}}}
