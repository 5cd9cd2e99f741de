"""Inpainting: G sees an image with holes and the mask, and should produce the full image.

A batch is real images (or photo crops) and a fresh seeded mask for each, from `--masks`. The
losses are those of Context Encoders and DeepFill v2, at CPU scale: L1 to the original on the
hole (`--hole-weight`) and on the known pixels (`--valid-weight`, which keeps G's output
consistent with the context it is pasted into), plus `--adversarial-weight` x the adversarial
loss of an SN-PatchGAN that judges the composite (known pixels kept, hole from G) together with
the mask, plus `--feature-matching-weight` x the L1 between D's features of the composite and
of the original (pix2pixHD, LaMa: it rewards the original's texture where L1 on pixels rewards its
blur), plus `--texture-weight` x the error of the hole's Gram matrices in the `--features` network
(built-in random features by default: texture statistics, which do not reward blur either), plus
ESRGAN's VGG19 perceptual loss when `--perceptual-weights` names a local file.
Every loss and stabiliser of `adversarial.py` applies, with D closed over the batch's masks.
"""

import numpy as np
import torch
from torch import nn

from ganforge.adversarial import AdversarialObjective
from ganforge.data.masks import mask_batch
from ganforge.data.training_set import read_images
from ganforge.imageio import make_grid, uint8_to_float
from ganforge.nets.inpaint import InpaintDiscriminator, build_inpaint_generator
from ganforge.nets.style import load_style_features
from ganforge.nets.vgg import PerceptualLoss
from ganforge.style_losses import texture_loss
from ganforge.tasks.generation import AdversarialThroughout

PREVIEW_IMAGES = 6


