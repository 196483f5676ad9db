"""kid: unbiased polynomial-kernel MMD between real and new rows over random subsets."""

from __future__ import annotations

import pytest
import torch

from setforge import Origin
from setforge.plugins.evaluate.kid import KernelDistance
from setforge.testing import check_component
from tests.evaluate._distribution_data import context, derived, flipped, noisy_copies, real_split
from tests.evaluate.test_stats import torch_fidelity_polynomial_mmd


def test_conforms():
    check_component(KernelDistance)


def test_one_subset_of_every_row_equals_the_reference_mmd():
    # With as many new rows as real rows and subset_size above both, the one subset is a
    # permutation of each whole set, and the unbiased MMD does not depend on the order.
    train, test = real_split("breast-cancer")
    generated = noisy_copies(train, torch.arange(len(train)), 0.5, Origin.GENERATED)
    params = {"subsets": 1, "subset_size": 10_000, "per_class": False}
    measure = KernelDistance(params).evaluate(context(train, [generated], test)).get("kid/generated/overall")
    x = train.x.double()
    mean, std = x.mean(0), x.std(0)
    real = ((train.x.double() - mean) / std).float().double().numpy()
    new = ((generated.x.double() - mean) / std).float().double().numpy()
    assert measure.value == pytest.approx(torch_fidelity_polynomial_mmd(new, real), rel=1e-6)
    assert measure.std == 0.0 and measure.n == len(train)


def test_digits_generated_and_augmented_rows():
    train, test = real_split("digits")
    generated = noisy_copies(train, torch.arange(600), 0.05, Origin.GENERATED)
    augmented = flipped(train, torch.arange(600, 900))
    params = {"feature_space": "raw", "subsets": 20, "subset_size": 200, "per_class": False}
    ectx = context(train, [generated, augmented], test)
    metrics = KernelDistance(params).evaluate(ectx)
    gen, aug = metrics.get("kid/generated/overall"), metrics.get("kid/augmented/overall")
    assert gen.n == 600 and aug.n == 300
    assert gen.value < aug.value and gen.std > 0 and aug.std > 0
    assert aug.value > 0
    # Seeded: the same context seed gives the same numbers, another seed other subsets.
    assert KernelDistance(params).evaluate(context(train, [generated, augmented], test)).to_dict() == metrics.to_dict()
    other = KernelDistance(params).evaluate(context(train, [generated, augmented], test, seed=1))
    assert other.get("kid/generated/overall").value != gen.value


def test_breast_cancer_copies_are_near_zero_and_shifted_rows_are_not():
    train, test = real_split("breast-cancer")
    params = {"subsets": 30, "subset_size": 100, "min_rows": 30}
    same = KernelDistance(params).evaluate(context(train, [noisy_copies(train, torch.arange(300), 0.01,
                                                                        Origin.GENERATED)], test))
    rows = torch.arange(300)
    shifted = derived(train, train.x[rows] + train.x.std(dim=0), rows, Origin.GENERATED)  # one std up, every column
    far = KernelDistance(params).evaluate(context(train, [shifted], test))
    near, apart = same.get("kid/generated/overall"), far.get("kid/generated/overall")
    assert abs(near.value) < 3 * near.std + 1e-3
    assert far.get("kid/generated/by_class/benign").value > 0
    assert apart.value > 3 * apart.std and apart.value > 10 * max(abs(near.value), 1e-4)


def test_refuses_too_few_rows():
    train, test = real_split("breast-cancer")
    metrics = KernelDistance({"min_rows": 40}).evaluate(
        context(train, [noisy_copies(train, torch.arange(30), 0.1, Origin.AUGMENTED)], test))
    assert "30 augmented rows" in metrics.skipped["kid"]["augmented/overall"]
