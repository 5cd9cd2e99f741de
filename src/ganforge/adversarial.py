"""The adversarial half that every task shares: a loss pair, DiffAugment and gradient penalties.

A task hands over a `critic` (D, or D closed over a condition) and the real and generated images;
everything that stabilises GAN training on the D side lives here, once.
"""

import contextlib
import math
from typing import Callable

import torch

from ganforge.diffaugment import AdaptiveProbability, diff_augment, parse_policy
from ganforge.losses import ADVERSARIAL_LOSSES, DISCRIMINATOR_TERMS, gradient_penalty, r1_penalty

Critic = Callable[[torch.Tensor], torch.Tensor]


def eager_if(condition: bool):
    """Run compiled networks eagerly inside: gradient penalties need the double backward that compiled graphs lack."""
    return torch.compiler.set_stance("force_eager") if condition else contextlib.nullcontext()


class AdversarialObjective:
    def __init__(self, loss: str = "bce", augment: list[str] | None = None, r1_gamma: float = 0.0,
                 r1_every: int = 16, gp_weight: float = 10.0, augment_target: float = 0.0, augment_p: float = 1.0,
                 topk: float = 1.0):
        self.loss = loss
        self.d_loss_fn, self.g_loss_fn = ADVERSARIAL_LOSSES[loss]
        self.real_term, self.fake_term = DISCRIMINATOR_TERMS[loss]
        self.augment = augment or []
        self.augment_p = AdaptiveProbability(augment_target if self.augment else 0.0, fixed_p=augment_p)
        self.r1_gamma, self.r1_every, self.gp_weight = r1_gamma, r1_every, gp_weight
        self.topk = topk

    @classmethod
    def from_config(cls, cfg) -> "AdversarialObjective":
        """The objective a run's `--loss`, `--augment*`, `--r1-*`, `--gp-weight` and `--topk` describe."""
        return cls(cfg.loss, parse_policy(cfg.augment), cfg.r1_gamma, cfg.r1_every, cfg.gp_weight,
                   cfg.augment_target, cfg.augment_p, cfg.topk)

    def discriminator_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, step: int):
        """L_D (+ gradient penalty for WGAN-GP); stats for the log. The lazy R1 penalty is `r1_loss`'s."""
        p = self.augment_p.p
        real, fake = diff_augment(real, self.augment, p), diff_augment(fake, self.augment, p)
        with eager_if(self.loss == "wgan-gp"):
            return self._discriminator_loss(critic, real, fake, p)

    def _discriminator_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, p: float):
        real_logits, fake_logits = critic(real).float(), critic(fake).float()
        loss = self.d_loss_fn(real_logits, fake_logits)
        stats = {"d_real": torch.sigmoid(real_logits.detach()).mean(), "d_fake": torch.sigmoid(fake_logits.detach()).mean()}
        if self.augment_p.target > 0:
            self.augment_p.update(real_logits)
            stats["augment_p"] = torch.tensor(p)
        if self.loss == "wgan-gp":
            penalty = gradient_penalty(critic, real, fake)
            loss = loss + self.gp_weight * penalty
            stats["gp"] = penalty.detach()
        return loss, stats

    def r1_loss(self, critic: Critic, real: torch.Tensor, step: int) -> tuple[torch.Tensor | None, dict]:
        """Lazy R1 (StyleGAN2): every `r1_every`-th step, 0.5 gamma k E[||grad D(x)||^2] on the real images as D sees
        them (augmented), scaled by the interval k; None on other steps.

        The trainer backpropagates it on its own, before D's loss is computed, as StyleGAN2-ADA's separate
        regularisation pass does: its double-backward graph and the loss's graphs of reals and fakes are never held
        at once. That costs one more forward of D on the reals every k steps (about 1% of the time at k = 16) and
        cut the default step's peak memory at 64x64 from 706-731 MB to 674-682 (bf16 on an AMD EPYC, where the
        pytorch/examples step takes 680-716; benchmarks/train_speed.py). Without augmentation D gets the gradient
        one fused backward would give; with DiffAugment the penalty sees its own draw, as in StyleGAN2-ADA. The
        extra forward also moves D's batch-norm statistics (and spectral norm's vectors) once more on R1 steps.
        """
        if not (self.r1_gamma > 0 and step % self.r1_every == 0):
            return None, {}
        real = diff_augment(real, self.augment, self.augment_p.p).detach().requires_grad_(True)
        with eager_if(True):
            penalty = r1_penalty(critic(real).float(), real)
        return 0.5 * self.r1_gamma * self.r1_every * penalty, {"r1": penalty.detach()}

    def real_losses(self, critic: Critic, real: torch.Tensor) -> torch.Tensor:
        """D's loss on each real image (augmented as in `discriminator_loss`), one per image, not averaged.

        For differentially private training, which clips each image's gradient alone; the penalties
        and ADA, which need more than one image's loss, are refused in that mode (config.py).
        """
        return self.real_term(critic(diff_augment(real, self.augment, self.augment_p.p)).float())

    def fake_loss(self, critic: Critic, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """D's loss on generated images, averaged, and D(G(z)) for the log: the half of L_D that reads no data."""
        fake_logits = critic(diff_augment(fake, self.augment, self.augment_p.p)).float()
        return self.fake_term(fake_logits).mean(), {"d_fake": torch.sigmoid(fake_logits.detach()).mean()}

    def generator_loss(self, critic: Critic, fake: torch.Tensor, epoch: float = 0.0) -> torch.Tensor:
        """L_G; with `--topk`, only over the share of the fakes that D rates most real (`kept_share`)."""
        logits = critic(diff_augment(fake, self.augment, self.augment_p.p)).float()
        keep = self.kept_share(epoch)
        if keep < 1:
            logits = logits.topk(max(1, math.ceil(keep * logits.numel()))).values
        return self.g_loss_fn(logits)

    def kept_share(self, epoch: float) -> float:
        """Top-k training (Sinha et al. 2020): G learns from every fake at first, then from a share that shrinks
        0.99x per epoch down to `topk`. The paper's argument: late in training the worst fakes' gradients point
        G away from the data more than towards it. (On mnist5k it gained nothing measurable: README, "Quickstart".)"""
        return 1.0 if self.topk >= 1 else max(self.topk, 0.99 ** epoch)
