"""Unconditional generation: G sees noise z and should produce images like the data."""

import torch
from torch import nn

from ganforge.adversarial import AdversarialObjective
from ganforge.nets.brief import BRIEF_RESOLUTION
from ganforge.nets.build import build_discriminator, build_generator, depth_entry
from ganforge.nets.dcgan import resolution_plan
from ganforge.errors import UserError
from ganforge.imageio import make_grid


def check_resolution(arch: str, resolution: int) -> None:
    if arch == "seed" and resolution != BRIEF_RESOLUTION:
        raise UserError(f"--resolution: --arch seed makes {BRIEF_RESOLUTION}x{BRIEF_RESOLUTION} images (the brief's generator), not {resolution}")
    if arch == "dcgan":
        resolution_plan(resolution)


class AdversarialThroughout:
    """For tasks with one phase, adversarial from the first step, and one exported model."""

    phase_ends: frozenset[int] = frozenset()
    model: dict

    def adversarial(self, step: int) -> bool:
        return True

    def exports(self, step: int) -> dict[str, dict]:
        """The model folder(s) a checkpoint writes, with their config."""
        return {"model": self.model}


class GenerationTask(AdversarialThroughout):
    """Batches of (real images, noise), the DCGAN pair, and the adversarial losses."""

    def __init__(self, cfg, channels: int, resolution: int, steps_per_epoch: float = 1.0):
        check_resolution(cfg.arch, resolution)
        self.steps_per_epoch = steps_per_epoch  # top-k training's schedule counts epochs
        self.model = {
            "task": "generation",
            "arch": cfg.arch,
            "resolution": resolution,
            "channels": channels,
            "latent_dim": cfg.latent_dim,
            "width": cfg.width,
            **depth_entry(cfg.depth),
        }
        self.nets = {"generator": build_generator(self.model),
                     "discriminator": build_discriminator(self.model, cfg.spectral_norm, cfg.discriminator_norm)}
        self.adversarial_objective = AdversarialObjective.from_config(cfg)

    def make_batch(self, real: torch.Tensor, rng: torch.Generator, public_fakes: int | None = None) -> dict:
        """Real images and G's noise: one z per real image, or `public_fakes` of them (differentially private
        training, where the number of real images drawn is itself private)."""
        z = torch.randn(public_fakes or real.shape[0], self.model["latent_dim"], generator=rng).to(real.device)
        return {"real": real, "z": z}

    def generate(self, generator: nn.Module, batch: dict) -> torch.Tensor:
        return generator(batch["z"])

    def standing_inputs(self, n: int, rng: torch.Generator) -> dict:
        """`n` of G's inputs as training draws them, to measure the EMA generator's batch-norm statistics on."""
        return {"z": torch.randn(n, self.model["latent_dim"], generator=rng)}

    def discriminator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        """L_D on real images and detached fakes; also returns D(x) and D(G(z)) for the log."""
        return self.adversarial_objective.discriminator_loss(discriminator, batch["real"], fake, step)

    def discriminator_penalty(self, discriminator: nn.Module, batch: dict, step: int):
        """The lazy R1 penalty on the real images when due (None otherwise), backpropagated apart from L_D."""
        return self.adversarial_objective.r1_loss(discriminator, batch["real"], step)

    def discriminator_real_losses(self, discriminator: nn.Module, batch: dict) -> torch.Tensor:
        """D's loss on each real image (DP-SGD clips each one's gradient)."""
        return self.adversarial_objective.real_losses(discriminator, batch["real"])

    def discriminator_fake_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor):
        """D's loss on the fakes, which read no data; and D(G(z)) for the log."""
        return self.adversarial_objective.fake_loss(discriminator, fake)

    def generator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        return self.adversarial_objective.generator_loss(discriminator, fake, step / self.steps_per_epoch), {}

    def preview_inputs(self, n: int, seed: int) -> torch.Tensor:
        """The fixed noise behind every sample grid of a run, so grids are comparable over time."""
        return torch.randn(n, self.model["latent_dim"], generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def preview_grid(self, generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
        images = generator(z).float()
        return make_grid(images, nrow=int(len(images) ** 0.5 + 0.5))
