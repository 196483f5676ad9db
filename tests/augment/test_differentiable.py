"""Gradients flow through every batched op that has them (DiffAugment / ADA train through augmentation).

Each check is ``torch.autograd.gradcheck`` on a small float64 batch with the drawn params held fixed,
so the numerical and the analytical Jacobian of one deterministic map are compared (gradcheck's
fast mode: both projected on random vectors, which any wrong entry of the Jacobian shows in). Inputs are kept
inside (0.1, 0.9) and the finite-difference step is 1e-6: a pixel would have to lie within 1e-6 of a
kink (a clamp, solarize's threshold, a hue wrap) for the two to disagree, which these seeded inputs
do not.
"""

from __future__ import annotations

import pytest
import torch

from setforge import create
from setforge.chain import Chain

OPS = [
    ("flip", {"p": 1.0}),
    ("flip", {"p": 1.0, "direction": "vertical"}),
    ("affine", {"degrees": 20, "translate": 0.2, "scale": (0.8, 1.2), "shear": 10}),
    ("affine", {"degrees": 20, "translate": 0.2, "fill": 0.5}),
    ("affine", {"degrees": 20, "interpolation": "nearest"}),
    ("resized-crop", {}),
    ("color", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}),
    ("grayscale", {"p": 1.0}),
    ("gaussian-blur", {"kernel_size": 3}),
    ("gaussian-noise", {}),
    ("erasing", {"scale": (0.1, 0.3)}),
    ("erasing", {"value": "random"}),
    ("sharpness", {"factor": (0.2, 2.0)}),
    ("solarize", {"threshold": (0.3, 0.7)}),
    ("autocontrast", {"p": 1.0}),
    ("invert", {"p": 1.0}),
]
#: Piecewise-constant maps: their gradient is zero almost everywhere (posterize) or not defined
#: (equalize's table is built from a histogram); docs/augmenters.md lists them.
NOT_DIFFERENTIABLE = ["posterize", "equalize"]


def _batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 3, 6, 7, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()


def _gradcheck(aug, x: torch.Tensor) -> None:
    params = aug.make_params(x.detach(), None, torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda t: aug(t, params=params), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name,params", OPS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPS)])
def test_gradcheck(name, params):
    _gradcheck(create("augment", name, params), _batch())


def test_gradcheck_with_rows_gated_off():
    aug = create("augment", "affine", {"degrees": 30, "p": 0.5})
    x = _batch()
    params = aug.make_params(x.detach(), None, torch.Generator().manual_seed(3))
    params["apply"] = torch.tensor([True, False, True])
    assert torch.autograd.gradcheck(lambda t: aug(t, params=params), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_through_a_fused_chain():
    chain = Chain([create("augment", "flip"), create("augment", "affine", {"translate": 0.2}),
                   create("augment", "color"), create("augment", "erasing", {"p": 0.5})])
    assert chain.runs[0] == [0, 1]  # flip and affine resample once
    _gradcheck(chain, _batch())


def test_the_differentiable_path_computes_what_the_fast_path_computes():
    # with requires_grad the ops take out-of-place paths; the numbers must not change
    x = _batch(2).detach().float()
    for name, params in OPS:
        aug = create("augment", name, params)
        drawn = aug.make_params(x, None, torch.Generator().manual_seed(4))
        with torch.no_grad():
            fast = aug(x, params=drawn)
        slow = aug(x.clone().requires_grad_(), params=drawn)
        assert slow.requires_grad, name
        torch.testing.assert_close(slow.detach(), fast, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", NOT_DIFFERENTIABLE)
def test_non_differentiable_ops_still_run_on_inputs_that_require_grad(name):
    x = _batch()
    out = create("augment", name, {"p": 1.0})(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    if out.requires_grad:
        (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        assert grad is None or float(grad.abs().max()) == 0.0


@pytest.mark.parametrize("name,param,params", [("affine", "angle", {"degrees": 20}),
                                               ("affine", "scale", {"scale": (0.8, 1.2)}),
                                               ("color", "brightness", {"brightness": 0.4}),
                                               ("color", "saturation", {"saturation": 0.4})])
def test_gradcheck_through_a_replayed_param(name, param, params):
    # (ADA-style learnt magnitudes: a param given as a tensor that requires grad gets its gradient)
    aug = create("augment", name, params)
    x = _batch().detach()
    drawn = aug.make_params(x, None, torch.Generator().manual_seed(2))

    def through(value: torch.Tensor) -> torch.Tensor:
        return aug(x, params={**drawn, param: value})

    value = drawn[param].to(torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(through, (value,), eps=1e-6, atol=1e-5)


def test_gradcheck_through_every_differentiable_policy_op():
    # (docs/augmenters.md: the policies' geometric and colour ops let gradients through) five rows,
    # three op slots: each geometric op, each colour op, solarize and invert, every row its own op
    from setforge.plugins.augment.policies import OPS

    slots = [["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"],
             ["Brightness", "Color", "Contrast", "Sharpness", "AutoContrast"],
             ["Solarize", "Invert", "Identity", "Rotate", "ShearX"]]
    op = torch.tensor([[OPS.index(name) for name in column] for column in zip(*slots)])
    magnitude = torch.tensor([[0.2, 0.3, 0.5], [-0.2, -0.3, 0.0], [2.0, 0.4, 0.0], [-1.0, -0.4, -12.0], [12.0, 0.3, 0.1]])
    params = {"op": op, "level": torch.zeros_like(op), "magnitude": magnitude, "apply": torch.ones(5, dtype=torch.bool)}
    aug = create("augment", "rand-augment", {"num_ops": 3, "interpolation": "bilinear"})
    x = (torch.rand(5, 3, 6, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.8 + 0.1)
    out = aug(x.requires_grad_(), params=params)
    assert out.requires_grad
    assert torch.autograd.gradcheck(lambda t: aug(t, params=params), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_through_aug_mix():
    aug = create("augment", "aug-mix", {"severity": 5})
    _gradcheck(aug, _batch())
