import numpy as np
import pytest
import torch

from setforge import Rng


def test_same_seed_and_key_give_the_same_streams():
    a, b = Rng(3, ("step", 1)), Rng(3, ("step", 1))
    assert torch.equal(torch.rand(5, generator=a.torch), torch.rand(5, generator=b.torch))
    assert np.array_equal(a.numpy.random(5), b.numpy.random(5))
    assert a.sk_seed() == b.sk_seed() == a.sk_seed()
    assert 0 <= a.sk_seed() < 2**31


def test_keys_and_seeds_separate_streams():
    draws = {key: torch.rand(3, generator=Rng(0, key).torch).tolist() for key in [(0,), (1,), ("fid",), ("kid",)]}
    assert len({tuple(v) for v in draws.values()}) == 4
    assert Rng(0, (1,)).sk_seed() != Rng(1, (1,)).sk_seed()


def test_spawn_extends_the_key():
    child = Rng(5, (2,)).spawn("x")
    assert child.key == (2, "x")
    assert torch.equal(torch.rand(2, generator=child.torch), torch.rand(2, generator=Rng(5, (2, "x")).torch))


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        Rng(seed)
