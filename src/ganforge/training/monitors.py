"""What the trainer measures while it trains: distribution and collapse checks for generators, held-out
PSNR/SSIM for super-resolution, hole PSNR/SSIM/L1 for inpainting. Each monitor is called with the sampling generator every
`--eval-every` steps on rank 0 and returns a record for metrics.jsonl.
"""

import logging

import numpy as np
import torch

from ganforge.classical_inpaint import classical_fill
from ganforge.data import ImageSet
from ganforge.data.cache import ImageCache
from ganforge.data.degrade import bicubic_upsample, lr_hr_pair
from ganforge.data.training_set import in_memory, read_images
from ganforge.imageio import float_to_uint8, uint8_to_float
from ganforge.latent import balanced_labels, generate, latents
from ganforge.metrics import CollapseMonitor, class_histogram_stats, diversity, fid, kid
from ganforge.metrics.domain import domain_features
from ganforge.metrics.inpaint import hole_scores
from ganforge.metrics.superres import mean_scores, score
from ganforge.tasks.inpaint import composite, seeded_masks
from ganforge.tiling import upscale_tensor

log = logging.getLogger("ganforge")
MONITOR_CROP = 192  # side of the held-out crops scored during training (a multiple of 2 and 4)
# Real images a streamed training set lends the checks: more than the default --eval-samples 1000, and read
# into memory once, at the first check (375 MiB at 256x256 RGB).
MONITOR_IMAGES = 2000
MONITOR_PHOTOS = 32  # held-out images of a cache that super-resolution's check scores (a folder's: all of them)


class TrainingMonitor:
    """Domain-feature FID/KID, diversity and class coverage of the generator every few steps.

    Samples are rounded to 8 bits before their features are taken, as `ganforge evaluate` does,
    so that the numbers match its numbers and real images (uint8) are not told apart by precision.
    Warns (in the log and in metrics.jsonl) when the collapse monitor sees diversity fall or
    classes vanish.
    """

    def __init__(self, train: ImageSet | ImageCache, num_samples: int, seed: int, latent_dim: int, num_classes: int = 0):
        self.train, self.num_samples, self.seed, self.latent_dim = train, min(num_samples, len(train)), seed, latent_dim
        self.model = {"num_classes": num_classes}  # a conditional generator is asked for every class in turn
        self.extractor = None  # built at the first check, so short runs never pay for it

    def _prepare(self) -> None:
        train = in_memory(self.train, max(MONITOR_IMAGES, self.num_samples))
        with torch.enable_grad():  # called from the no-grad __call__, but training the network needs gradients
            self.extractor = domain_features(train)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[: self.num_samples]
        self.real_features = self.extractor.features(train.images[pick])
        self.monitor = CollapseMonitor(reference=diversity(self.real_features))

    def __call__(self, generator: torch.nn.Module) -> dict:
        if self.extractor is None:
            self._prepare()
        with torch.no_grad():
            return self._check(generator)

    def _check(self, generator: torch.nn.Module) -> dict:
        was_training = generator.training
        generator.eval()
        seeds = range(10**6 + self.seed, 10**6 + self.seed + self.num_samples)  # apart from `sample`'s usual seeds
        fake = generate(generator, latents(list(seeds), self.latent_dim), balanced_labels(self.num_samples, self.model))
        generator.train(was_training)
        fake = float_to_uint8(fake)
        f_fake = self.extractor.features(fake)
        kid_scores = kid(f_fake, self.real_features)
        record = {"event": "eval", "fid_domain": fid(f_fake, self.real_features), "kid_domain": kid_scores["kid"],
                  "kid_domain_std": kid_scores["kid_std"], "kid_subset_size": kid_scores["kid_subset_size"],
                  "kid_subsets": kid_scores["kid_subsets"], "diversity": diversity(f_fake)}
        probs = self.extractor.predict_proba(fake) if self.extractor.is_classifier else None
        if probs is not None:
            record.update(class_histogram_stats(probs, probs.shape[1]))
        warning = self.monitor.update(f_fake, probs)
        if warning:
            log.warning(warning)
            record["collapse_warning"] = warning
        return record


class SuperResMonitor:
    """PSNR/SSIM (Y) of the model and of bicubic on fixed centre crops of the held-out photos."""

    def __init__(self, heldout: list[np.ndarray], scale: int, degradation: str):
        self.scale = scale
        self.pairs = []
        for i, photo in enumerate(heldout):
            h, w = photo.shape[1:]
            side = min(MONITOR_CROP, h, w) // scale * scale
            y, x = (h - side) // 2, (w - side) // 2
            self.pairs.append(lr_hr_pair(photo[:, y : y + side, x : x + side], scale, degradation, seed=i))
        self.bicubic = mean_scores([score(bicubic_upsample(lr, scale), hr, scale) for lr, hr in self.pairs])

    @torch.no_grad()
    def __call__(self, generator: torch.nn.Module) -> dict:
        was_training = generator.training
        generator.eval()
        model = mean_scores([score(upscale_tensor(generator, lr), hr, self.scale) for lr, hr in self.pairs])
        generator.train(was_training)
        return {"event": "eval", **model, "psnr_y_bicubic": self.bicubic["psnr_y"], "ssim_y_bicubic": self.bicubic["ssim_y"]}


class InpaintMonitor:
    """Hole PSNR/SSIM/L1 of the model and of the biharmonic fill on held-out images with fixed masks."""

    def __init__(self, heldout, masks: str, seed: int, count: int = 32):  # heldout: uint8, in memory or a cache's crops
        pick = torch.linspace(0, len(heldout) - 1, min(count, len(heldout))).round().long()
        images = read_images(heldout, pick)
        self.images = uint8_to_float(images)
        self.masks = seeded_masks(masks, len(pick), *heldout.shape[-2:], torch.Generator().manual_seed(seed))
        filled = [classical_fill("biharmonic", image.numpy().transpose(1, 2, 0), mask[0].numpy().astype(bool))
                  for image, mask in zip(images, self.masks)]
        biharmonic = uint8_to_float(torch.from_numpy(np.stack(filled).transpose(0, 3, 1, 2)))
        self.baseline = {f"{k}_biharmonic": v for k, v in hole_scores(biharmonic, self.images, self.masks).items()}

    @torch.no_grad()
    def __call__(self, generator: torch.nn.Module) -> dict:
        was_training = generator.training
        generator.eval()
        device = next(generator.parameters()).device
        prediction = generator(self.images.to(device), self.masks.to(device)).float().cpu()
        generator.train(was_training)
        filled = uint8_to_float(float_to_uint8(composite(prediction, self.images, self.masks)))  # as a saved file
        return {"event": "eval", **hole_scores(filled, self.images, self.masks), **self.baseline}

