"""Unconditional generation: G sees noise z and should produce images like the data."""

import torch
from torch import nn

from ganforge.losses import ADVERSARIAL_LOSSES
from ganforge.nets.brief import BRIEF_RESOLUTION, BriefDiscriminator, BriefGenerator
from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator, resolution_plan
from ganforge.errors import UserError


def build_generator(model: dict) -> nn.Module:
    """The generator described by a saved model's config."""
    if model["arch"] == "seed":
        return BriefGenerator(model["channels"], model["latent_dim"])
    return DCGANGenerator(model["resolution"], model["channels"], model["latent_dim"], model["width"])


def build_discriminator(model: dict) -> nn.Module:
    if model["arch"] == "seed":
        return BriefDiscriminator(model["channels"])
    return DCGANDiscriminator(model["resolution"], model["channels"], model["width"])


def check_resolution(arch: str, resolution: int) -> None:
    if arch == "seed" and resolution != BRIEF_RESOLUTION:
        raise UserError(f"--resolution: --arch seed makes {BRIEF_RESOLUTION}x{BRIEF_RESOLUTION} images (the brief's generator), not {resolution}")
    if arch == "dcgan":
        resolution_plan(resolution)


class GenerationTask:
    """Batches of (real images, noise), the DCGAN pair, and the adversarial losses."""

    def __init__(self, cfg, channels: int, resolution: int):
        check_resolution(cfg.arch, resolution)
        self.model = {
            "task": "generation",
            "arch": cfg.arch,
            "resolution": resolution,
            "channels": channels,
            "latent_dim": cfg.latent_dim,
            "width": cfg.width,
        }
        self.nets = {"generator": build_generator(self.model), "discriminator": build_discriminator(self.model)}
        self.discriminator_loss_fn, self.generator_loss_fn = ADVERSARIAL_LOSSES[cfg.loss]

    def make_batch(self, real: torch.Tensor, rng: torch.Generator) -> dict[str, torch.Tensor]:
        z = torch.randn(real.shape[0], self.model["latent_dim"], generator=rng).to(real.device)
        return {"real": real, "z": z}

    def generate(self, generator: nn.Module, batch: dict) -> torch.Tensor:
        return generator(batch["z"])

    def discriminator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor):
        """L_D on real images and detached fakes; also returns D(x) and D(G(z)) for the log."""
        real_logits = discriminator(batch["real"])
        fake_logits = discriminator(fake)
        loss = self.discriminator_loss_fn(real_logits.float(), fake_logits.float())
        stats = {"d_real": torch.sigmoid(real_logits.detach().float()).mean(),
                 "d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}
        return loss, stats

    def generator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor):
        return self.generator_loss_fn(discriminator(fake).float()), {}

    def preview_inputs(self, n: int, seed: int) -> torch.Tensor:
        """The fixed noise behind every sample grid of a run, so grids are comparable over time."""
        return torch.randn(n, self.model["latent_dim"], generator=torch.Generator().manual_seed(seed))
