"""The conformance kit passes good components and names what is wrong with bad ones."""

import pytest
import torch
from pydantic import BaseModel

from setforge import Augmenter, ConformanceError, Resampler
from setforge.testing import check_component, sample_dataset
from tests.core.toys import Brighten, ClassMean, Duplicate, Leaky, RowCount, Scale


@pytest.mark.parametrize("cls", [Brighten, ClassMean, Duplicate, RowCount, Scale])
def test_good_components_pass(cls):
    check_component(cls)


def test_sample_data_is_real_and_imbalanced():
    images, table = sample_dataset("image"), sample_dataset("tabular")
    assert images.shape == (1, 8, 8) and images.class_counts() == [18, 12, 6]
    assert table.shape == (13,) and table.features.names[0] == "alcohol"


def test_a_leaky_augmenter_is_named():
    with pytest.raises(ConformanceError, match="toy-leaky.*outside \\[0, 1\\]"):
        check_component(Leaky)


class GlobalRandom(Augmenter):
    """Uses torch's global RNG instead of the generator it is given."""

    name = "global-random"

    def _transform(self, x, y, params):
        return (x + 0.1 * torch.rand(x.shape)).clamp(0, 1)


class NoDocstringNoDefaults(Resampler):
    name = "Bad_Name"

    class Params(BaseModel):
        k: int

    def _resample(self, ds, ctx):
        return torch.arange(len(ds)), ds.x[:0], ds.y[:0], ds.y[:0]


NoDocstringNoDefaults.__doc__ = None


class DropsRealRows(Resampler):
    """Claims its new rows are copies but returns the wrong shape."""

    name = "wrong-shape"
    modalities = ("tabular",)

    def _resample(self, ds, ctx):
        return torch.arange(len(ds)), ds.x[:2, :3], ds.y[:2], torch.tensor([0, 1])


def test_global_randomness_is_caught():
    with pytest.raises(ConformanceError, match="same seed gave different augmented rows"):
        check_component(GlobalRandom)


def test_static_contract_failures_are_all_listed():
    with pytest.raises(ConformanceError) as error:
        check_component(NoDocstringNoDefaults)
    text = str(error.value)
    assert "not kebab-case" in text and "no docstring" in text and "extra keys" in text
    assert "Params() with defaults only" in text


def test_wrong_shapes_are_named():
    with pytest.raises(ConformanceError, match="wrong-shape.*new_x"):
        check_component(DropsRealRows)