def composite(prediction: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The known pixels of `image` with the hole (mask 1) taken from `prediction`."""
    return mask * prediction + (1 - mask) * image


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels where `weight` is 1 (0 when there are none)."""
    weight = weight.expand_as(prediction)
    return (prediction - target).abs().mul(weight).sum() / weight.sum().clamp(min=1)


def seeded_masks(kind: str, n: int, height: int, width: int, rng: torch.Generator) -> torch.Tensor:
    """`n` masks (n, 1, H, W) as floats, 1 on the hole, drawn from a numpy generator seeded by `rng`."""
    seed = int(torch.randint(0, 2**62, (1,), generator=rng))
    return torch.from_numpy(mask_batch(kind, n, height, width, np.random.default_rng(seed))).float()[:, None]


def feature_matching(discriminator: nn.Module, filled: torch.Tensor, real: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Mean over D's layers of the L1 between its activations on the filled image and on the original.

    The original's activations are targets (no gradient); D is frozen during G's step, so only G
    learns from this term.
    """
    with torch.no_grad():
        targets = discriminator.features(real, mask)
    maps = discriminator.features(filled, mask)
    return torch.stack([(m.float() - t.float()).abs().mean() for m, t in zip(maps, targets)]).mean()


class InpaintTask(AdversarialThroughout):
    """Batches of (image, mask), the FFC encoder-decoder and SN-PatchGAN, L1 + adversarial (+ perceptual) losses."""

    def __init__(self, cfg, images):  # uint8 images or crops, in memory or from a cache
        channels, resolution = images.shape[1], images.shape[-1]
        downsamples = 2 if resolution < 64 else 3  # 28 px digits reach 7x7, photo crops 1/8 of their side
        self.cfg = cfg
        self.model = {"task": "inpaint", "channels": channels, "resolution": resolution, "width": cfg.width,
                      "downsamples": downsamples, "blocks": cfg.blocks, "net": cfg.inpaint_net,
                      "prefill": "smooth", "upsample": "resize", "masks": cfg.masks,
                      "data": cfg.data, "max_images": cfg.max_images}
        self.nets = {"generator": build_inpaint_generator(self.model),
                     "discriminator": InpaintDiscriminator(channels, cfg.width)}
        self.adversarial_objective = AdversarialObjective.from_config(cfg)
        # Fixed, not trained, so not one of `nets`: it is neither checkpointed nor exported.
        self.perceptual = PerceptualLoss(cfg.perceptual_weights) if cfg.perceptual_weights else None
        self.texture_features = load_style_features(cfg.features) if cfg.texture_weight else None
        self.images = images
        pick = torch.linspace(0, len(images) - 1, PREVIEW_IMAGES).round().long()
        self.preview_images = uint8_to_float(read_images(images, pick))

    def make_batch(self, real: torch.Tensor, rng: torch.Generator) -> dict[str, torch.Tensor]:
        flip = torch.rand(real.shape[0], generator=rng) < 0.5
        real = torch.where(flip[:, None, None, None].to(real.device), real.flip(-1), real)
        mask = seeded_masks(self.cfg.masks, real.shape[0], real.shape[-2], real.shape[-1], rng).to(real.device)
        return {"real": real.contiguous(memory_format=torch.channels_last), "mask": mask}

    def generate(self, generator: nn.Module, batch: dict) -> torch.Tensor:
        return generator(batch["real"], batch["mask"])

    def standing_inputs(self, n: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """`n` training images with masks, as training draws them, to measure the EMA generator's batch-norm
        statistics on."""
        pick = torch.randint(len(self.images), (n,), generator=rng)
        return self.make_batch(uint8_to_float(read_images(self.images, pick)), rng)

    def _critic(self, discriminator: nn.Module, mask: torch.Tensor):
        return lambda x: discriminator(x, mask)

    def discriminator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        """D tells originals from composites, each shown with the mask of its hole."""
        real, mask = batch["real"], batch["mask"]
        return self.adversarial_objective.discriminator_loss(self._critic(discriminator, mask), real,
                                                             composite(fake, real, mask), step)

    def discriminator_penalty(self, discriminator: nn.Module, batch: dict, step: int):
        return self.adversarial_objective.r1_loss(self._critic(discriminator, batch["mask"]), batch["real"], step)

    def generator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        real, mask = batch["real"], batch["mask"]
        fake32, real32 = fake.float(), real.float()
        hole, valid = masked_l1(fake32, real32, mask), masked_l1(fake32, real32, 1 - mask)
        filled = composite(fake, real, mask)
        adversarial = self.adversarial_objective.generator_loss(self._critic(discriminator, mask), filled)
        loss = self.cfg.hole_weight * hole + self.cfg.valid_weight * valid + self.cfg.adversarial_weight * adversarial
        stats = {"l1_hole": hole.detach(), "l1_valid": valid.detach(), "loss_g_adv": adversarial.detach()}
        if self.cfg.feature_matching_weight:
            matching = feature_matching(discriminator, filled, real, mask)
            loss, stats["feature_matching"] = loss + self.cfg.feature_matching_weight * matching, matching.detach()
        if filled.shape[1] == 1:  # the feature networks see RGB
            filled, real = filled.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1)
        if self.texture_features is not None:
            features = self.texture_features.to(fake.device)
            with torch.autocast(fake.device.type, enabled=False):  # Gram sums over every position overflow fp16
                with torch.no_grad():
                    targets = features(real.float())
                texture = texture_loss(features(filled.float()), targets, mask, features.style_layers)
            loss, stats["texture"] = loss + self.cfg.texture_weight * texture, texture.detach()
        if self.perceptual is not None:
            perceptual = self.perceptual.to(fake.device)(filled, real)
            loss, stats["perceptual"] = loss + self.cfg.perceptual_weight * perceptual, perceptual.detach()
        return loss, stats

    def preview_inputs(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        h, w = self.preview_images.shape[-2:]
        masks = seeded_masks(self.cfg.masks, len(self.preview_images), h, w, torch.Generator().manual_seed(seed))
        return {"real": self.preview_images, "mask": masks}

    @torch.no_grad()
    def preview_grid(self, generator: nn.Module, inputs: dict) -> torch.Tensor:
        """One row per image: the input with its hole (grey) | the filled image | the original."""
        real, mask = inputs["real"], inputs["mask"]
        device = next(generator.parameters()).device
        filled = composite(generator(real.to(device), mask.to(device)).float().cpu(), real, mask)
        rows = [torch.stack([real[i] * (1 - mask[i]), filled[i], real[i]]) for i in range(len(real))]
        return make_grid(torch.cat(rows), nrow=3)

