"""kid: unbiased polynomial-kernel MMD between real and new rows over random subsets."""

from __future__ import annotations

import numpy as np
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
    params = {"subsets": 1, "subset_size": 10_000, "per_class": False, "match_classes": False}
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


def test_small_groups_get_the_unbiased_estimate_with_a_bootstrap_interval_or_are_refused():
    train, test = real_split("breast-cancer")
    ectx = lambda: context(train, [noisy_copies(train, torch.arange(30), 0.1, Origin.AUGMENTED)], test)  # noqa: E731
    small = KernelDistance({"min_rows": 40}).evaluate(ectx()).get("kid/augmented/overall")
    assert small.n == 30 and small.estimator == "kid-unbiased-bootstrap-class-weighted"
    assert small.interval[0] < small.value < small.interval[1]
    metrics = KernelDistance({"min_rows": 40, "small_sample": False}).evaluate(ectx())
    assert "30 augmented rows" in metrics.skipped["kid"]["augmented/overall"]


def test_new_rows_with_exact_class_counts_get_an_unbiased_class_weighted_estimate():
    # Real and new rows from the same two-class mixture (shares 0.3 / 0.7); the new rows come with exact
    # class counts, as target: balance and SMOTE make them. Pooling their pairs under-weights same-class
    # pairs: the pooled estimate is off by -s0 s1 MMD²(P0, P1) / (n - 1) (about -0.8 here); the
    # class-weighted one is not.
    from setforge.plugins.evaluate._stats import kid, polynomial_kernel

    generator = np.random.default_rng(0)
    means = (np.zeros(4), np.full(4, 2.0))

    def rows(n0: int, n1: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([generator.normal(means[0], 1, (n0, 4)), generator.normal(means[1], 1, (n1, 4))])
        return torch.tensor(x), torch.tensor(np.r_[np.zeros(n0, int), np.ones(n1, int)])

    shares = torch.tensor([0.3, 0.7])
    weighted, pooled = [], []
    for trial in range(200):
        (real, real_y), (new, new_y) = rows(60, 15), rows(12, 28)
        draws = {"subsets": 3, "subset_size": 40, "strata1": real_y, "shares": shares}
        weighted.append(kid(real, new, generator=torch.Generator().manual_seed(trial), strata2=new_y, **draws).mean)
        pooled.append(kid(real, new, generator=torch.Generator().manual_seed(trial), **draws).mean)
    weighted, pooled = np.array(weighted), np.array(pooled)
    assert abs(weighted.mean()) < 3 * weighted.std() / np.sqrt(len(weighted))
    big, _ = rows(4000, 4000)
    mean_kernel = lambda a, b: float(polynomial_kernel(a, b).mean())  # noqa: E731
    between = mean_kernel(big[:2000], big[2000:4000]) + mean_kernel(big[4000:6000], big[6000:]) \
        - 2 * mean_kernel(big[:2000], big[4000:6000])
    bias = -0.3 * 0.7 * between / 39
    gap = pooled - weighted  # (paired: the same rows and subsets, so the spread is the estimators' own)
    assert abs(gap.mean() - bias) < 3 * gap.std() / np.sqrt(len(gap)) + 0.05 * abs(bias), (gap.mean(), bias)


def test_the_class_weighted_mmd_matches_a_pair_by_pair_reference():
    from setforge.plugins.evaluate._stats import _class_mmd2, polynomial_kernel

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=generator, dtype=torch.float64), torch.randn(6, 3, generator=generator,
                                                                                 dtype=torch.float64)
    x_class, y_class, shares = [0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0.4, 0.6]
    k = lambda a, b: float(polynomial_kernel(a[None], b[None])[0, 0])  # noqa: E731

    def mean(a, a_class, b, b_class, c, d, same):
        values = [k(a[i], b[j]) for i in range(len(a)) for j in range(len(b))
                  if a_class[i] == c and b_class[j] == d and not (same and i == j)]
        return sum(values) / len(values)

    expected = sum(shares[c] * shares[d] * (mean(x, x_class, x, x_class, c, d, True) + mean(y, y_class, y, y_class, c, d, True)
                                            - 2 * mean(x, x_class, y, y_class, c, d, False))
                   for c in (0, 1) for d in (0, 1))
    onehot = lambda classes: torch.nn.functional.one_hot(torch.tensor(classes)).double()  # noqa: E731
    got = _class_mmd2(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y), onehot(x_class),
                      torch.tensor(shares, dtype=torch.float64), torch.ones(7, dtype=torch.float64),
                      torch.ones(6, dtype=torch.float64), onehot(y_class))
    assert float(got) == pytest.approx(expected, rel=1e-12)
