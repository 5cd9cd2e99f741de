"""Unpaired translation (CycleGAN, Zhu et al. 2017): G_AB and G_BA learn to map each collection onto the other.

A batch is a batch of A crops (the trainer's data order) and as many B crops drawn at random
(seeded by the step), as the reference's unaligned loader draws B. The losses are the paper's:
each generator's adversarial loss against the other domain's discriminator (`--loss`, LSGAN by
default for this task), the cycle loss `--cycle-weight` x (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|),
and the identity loss `--identity-weight` x `--cycle-weight` x (|G_AB(b) - b| + |G_BA(a) - a|),
which keeps colours where nothing needs to change. Each discriminator sees real images of its
domain against fakes drawn through a pool of the last `--pool-size` fakes. Every stabiliser of
`adversarial.py` (R1, DiffAugment, ADA, other losses) applies to both discriminators.
"""

import torch
from torch import nn

from ganforge.adversarial import AdversarialObjective
from ganforge.imageio import make_grid, uint8_to_float
from ganforge.nets.translate import CycleDiscriminators, CycleGenerators, build_cycle_generators
from ganforge.tasks.generation import AdversarialThroughout

PREVIEW_IMAGES = 4


def flipped(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2 (the reference's only augmentation beside cropping)."""
    flip = torch.rand(images.shape[0], generator=rng) < 0.5
    return torch.where(flip[:, None, None, None].to(images.device), images.flip(-1), images)


class TranslateTask(AdversarialThroughout):
    """Batches of (A crops, B crops), two generators and two discriminators, adversarial + cycle + identity losses."""

    def __init__(self, cfg, images_a: torch.Tensor, images_b: torch.Tensor):
        """`images_a`, `images_b`: uint8 (N, 3, S, S) crops of the two collections, of the same size S."""
        self.cfg, self.images_b = cfg, images_b
        resolution = images_a.shape[-1]
        self.model = {"task": "translate", "width": cfg.width, "blocks": cfg.blocks, "resolution": resolution,
                      "data": cfg.data, "data_b": cfg.data_b, "max_images": cfg.max_images}
        self.nets = {"generator": build_cycle_generators(self.model),
                     "discriminator": CycleDiscriminators(cfg.width, cfg.pool_size, resolution)}
        self.adversarial_objective = AdversarialObjective.from_config(cfg)
        # CycleGAN's G loss is MSE(D(G(a)), 1), twice `losses.lsgan_generator_loss` (Mao et al.'s ½): doubled, the
        # cycle and identity weights keep the paper's balance against it.
        self.adversarial_scale = 2.0 if cfg.loss == "lsgan" else 1.0
        pick_a = torch.linspace(0, len(images_a) - 1, PREVIEW_IMAGES).round().long()
        pick_b = torch.linspace(0, len(images_b) - 1, PREVIEW_IMAGES).round().long()
        self.preview = {"a": uint8_to_float(images_a[pick_a]), "b": uint8_to_float(images_b[pick_b])}

    def make_batch(self, real: torch.Tensor, rng: torch.Generator) -> dict[str, torch.Tensor]:
        pick = torch.randint(len(self.images_b), (real.shape[0],), generator=rng)
        real_b = uint8_to_float(self.images_b[pick].to(real.device))
        return {"a": flipped(real, rng).contiguous(memory_format=torch.channels_last),
                "b": flipped(real_b, rng).contiguous(memory_format=torch.channels_last)}

    def generate(self, generator: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return generator(batch["a"], batch["b"], identity=self.cfg.identity_weight > 0)

    def discriminator_loss(self, discriminator: nn.Module, batch: dict, fake: dict, step: int):
        """D_A: real A against pooled G_BA(b); D_B: real B against pooled G_AB(a). Their losses are added."""
        pools = discriminator.module if hasattr(discriminator, "module") else discriminator  # under DDP
        loss_a, stats_a = self.adversarial_objective.discriminator_loss(
            lambda x: discriminator(x, "a"), batch["a"], pools.pool_a.query(fake["fake_a"]), step)
        loss_b, stats_b = self.adversarial_objective.discriminator_loss(
            lambda x: discriminator(x, "b"), batch["b"], pools.pool_b.query(fake["fake_b"]), step)
        return loss_a + loss_b, {**{f"{k}_a": v for k, v in stats_a.items()}, **{f"{k}_b": v for k, v in stats_b.items()}}

    def discriminator_penalty(self, discriminator: nn.Module, batch: dict, step: int):
        """R1 of D_A on real A plus R1 of D_B on real B, when due."""
        loss_a, stats_a = self.adversarial_objective.r1_loss(lambda x: discriminator(x, "a"), batch["a"], step)
        loss_b, stats_b = self.adversarial_objective.r1_loss(lambda x: discriminator(x, "b"), batch["b"], step)
        if loss_a is None:
            return None, {}
        return loss_a + loss_b, {"r1_a": stats_a["r1"], "r1_b": stats_b["r1"]}

    def generator_loss(self, discriminator: nn.Module, batch: dict, fake: dict, step: int):
        a, b = batch["a"].float(), batch["b"].float()
        objective = self.adversarial_objective
        adversarial = self.adversarial_scale * (objective.generator_loss(lambda x: discriminator(x, "b"), fake["fake_b"])
                                                + objective.generator_loss(lambda x: discriminator(x, "a"), fake["fake_a"]))
        cycle = (fake["rec_a"].float() - a).abs().mean() + (fake["rec_b"].float() - b).abs().mean()
        loss = adversarial + self.cfg.cycle_weight * cycle
        stats = {"loss_g_adv": adversarial.detach(), "cycle": cycle.detach()}
        if "idt_a" in fake:
            identity = (fake["idt_b"].float() - b).abs().mean() + (fake["idt_a"].float() - a).abs().mean()
            loss = loss + self.cfg.identity_weight * self.cfg.cycle_weight * identity
            stats["identity"] = identity.detach()
        return loss, stats

    def preview_inputs(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        return self.preview

    @torch.no_grad()
    def preview_grid(self, generator: CycleGenerators, inputs: dict) -> torch.Tensor:
        """One row per image: a | G_AB(a) | G_BA(G_AB(a)) | b | G_BA(b) | G_AB(G_BA(b))."""
        device = next(generator.parameters()).device
        out = {k: v.float().cpu() for k, v in generator(inputs["a"].to(device), inputs["b"].to(device), False).items()}
        a, b = inputs["a"].cpu(), inputs["b"].cpu()
        rows = [torch.stack([a[i], out["fake_b"][i], out["rec_a"][i], b[i], out["fake_a"][i], out["rec_b"][i]])
                for i in range(len(a))]
        return make_grid(torch.cat(rows), nrow=6)
