"""Super-resolution: G sees a low-resolution image and should produce the high-resolution one.

Training runs in two phases, as SRGAN, ESRGAN and Real-ESRGAN do:
1. fidelity (`--fidelity-steps`): the pixel loss to the ground truth only (`--pixel-loss`: L1 as EDSR, or
   L2, the squared error PSNR measures, for a last fine-tune), no discriminator. It gives the
   PSNR-oriented model, exported to `model-fidelity/` when the phase ends;
2. adversarial fine-tuning: the pixel loss + `--adversarial-weight` x the adversarial loss of a patch
   discriminator (every loss and stabiliser of `adversarial.py` applies), + `--perceptual-weight`
   x ESRGAN's VGG19 perceptual loss when `--perceptual-weights` names a local VGG19 file. It
   gives the sharper "GAN" model in `model/`.

Inference on any size (`upscale_tensor`) cuts the input into tiles with a margin as wide as the
generator's receptive field, so the stitched result equals the untiled one and memory is
bounded by the tile size.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.adversarial import AdversarialObjective
from ganforge.data.degrade import bicubic_upsample, degrade
from ganforge.data.training_set import read_images
from ganforge.imageio import make_grid, uint8_to_float
from ganforge.nets.sr import PatchDiscriminator, build_sr_generator
from ganforge.nets.vgg import PerceptualLoss

PREVIEW_CROPS = 6
PIXEL_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}  # --pixel-loss


def random_dihedral(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Each image flipped and rotated by one of the 8 symmetries of the square: 8x the crops for free."""
    flips = torch.randint(0, 2, (x.shape[0],), generator=rng).bool()
    turns = torch.randint(0, 4, (x.shape[0],), generator=rng)
    x = torch.where(flips[:, None, None, None].to(x.device), x.flip(-1), x)
    return torch.stack([torch.rot90(image, int(k), dims=(-2, -1)) for image, k in zip(x, turns)])


class SuperResTask:
    """Batches of (high-resolution crop, its degraded low-resolution version), SRGenerator and a patch D."""

    def __init__(self, cfg, patches, fidelity_steps: int):  # patches: uint8 crops, in memory or from a cache
        self.cfg, self.scale, self.fidelity_steps = cfg, cfg.scale, fidelity_steps
        self.model = {"task": "superres", "scale": cfg.scale, "channels": 3, "width": cfg.width, "blocks": cfg.blocks,
                      "degradation": cfg.degradation}
        self.nets = {"generator": build_sr_generator(self.model),
                     "discriminator": PatchDiscriminator(3, cfg.width, spectral_norm=True)}
        self.adversarial_objective = AdversarialObjective.from_config(cfg)
        # Fixed, not trained, so not one of `nets`: it is neither checkpointed nor exported.
        self.perceptual = PerceptualLoss(cfg.perceptual_weights) if cfg.perceptual_weights else None
        pick = torch.linspace(0, len(patches) - 1, PREVIEW_CROPS).round().long()
        self.preview_hr = uint8_to_float(read_images(patches, pick))
        self.phase_ends = {fidelity_steps}  # the trainer checkpoints (and exports) when a phase ends

    def adversarial(self, step: int) -> bool:
        return step >= self.fidelity_steps

    def exports(self, step: int) -> dict[str, dict]:
        """Model folders to write at `step`: the fidelity model while (and when) its phase ends, then the GAN."""
        if step <= self.fidelity_steps:
            config = {**self.model, "variant": "fidelity", "steps": step}
            return {"model": config, "model-fidelity": config}
        provenance = {"init_generator": self.cfg.init_generator} if self.cfg.init_generator else {}
        return {"model": {**self.model, "variant": "gan", "steps": step, "fidelity_steps": self.fidelity_steps, **provenance}}

    def make_batch(self, real: torch.Tensor, rng: torch.Generator) -> dict[str, torch.Tensor]:
        hr = random_dihedral(real, rng).contiguous(memory_format=torch.channels_last)
        return {"real": hr, "lr": degrade(hr, self.scale, self.cfg.degradation, rng)}

    def generate(self, generator: nn.Module, batch: dict) -> torch.Tensor:
        return generator(batch["lr"])

    def discriminator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        return self.adversarial_objective.discriminator_loss(discriminator, batch["real"], fake, step)

    def discriminator_penalty(self, discriminator: nn.Module, batch: dict, step: int):
        return self.adversarial_objective.r1_loss(discriminator, batch["real"], step)

    def generator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        """The pixel loss (L1 or L2) to the ground truth, plus the adversarial (and perceptual) terms once the
        fidelity phase is over."""
        name = self.cfg.pixel_loss
        pixel = PIXEL_LOSSES[name](fake.float(), batch["real"].float())
        if not self.adversarial(step):
            return pixel, {name: pixel.detach()}
        adversarial = self.adversarial_objective.generator_loss(discriminator, fake)
        loss, stats = pixel + self.cfg.adversarial_weight * adversarial, {name: pixel.detach(), "loss_g_adv": adversarial.detach()}
        if self.perceptual is not None:
            perceptual = self.perceptual.to(fake.device)(fake, batch["real"])
            loss, stats["perceptual"] = loss + self.cfg.perceptual_weight * perceptual, perceptual.detach()
        return loss, stats

    def preview_inputs(self, n: int, seed: int) -> torch.Tensor:
        return degrade(self.preview_hr, self.scale, self.cfg.degradation, torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def preview_grid(self, generator: nn.Module, lr: torch.Tensor) -> torch.Tensor:
        """One row per crop: bicubic | model | ground truth."""
        sr = generator(lr.to(next(generator.parameters()).device)).float().cpu().clamp(-1, 1)
        rows = [torch.stack([bicubic_upsample(lr[i : i + 1].cpu(), self.scale)[0], sr[i], self.preview_hr[i]])
                for i in range(len(lr))]
        return make_grid(torch.cat(rows), nrow=3)
