"""Adversarial losses as plain functions of discriminator logits.

Each entry of ADVERSARIAL_LOSSES is a pair (discriminator_loss, generator_loss); adding a loss
means adding a pair here, and the trainer does not change.
"""

from typing import Callable

import torch
import torch.nn.functional as F

LossPair = tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def bce_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = -[log D(x) + log(1 - D(G(z)))], averaged over the batch.

    With D = sigmoid(logit): -log D(x) = softplus(-l_real) and -log(1 - D(G(z))) = softplus(l_fake),
    which never takes the log of a rounded-to-zero probability.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def bce_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating L_G = -log D(G(z)) = softplus(-l_fake), averaged over the batch."""
    return F.softplus(-fake_logits).mean()


ADVERSARIAL_LOSSES: dict[str, LossPair] = {
    "bce": (bce_discriminator_loss, bce_generator_loss),
}
