"""wgan-gp: the gradient penalty against a critic whose gradient is known, a critic without batch
norm, the paper's optimiser betas (twice its learning rate), its default budget, shapes, determinism and save/load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from setforge import ConfigError, StepContext
from setforge.plugins.generate._gan_training import WassersteinGradientPenalty
from setforge.plugins.generate.wgan_gp import WGANGP
from setforge.testing import check_component, sample_dataset

TINY = {"steps": 4, "batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4, "grid_every": 0,
        "critic_steps": 2}


class _Linear(nn.Module):
    """D(x, y) = <w, x> + b_y: its gradient with respect to x is w for every row."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor([0.5, -0.5]))

    def forward(self, x, labels):
        return x.flatten(1) @ self.w.flatten() + self.b[labels]


def test_gradient_penalty_matches_the_closed_form_for_a_linear_critic():
    w = torch.full((1, 2, 2), 0.25)  # ||w|| = 0.5, so the penalty is (0.5 - 1)^2 = 0.25 at every interpolate
    critic = _Linear(w)
    real, fake = torch.rand(6, 1, 2, 2), torch.rand(6, 1, 2, 2)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    objective = WassersteinGradientPenalty(torch.Generator().manual_seed(0), penalty=10.0, drift=0.0)
    losses = objective.discriminator_loss(critic, real, fake, labels, labels)
    distance = (critic(real, labels).mean() - critic(fake, labels).mean()).item()
    assert abs(losses["penalty"].item() - 0.25) < 1e-6
    assert abs(losses["wasserstein"].item() - distance) < 1e-6
    assert abs(losses["discriminator"].item() - (-distance + 10 * 0.25)) < 1e-5
    # the penalty's own gradient reaches the critic's weights (create_graph): d/dw 10 (||w|| - 1)^2
    losses["discriminator"].backward()
    grad_from_penalty = 10 * 2 * (0.5 - 1) * w.flatten() / 0.5
    grad_from_distance = -(real.flatten(1).mean(0) - fake.flatten(1).mean(0))
    assert torch.allclose(critic.w.grad.flatten(), grad_from_penalty + grad_from_distance, atol=1e-5)
    assert objective.generator_loss(critic, fake, labels)["generator"].item() == -critic(fake, labels).mean().item()


def test_gradient_penalty_is_taken_at_random_interpolates_of_real_and_fake_rows():
    # A quadratic critic D(x) = ||x||^2 / 2 has gradient x, so the penalty depends on where it is
    # taken (a linear critic's does not: an audit's mutation taking it at the real rows passed).
    class Quadratic(nn.Module):
        def forward(self, x, labels):
            return 0.5 * x.flatten(1).pow(2).sum(1)

    real, fake = torch.rand(6, 1, 2, 2) + 1.0, torch.rand(6, 1, 2, 2) * 0.1
    labels = torch.zeros(6, dtype=torch.int64)
    objective = WassersteinGradientPenalty(torch.Generator().manual_seed(3), penalty=10.0, drift=0.0)
    penalty = objective.discriminator_loss(Quadratic(), real, fake, labels, labels)["penalty"].item()
    u = torch.rand((6, 1, 1, 1), generator=torch.Generator().manual_seed(3))  # the weights it draws, replayed
    at = fake + u * (real - fake)
    reference = ((at.flatten(1).norm(dim=1) - 1.0) ** 2).mean().item()
    assert penalty == pytest.approx(reference, rel=1e-5)
    at_real = ((real.flatten(1).norm(dim=1) - 1.0) ** 2).mean().item()
    at_fake = ((fake.flatten(1).norm(dim=1) - 1.0) ** 2).mean().item()
    assert abs(penalty - at_real) > 0.1 and abs(penalty - at_fake) > 0.1


def test_the_critic_has_no_batch_norm_and_the_defaults_are_the_papers_betas():
    generator = WGANGP(TINY)
    generator.fit(sample_dataset("image"), StepContext.from_seed(0))
    critic = generator._build_discriminator(generator._architecture, "cpu")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    with pytest.raises(ConfigError, match="discriminator_norm"):
        WGANGP({"discriminator_norm": "batch"})  # the per-row gradient penalty forbids batch norm
    defaults = WGANGP.Params()
    assert (defaults.beta1, defaults.beta2, defaults.critic_steps, defaults.gradient_penalty) == (0.0, 0.9, 5, 10.0)
    assert set(generator.result.losses) >= {"discriminator", "generator", "wasserstein", "penalty"}


def test_the_default_budget_gives_wgan_gp_fewer_dearer_steps_per_class():
    from setforge.plugins.generate._gan_training import STEPS_PER_CLASS, WGAN_STEPS_PER_CLASS

    assert WGANGP.Params().steps == "auto" and WGAN_STEPS_PER_CLASS < STEPS_PER_CLASS
    assert (WGANGP.Params().lr_generator, WGANGP.Params().lr_discriminator) == (2e-4, 2e-4)
    ds = sample_dataset("image")  # 3 classes: 3 x 250 is below the 1000-step floor, so compare the rule
    generator = WGANGP({**{k: v for k, v in TINY.items() if k != "steps"}, "steps": "auto"})
    objective = generator._objective(StepContext.from_seed(0))
    assert objective.steps_per_class == WGAN_STEPS_PER_CLASS
    from setforge.plugins.generate._gan_training import training_budget
    import numpy as np

    budget = training_budget(generator.params, np.array([10] * 10), 1, 5, 10**6, ds.shape,
                             objective.steps_per_class)
    assert budget["steps"] == 10 * WGAN_STEPS_PER_CLASS and f"10 classes x {WGAN_STEPS_PER_CLASS}" in budget["rule"]


def test_fit_sample_shapes_range_and_save_load(tmp_path):
    ds = sample_dataset("image")
    generator = WGANGP(TINY)
    generator.fit(ds, StepContext.from_seed(0, workdir=tmp_path / "fit"))
    out = generator.sample([0, 1, 2, 2], StepContext.from_seed(3))
    assert out.x.shape == (4, *ds.shape) and 0 <= float(out.x.min()) and float(out.x.max()) <= 1
    path = generator.save(tmp_path / "generator.pt")
    again = WGANGP(TINY).load(path)
    assert torch.equal(again.sample([0, 1, 2, 2], StepContext.from_seed(3)).x, out.x)


def test_conformance():
    check_component(WGANGP)
