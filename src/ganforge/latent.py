"""Seeded latents and the images a generator makes from them: the sampling logic every command shares.

Seed s always gives the same z, in any batch, so an image can be made again from its seed alone
(with the same truncation).
"""

import torch
from torch import nn

from ganforge.errors import UserError

TRUNCATION_BOUND = 2.0  # BigGAN's released samplers: truncnorm(-2, 2) x truncation


def check_truncation(truncation: float) -> None:
    """--truncation must be in (0, 1]: 1 is the plain normal, smaller trades variety for fidelity."""
    if not 0 < truncation <= 1:
        raise UserError(f"--truncation: must be in (0, 1] (1: no truncation), got {truncation}")


def seeded_latent(seed: int, latent_dim: int, truncation: float = 1.0) -> torch.Tensor:
    """z for one seed: N(0, I), or with `truncation` < 1 the truncation trick in BigGAN's form.

    Truncated, every component is drawn from the standard normal restricted to [-2, 2] (a
    component outside is drawn again from the same seeded generator, as BigGAN resamples values
    above its threshold) and then scaled by `truncation`: z stays near the mode of the prior,
    where the generator was trained most, so samples are cleaner and less varied (Brock et al.
    2019). 1.0 is no truncation at all, the plain normal every other command draws.
    """
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(latent_dim, generator=generator)
    if truncation == 1:
        return z
    outside = z.abs() > TRUNCATION_BOUND
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > TRUNCATION_BOUND
    return z * truncation


def latents(seeds: list[int], latent_dim: int, truncation: float = 1.0) -> torch.Tensor:
    """One z per seed, each drawn from its own generator: seed s gives the same z in any batch."""
    return torch.stack([seeded_latent(s, latent_dim, truncation) for s in seeds])


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: keeps |z| near the prior's shell, unlike a straight line."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return (1 - t) * a + t * b
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def balanced_labels(n: int, model: dict) -> torch.Tensor | None:
    """Classes 0, 1, ..., K-1, 0, 1, ... for `n` images of a conditional model; None for an unconditional one."""
    return torch.arange(n) % model["num_classes"] if model.get("num_classes") else None


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
    """Images for latents `z` (and, for a class-conditional generator, classes `labels`)."""
    device = next(generator.parameters()).device
    if getattr(generator, "num_classes", 0):
        if labels is None:
            raise ValueError("a class-conditional generator needs labels")
        return torch.cat([generator(zc.to(device), yc.to(device)).float().cpu()
                          for zc, yc in zip(z.split(batch_size), labels.split(batch_size))])
    if labels is not None:
        raise ValueError("an unconditional generator takes no labels")
    return torch.cat([generator(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)])
