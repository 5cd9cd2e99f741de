"""Class-conditional generation: G sees noise z and a class y and should produce an image of that class.

The fakes of a step are asked for the classes of that step's real images, so D compares real
and generated images of the same classes and fakes follow the data's class balance. Every
adversarial loss and stabiliser of AdversarialObjective (bce, hinge, lsgan, wgan-gp, R1,
DiffAugment) applies unchanged: the task hands it D closed over the batch's classes.

D conditions by projection (Miyato & Koyama 2018) or, with `--cond-d acgan`, by an auxiliary
classifier (Odena et al. 2017): then both networks also minimise the cross-entropy of D's class
prediction, weighted by `--ac-weight`: D on real images, G on generated ones. (Odena et al. also
train D's classifier on generated images; in a 1.5-minute mnist5k run that let G and D agree on
class codes no one could see: the fakes' class loss fell to 0.03 while the grid's rows showed no class.)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.adversarial import AdversarialObjective
from ganforge.errors import UserError
from ganforge.imageio import make_grid
from ganforge.nets.build import build_discriminator, build_generator, depth_entry
from ganforge.tasks.generation import AdversarialThroughout, check_resolution


def check_labels(labels: torch.Tensor, class_names: list[str], source: str) -> None:
    """A conditional GAN needs a class for every image and at least two classes."""
    unlabelled = int((labels < 0).sum())
    if len(labels) and unlabelled == len(labels):
        raise UserError(f"--conditional: {source} has no labels; put each class's images in a sub-folder named after it")
    if unlabelled:
        raise UserError(f"--conditional: {unlabelled} image(s) of {source} lie outside a class sub-folder; "
                        "move each into the sub-folder of its class")
    if len(class_names) < 2:
        what = f"one class ({class_names[0]!r})" if class_names else "no class"
        raise UserError(f"--conditional: {source} has {what}; a conditional GAN needs at least two class sub-folders")


class ConditionalGenerationTask(AdversarialThroughout):
    """Batches of (real images, their classes, noise); the conditional DCGAN pair; adversarial (+ AC) losses."""

    def __init__(self, cfg, channels: int, resolution: int, class_names: list[str], source: str = "",
                 steps_per_epoch: float = 1.0):
        check_resolution(cfg.arch, resolution)
        if cfg.arch != "dcgan":
            raise UserError(f"--conditional: works with --arch dcgan, not --arch {cfg.arch}")
        self.model = {
            "task": "generation", "arch": cfg.arch, "resolution": resolution, "channels": channels,
            "latent_dim": cfg.latent_dim, "width": cfg.width, **depth_entry(cfg.depth),
            "num_classes": len(class_names), "class_names": list(class_names),
            "data": source, "max_images": cfg.max_images,
        }  # fmt: skip
        self.nets = {"generator": build_generator(self.model),
                     "discriminator": build_discriminator(self.model, cfg.spectral_norm, cfg.discriminator_norm,
                                                          cfg.cond_d)}
        self.ac_weight = cfg.ac_weight if cfg.cond_d == "acgan" else 0.0
        self.adversarial_objective = AdversarialObjective.from_config(cfg)
        self.grid_columns = max(1, math.ceil(cfg.grid_size / len(class_names)))
        self.steps_per_epoch = steps_per_epoch  # top-k training's schedule counts epochs

    def make_batch(self, real: torch.Tensor, rng: torch.Generator, labels: torch.Tensor | None = None,
                   public_fakes: int | None = None) -> dict:
        """Real images and their classes (`real_labels`), and G's noise and classes (`labels`): the real images'
        classes, or with `public_fakes` that many classes drawn uniformly (differentially private training)."""
        if labels is None:
            raise ValueError("a conditional task needs the labels of its real images")
        labels = labels.to(real.device)
        n = public_fakes or real.shape[0]
        z = torch.randn(n, self.model["latent_dim"], generator=rng).to(real.device)
        asked = (labels if public_fakes is None
                 else torch.randint(self.model["num_classes"], (n,), generator=rng).to(real.device))
        return {"real": real, "real_labels": labels, "labels": asked, "z": z}

    def generate(self, generator: nn.Module, batch: dict) -> torch.Tensor:
        return generator(batch["z"], batch["labels"])

    def standing_inputs(self, n: int, rng: torch.Generator) -> dict:
        """`n` noises and classes drawn uniformly, to measure the EMA generator's batch-norm statistics on."""
        return {"z": torch.randn(n, self.model["latent_dim"], generator=rng),
                "labels": torch.randint(self.model["num_classes"], (n,), generator=rng)}

    def _critic(self, discriminator: nn.Module, labels: torch.Tensor, class_logits: list):
        """D closed over the batch's classes; AC-GAN class logits are kept in call order (real, then fake)."""
        if not self.ac_weight:
            return lambda x: discriminator(x, labels)

        def critic(x):
            logits, classes = discriminator(x, labels, with_classes=True)
            class_logits.append(classes)
            return logits

        return critic

    def discriminator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        """L_D of a batch whose fakes were asked for the real images' classes (one critic serves both)."""
        class_logits: list[torch.Tensor] = []
        critic = self._critic(discriminator, batch["labels"], class_logits)
        loss, stats = self.adversarial_objective.discriminator_loss(critic, batch["real"], fake, step)
        if self.ac_weight:
            # AdversarialObjective scores real images first, then fakes (a gradient penalty's mixes come after).
            ac_real = F.cross_entropy(class_logits[0].float(), batch["labels"])
            loss = loss + self.ac_weight * ac_real
            stats = {**stats, "ac_real": ac_real.detach()}
        return loss, stats

    def discriminator_penalty(self, discriminator: nn.Module, batch: dict, step: int):
        """R1 on D's real/fake logit for the real images and their classes (the class head is not penalised)."""
        return self.adversarial_objective.r1_loss(self._critic(discriminator, batch["labels"], []), batch["real"], step)

    def discriminator_real_losses(self, discriminator: nn.Module, batch: dict) -> torch.Tensor:
        """D's loss on each real image and its class (DP-SGD clips the gradient of each (x, y) record)."""
        class_logits: list[torch.Tensor] = []
        labels = batch["real_labels"]
        losses = self.adversarial_objective.real_losses(self._critic(discriminator, labels, class_logits), batch["real"])
        if self.ac_weight:
            losses = losses + self.ac_weight * F.cross_entropy(class_logits[0].float(), labels, reduction="none")
        return losses

    def discriminator_fake_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor):
        """D's loss on the fakes, of the classes G was asked for (AC-GAN's class loss is on real images only)."""
        return self.adversarial_objective.fake_loss(lambda x: discriminator(x, batch["labels"]), fake)

    def generator_loss(self, discriminator: nn.Module, batch: dict, fake: torch.Tensor, step: int):
        class_logits: list[torch.Tensor] = []
        loss = self.adversarial_objective.generator_loss(self._critic(discriminator, batch["labels"], class_logits), fake,
                                                         step / self.steps_per_epoch)
        if not self.ac_weight:
            return loss, {}
        ac = F.cross_entropy(class_logits[0].float(), batch["labels"])
        return loss + self.ac_weight * ac, {"ac_g": ac.detach()}

    def preview_inputs(self, n: int, seed: int) -> dict:
        """A class-by-row grid: `grid_columns` fixed noises, each repeated for every class."""
        cols, classes = self.grid_columns, self.model["num_classes"]
        z = torch.randn(cols, self.model["latent_dim"], generator=torch.Generator().manual_seed(seed))
        return {"z": z.repeat(classes, 1), "labels": torch.arange(classes).repeat_interleave(cols)}

    @torch.no_grad()
    def preview_grid(self, generator: nn.Module, inputs: dict) -> torch.Tensor:
        """One row per class, the same noise down each column."""
        return make_grid(self.generate(generator, inputs).float(), nrow=self.grid_columns)
