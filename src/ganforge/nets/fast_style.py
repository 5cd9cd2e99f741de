"""The fast style network: a photo in, the photo in one learned style out, in one pass (Johnson et al. 2016).

The shape of pytorch/examples' fast-neural-style TransformerNet: a 9x9 stem, two stride-2
convolutions, residual blocks at a quarter of the resolution, two upsamplings by nearest resize
then a 3x3 convolution (no checkerboard from transposed convolutions), a 9x9 convolution out.

No instance norm, and no normalisation at all: instance norm divides by statistics of the whole
image, so a tile would be normalised by its own statistics and tiled output would differ from
untiled output. Without it every output pixel depends only on the input within
`receptive_radius` pixels, `ganforge.tiling` can run any size tile by tile with no seams, and
inference is cheaper (no per-channel reductions). The price is what instance norm gave Johnson's
successors (Ulyanov et al. 2016): outputs that do not depend on the photo's contrast, and a signal
that keeps its scale through depth. The second is restored by the initialisation: He-normal
convolutions keep the responses' scale through the ReLUs, and each residual block's last
convolution starts at zero, so the blocks start as identities (Goyal et al. 2017). With
PyTorch's default initialisation the output's standard deviation was 0.006 for inputs of 0.58
and training sat on a flat colour.

Sides that are not a multiple of 4 are padded (replicating the border) to the next multiple and
cropped back, so the two stride-2 steps always see the same grid as untiled inference does when
tiles start at multiples of 4 (`receptive_radius + 1` is one).
"""

import torch
import torch.nn.functional as F
from torch import nn

FACTOR = 4  # two stride-2 downsamplings
NORMS = ("none", "instance")


def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, padding_mode="replicate")


def norm_layer(norm: str, channels: int) -> list[nn.Module]:
    """Nothing, or the instance norm CycleGAN's generators have after each convolution."""
    return [nn.InstanceNorm2d(channels, affine=True)] if norm == "instance" else []


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str = "none"):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), *norm_layer(norm, channels), nn.ReLU(),
                                  conv(channels, channels, 3), *norm_layer(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class FastStyleNet(nn.Module):
    """Images (N, 3 + noise_channels, H, W) in [-1, 1] to RGB images of that size; widths (w/4, w/2, w), `blocks` at w.

    `norm="instance"` is CycleGAN's generator (instance norm after every convolution but the
    last): a translator cannot do without it. With none, on mnist5k digits (mostly black), both
    generators fell within 50 steps to a constant black output (L1's median), their tanh
    saturated and their ReLUs dead; with instance norm, the same cycle and identity losses fell
    from 2.6 to 0.25 in 200 steps. Instance norm takes statistics over the whole image, so such
    a network is run untiled (`tileable` is False).

    `noise_channels`: that many channels of white noise come in beside the photo (Ulyanov et al.
    2016's texture networks feed noise too). Without normalisation a network maps a flat region of
    the photo (a sky, a wall) to a flat output: it has nothing there to turn into strokes, and a
    network trained on the painterly style gave flat skies a flat ochre while it put texture into
    grass. The noise is an input like the photo, drawn once for the whole image at inference, so
    tiles still equal the untiled result.

    `residual=True` (fast style models saved with `output: residual`) adds the input to the last
    convolution's output, which starts at zero: the network starts as the identity, as the
    optimisation starts from the photo. From a random start, 400 steps on the painterly style
    gave every photo a flat ochre ground with embossed strokes and no trace of its colours. Its
    output is not bounded (inference clamps it; training penalises the excess, as `stylize`
    does): clamped in training, it left pixels past the limit with no gradient, and two runs
    ended on a constant image within 600 and 1400 steps.
    """

    scale = 1  # for `ganforge.tiling`: output pixels per input pixel

    def __init__(self, width: int = 64, blocks: int = 5, norm: str = "none", residual: bool = False,
                 noise_channels: int = 0):
        super().__init__()
        self.residual, self.noise_channels = residual, noise_channels
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        w1, w2, w3 = max(1, width // 4), max(1, width // 2), width

        def n(c):
            return norm_layer(norm, c)

        self.body = nn.Sequential(
            conv(3 + noise_channels, w1, 9), *n(w1), nn.ReLU(), conv(w1, w2, 3, 2), *n(w2), nn.ReLU(), conv(w2, w3, 3, 2), *n(w3),
            nn.ReLU(), *[ResidualBlock(w3, norm) for _ in range(blocks)],
            Upsample(w3, w2), *n(w2), nn.ReLU(), Upsample(w2, w1), *n(w1), nn.ReLU(), conv(w1, 3, 9), nn.Tanh())
        # In input pixels: stem 4, downsamplings 1 + 2, residual convolutions 4 each, upsamplings 2 + 1 (+ 4 for the
        # nearest resizes' rounding), the last 4; rounded up so that `receptive_radius + 1` is a multiple of FACTOR.
        radius = 4 + 1 + 2 + 4 * 2 * blocks + 2 + 1 + 4 + 4
        self.receptive_radius = -(-(radius + 1) // FACTOR) * FACTOR - 1
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if norm == "instance":  # CycleGAN's N(0, 0.02); the norms set the scale
                    nn.init.normal_(m.weight, 0.0, 0.02)
                else:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if norm == "none":
            for block in self.body:
                if isinstance(block, ResidualBlock):
                    nn.init.zeros_(block.body[-1].weight)
        if residual:
            nn.init.zeros_(self.body[-2].weight)  # starts as the identity

    @property
    def tileable(self) -> bool:
        """Whether tiles cut with `receptive_radius` as margin give exactly the untiled output."""
        return self.norm == "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % FACTOR, -w % FACTOR
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        out = x[:, :3] + self.body[:-1](x) if self.residual else self.body(x)
        return out[..., :h, :w]


def style_noise(photos: torch.Tensor, channels: int, rng: torch.Generator) -> torch.Tensor:
    """(N, channels, H, W) standard normal noise for photos (N, 3, H, W), drawn on the CPU from `rng`."""
    n, _, h, w = photos.shape
    return torch.randn(n, channels, h, w, generator=rng)


def with_noise(photos: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The network's input: the photo's channels, then the noise's (none for models saved without noise)."""
    return torch.cat([photos, noise.to(photos.device, photos.dtype)], 1).contiguous(memory_format=torch.channels_last)


def build_fast_style_net(model: dict) -> FastStyleNet:
    """The network a saved model's config describes."""
    return FastStyleNet(model["width"], model["blocks"], residual=model.get("output") == "residual",
                        noise_channels=model.get("noise_channels", 0))
