"""Feature networks for Gatys' style and content losses: one built in, one read from a VGG19 file.

Both are a `StyleFeatures`: images in [-1, 1] in, a dict of named feature maps out, the layers
whose Gram matrices carry the style (with their weights) and the layer(s) that carry the
content, and a `name` that outputs and logs record, since results from different feature
networks differ.

- `random_features()`: needs nothing downloaded. Untrained convolutions, drawn from a seeded
  CPU generator so every machine builds the same weights, at five scales (each halves the
  resolution, so deeper layers see larger structures: brush strokes, pebbles). Random
  multi-scale features model textures well (Ustyuzhaninov et al. 2017) and transfer style
  (He, Wang & Hopcroft 2016). The content layer is the third scale (a quarter of the
  resolution): the fourth let the style wash out thin structures such as a rocket's gantry.
  Widths, depth and layers were chosen by looking at results (README, "Style transfer").
- `vgg19_style_features(path)`: torchvision's VGG19 from a local file, with Gatys' layers:
  style relu1_1 .. relu5_1 (weight 1/5 each), content relu4_2.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import UserError
from ganforge.nets.vgg import ImageNetInput, load_vgg19_features

RANDOM_NAME = "random-multiscale-v1"  # a change to the network below must change this name
RANDOM_SEED = 0
RANDOM_WIDTHS = (32, 64, 128, 256, 256)
RANDOM_CONTENT = "scale3"

# torchvision's vgg19().features index of the ReLU after each of Gatys' layers
VGG_STYLE = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
VGG_CONTENT = {"relu4_2": 22}
FEATURE_SUFFIXES = (".pth", ".pt", ".safetensors")


class StyleFeatures(nn.Module):
    """A frozen network that maps images in [-1, 1] to the feature maps the style and content losses compare.

    `style_layers` maps a layer's name to its weight in the style loss; `content_layers` names the
    layers of the content loss. `body` runs up to the last layer either needs, and `taps` says
    which of its outputs is which layer.
    """

    def __init__(self, name: str, prepare: nn.Module, body: nn.Sequential, taps: dict[int, str],
                 style_layers: dict[str, float], content_layers: tuple[str, ...]):
        super().__init__()
        self.name, self.prepare, self.body, self.taps = name, prepare, body, taps
        self.style_layers, self.content_layers = style_layers, content_layers
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x, out = self.prepare(images), {}
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out


class BlurDownsample(nn.Module):
    """Halve the resolution (ceil(H/2) x ceil(W/2)) with the binomial filter [1, 3, 3, 1] in each direction.

    Anti-aliased (Zhang 2019): 2x2 average pooling lets the optimisation hide energy in a 2-pixel
    grid that the coarser scales cannot see, and the results showed that grid. Replicated borders
    work on maps of any size, down to 1x1.
    """

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 64).view(1, 1, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(F.pad(x, (1, 2, 1, 2), mode="replicate"), self.kernel.expand(channels, 1, 4, 4), stride=2,
                        groups=channels)


def random_features() -> StyleFeatures:
    """The built-in network: per scale, one random 3x3 convolution and a ReLU; scales apart by `BlurDownsample`.

    Weights are He-normal (std sqrt(2 / fan_in)), so every layer's responses keep about the
    input's magnitude; biases are zero. Padding replicates the border, which works at any size.
    """
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    layers: list[nn.Module] = []
    taps, cin = {}, 3
    for i, width in enumerate(RANDOM_WIDTHS):
        if i:
            layers.append(BlurDownsample())
        conv = nn.Conv2d(cin, width, 3, padding=1, padding_mode="replicate")
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / (cin * 9)))
            conv.bias.zero_()
        layers += [conv, nn.ReLU()]
        taps[len(layers) - 1] = f"scale{i + 1}"
        cin = width
    style = {name: 1 / len(taps) for name in taps.values()}
    return StyleFeatures(RANDOM_NAME, nn.Identity(), nn.Sequential(*layers), taps, style, (RANDOM_CONTENT,))


def vgg19_style_features(weights_file: str | Path) -> StyleFeatures:
    """VGG19 from a local torchvision file (`--features`), with Gatys' style and content layers."""
    taps = {i: name for name, i in {**VGG_STYLE, **VGG_CONTENT}.items()}
    body = load_vgg19_features(weights_file, "--features", last=max(taps))
    style = {name: 1 / len(VGG_STYLE) for name in VGG_STYLE}
    return StyleFeatures(f"vgg19 ({Path(weights_file).name})", ImageNetInput(), body, taps, style, tuple(VGG_CONTENT))


def load_style_features(features: str | Path | None) -> StyleFeatures:
    """The built-in random network, or VGG19 from a `--features` file."""
    if features is None:
        return random_features()
    path = Path(features)
    if path.suffix.lower() not in FEATURE_SUFFIXES:
        raise UserError(f"--features: {path} is not a VGG19 weights file ({', '.join(FEATURE_SUFFIXES)})")
    return vgg19_style_features(path)
