"""The fast style network (Johnson et al. 2016): G sees a photo crop and should produce it in the style of one image.

No discriminator and no adversarial step: G minimises the losses of `ganforge stylize`, with the
same balance (`style_losses.STYLE_WEIGHT`, `TV_WEIGHT`, each term divided by the mean square of
its targets, and the same penalty on pixels outside [-1, 1]), on the feature network of
`--features` (the built-in random one by default). The style image's Gram matrices are computed
once; the content targets are the crop's own features. The style image is resized so that its
longest side is `STYLE_SIDE`, the size `ganforge stylize` works at by default, so that the
strokes the network learns have the size the optimisation gives a 512-pixel photo (inference
runs at the photo's own size).
"""

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.imageio import make_grid, uint8_to_float
from ganforge.nets.fast_style import FastStyleNet, build_fast_style_net, style_noise, with_noise
from ganforge.nets.style import StyleFeatures
from ganforge.style_losses import (RANGE_WEIGHT, TV_WEIGHT, content_loss, content_weight, gram_matrix, out_of_range,
                                   style_layer_weights, style_loss, total_variation)

PREVIEW_CROPS = 6
STYLE_SIDE = 512
BLOCKS = 5  # residual blocks, as in Johnson et al.; with --width 64, 512x512 in well under a second on one CPU core
NOISE_CHANNELS = 3  # white noise beside the photo: what the network turns into strokes where the photo is flat
PREVIEW_NOISE_SEED = 0


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes: which style image a model learned, even after the file is renamed."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resize_longest(image: torch.Tensor, side: int) -> torch.Tensor:
    """(1, C, H, W) resized (antialiased bicubic) so that its longest side is `side`."""
    h, w = image.shape[-2:]
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


class StyleTask:
    """Batches of photo crops, the fast style network, content + style + total-variation losses; never adversarial."""

    phase_ends: frozenset[int] = frozenset()

    def __init__(self, cfg, patches: torch.Tensor, style: torch.Tensor, features: StyleFeatures):
        """`style`: the style image as uint8 (3, H, W); `features`: the frozen network the losses compare in."""
        self.cfg, self.features = cfg, features  # fixed, not trained, so not one of `nets`: never checkpointed
        self.model = {"task": "style", "width": cfg.width, "blocks": BLOCKS, "output": "residual",
                      "noise_channels": NOISE_CHANNELS, "style": Path(cfg.style).name,
                      "style_sha256": file_digest(cfg.style), "features": features.name, "strength": cfg.strength,
                      "style_side": STYLE_SIDE, "patch_size": cfg.patch_size, "data": cfg.data}
        self.nets = {"generator": build_fast_style_net(self.model)}
        with torch.no_grad():
            maps = features(resize_longest(uint8_to_float(style)[None].float(), STYLE_SIDE))
            self.grams = {layer: gram_matrix(maps[layer]) for layer in features.style_layers}
        self.style_weights = style_layer_weights(self.grams, features.style_layers, cfg.strength)
        pick = torch.linspace(0, len(patches) - 1, PREVIEW_CROPS).round().long()
        self.preview_photos = uint8_to_float(patches[pick])
        self.preview_noise = style_noise(self.preview_photos, NOISE_CHANNELS, torch.Generator().manual_seed(PREVIEW_NOISE_SEED))

    def adversarial(self, step: int) -> bool:
        return False

    def exports(self, step: int) -> dict[str, dict]:
        return {"model": {**self.model, "steps": step}}

    def make_batch(self, real: torch.Tensor, rng: torch.Generator) -> dict[str, torch.Tensor]:
        flip = torch.rand(real.shape[0], generator=rng) < 0.5
        real = torch.where(flip[:, None, None, None].to(real.device), real.flip(-1), real)
        noise = style_noise(real, self.model["noise_channels"], rng).to(real.device)
        return {"real": real.contiguous(memory_format=torch.channels_last), "noise": noise}

    def generate(self, generator: nn.Module, batch: dict) -> torch.Tensor:
        return generator(with_noise(batch["real"], batch["noise"]))

    def generator_loss(self, discriminator: None, batch: dict, fake: torch.Tensor, step: int):
        """Content (relative to the crop's own features) + style (relative to the Gram targets) + total variation."""
        features = self.features.to(fake.device)
        grams = {layer: g.to(fake.device) for layer, g in self.grams.items()}
        fake = fake.float()
        with torch.no_grad():
            real_maps = features(batch["real"].float())
        targets = {layer: real_maps[layer] for layer in features.content_layers}
        maps = features(fake)
        content = content_weight(targets) * content_loss(maps, targets)
        # The Gram targets are (1, C, C); every image of the batch is compared with them.
        style = style_loss(maps, {k: g.expand(len(fake), -1, -1) for k, g in grams.items()}, self.style_weights)
        tv = self.cfg.strength * TV_WEIGHT * total_variation(fake)
        excess = RANGE_WEIGHT * out_of_range(fake)  # a residual network's output is not bounded
        return content + style + tv + excess, {"content": content.detach(), "style": style.detach(), "tv": tv.detach(),
                                               "range": excess.detach()}

    def preview_inputs(self, n: int, seed: int) -> torch.Tensor:
        return self.preview_photos

    @torch.no_grad()
    def preview_grid(self, generator: FastStyleNet, photos: torch.Tensor) -> torch.Tensor:
        """One row per crop: photo | styled."""
        styled = generator(with_noise(photos, self.preview_noise).to(next(generator.parameters()).device)).float().cpu()
        return make_grid(torch.stack([x for pair in zip(photos, styled) for x in pair]), nrow=2)
