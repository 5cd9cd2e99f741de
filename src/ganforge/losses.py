"""Adversarial losses and penalties as plain functions of discriminator logits.

Each entry of ADVERSARIAL_LOSSES is a pair (discriminator_loss, generator_loss); adding a loss
means adding a pair here, and the trainer does not change. Every discriminator loss is a mean of
one term per real image plus a mean of one term per fake: DISCRIMINATOR_TERMS holds them per
image, which differentially private training needs (each real image's gradient is clipped alone).
"""

from typing import Callable

import torch
import torch.nn.functional as F

LossPair = tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def bce_real_term(real_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) per image: softplus(-l_real), which never takes the log of a rounded-to-zero probability."""
    return F.softplus(-real_logits)


def bce_fake_term(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - D(G(z))) per image: softplus(l_fake)."""
    return F.softplus(fake_logits)


def bce_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = -[log D(x) + log(1 - D(G(z)))], averaged over the batch (D = sigmoid(logit))."""
    return bce_real_term(real_logits).mean() + bce_fake_term(fake_logits).mean()


def bce_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating L_G = -log D(G(z)) = softplus(-l_fake), averaged over the batch."""
    return F.softplus(-fake_logits).mean()


def hinge_real_term(real_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits)


def hinge_fake_term(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 + fake_logits)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Geometric GAN / SAGAN: E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return hinge_real_term(real_logits).mean() + hinge_fake_term(fake_logits).mean()


def linear_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]: the generator loss of hinge and Wasserstein GANs."""
    return -fake_logits.mean()


def lsgan_real_term(real_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (real_logits - 1).pow(2)


def lsgan_fake_term(fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * fake_logits.pow(2)


def lsgan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least squares GAN (Mao et al. 2017, a=0, b=c=1): ½E[(D(x)-1)²] + ½E[D(G(z))²]."""
    return lsgan_real_term(real_logits).mean() + lsgan_fake_term(fake_logits).mean()


def lsgan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake_logits - 1).pow(2).mean()


def wasserstein_real_term(real_logits: torch.Tensor) -> torch.Tensor:
    return -real_logits


def wasserstein_fake_term(fake_logits: torch.Tensor) -> torch.Tensor:
    return fake_logits


def wasserstein_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The critic's E[D(G(z))] - E[D(x)]; needs a Lipschitz constraint (gradient penalty)."""
    return wasserstein_real_term(real_logits).mean() + wasserstein_fake_term(fake_logits).mean()


ADVERSARIAL_LOSSES: dict[str, LossPair] = {
    "bce": (bce_discriminator_loss, bce_generator_loss),
    "hinge": (hinge_discriminator_loss, linear_generator_loss),
    "lsgan": (lsgan_discriminator_loss, lsgan_generator_loss),
    "wgan-gp": (wasserstein_discriminator_loss, linear_generator_loss),
}

# (term per real image, term per fake image) of each discriminator loss above: L_D = mean(real) + mean(fake).
DISCRIMINATOR_TERMS = {
    "bce": (bce_real_term, bce_fake_term),
    "hinge": (hinge_real_term, hinge_fake_term),
    "lsgan": (lsgan_real_term, lsgan_fake_term),
    "wgan-gp": (wasserstein_real_term, wasserstein_fake_term),
}


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     rng: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||∇D(x̂)||₂ - 1)²] on random points between real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=rng).to(real.device, real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(per_image(critic(mixed).float()).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def per_image(logits: torch.Tensor) -> torch.Tensor:
    """One score per image: a patch discriminator's map of logits is averaged.

    Penalties on ∇D(x) must see one D(x) per image: the gradient of a *sum* of K patch logits
    is up to K times larger, and the penalty K² times stronger, enough to keep D from learning.
    """
    return logits.flatten(1).mean(dim=1) if logits.dim() > 1 else logits


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||∇D(x)||²] on real images; `real` must require grad."""
    (grad,) = torch.autograd.grad(per_image(real_logits.float()).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()
