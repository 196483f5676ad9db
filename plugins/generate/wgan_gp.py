"""``wgan-gp``: a class-conditional Wasserstein GAN with gradient penalty (Gulrajani et al., 2017)
for images of any size from 8x8 to 128x128.

The networks are ``dcgan``'s (the same generator; the discriminator, here a critic, keeps its
projection head, Miyato & Koyama 2018, but has no batch norm, since the gradient penalty is per
row). The critic minimises ``D(fake) - D(real) + 10 * (||grad D(x_hat)|| - 1)^2`` at random
interpolates of real and fake rows, with 5 critic updates per generator update, Adam with betas
(0, 0.9) as in the paper (learning rate 2e-4, twice the paper's: at 1e-4 it is far from
converged within a CPU budget), and ``steps: auto`` giving it 250 generator steps per class. Training is the shared loop in ``setforge.plugins.generate._gan_training``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from setforge.context import StepContext

from ._gan_training import GanObjective, WassersteinGradientPenalty
from .dcgan import ConvGan

__all__ = ["WGANGP"]


class WGANGP(ConvGan):
    """Class-conditional WGAN-GP for images (8x8 to 128x128, any channels): projection critic without batch norm."""

    name = "wgan-gp"
    testing_params: ClassVar[Mapping[str, Any]] = {"steps": 3, "batch_size": 16, "width": 8, "latent_dim": 8,
                                                   "embedding_dim": 4, "grid_every": 0, "critic_steps": 2}

    class Params(ConvGan.Params):
        """WGAN-GP params (the paper's defaults); the training ones are the shared loop's."""

        beta1: float = Field(0.0, ge=0.0, lt=1.0, description="Adam beta1 (0 in the WGAN-GP paper)")
        beta2: float = Field(0.9, ge=0.0, lt=1.0, description="Adam beta2 (0.9 in the WGAN-GP paper)")
        lr_generator: float = Field(2e-4, gt=0.0, description="Adam learning rate of the generator (the paper's "
                                                              "1e-4 learns too slowly for a CPU budget)")
        lr_discriminator: float = Field(2e-4, gt=0.0, description="Adam learning rate of the critic")
        critic_steps: int = Field(5, ge=1, le=100, description="critic updates (each on a fresh real batch) "
                                                               "per generator update")
        gradient_penalty: float = Field(10.0, ge=0.0, description="weight lambda of the gradient penalty")
        discriminator_norm: Literal["none", "spectral"] = Field(
            "none", description="normalisation in the critic: none (the paper's), or spectral (spectral norm of "
                                "every weight); never batch norm, which the per-row gradient penalty forbids")
        drift: float = Field(1e-3, ge=0.0, description="weight of the drift term D(real)^2 that keeps the critic's "
                                                       "scores near 0 (Karras et al., 2018; 0 turns it off)")

    def _objective(self, ctx: StepContext) -> GanObjective:
        p = self.params
        return WassersteinGradientPenalty(ctx.rng.torch, p.gradient_penalty, p.critic_steps, p.drift)
