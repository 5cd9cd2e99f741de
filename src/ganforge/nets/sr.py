"""Super-resolution networks: a residual generator with pixel-shuffle upsampling, and a patch critic.

The generator is SRResNet (Ledig et al. 2017) as EDSR (Lim et al. 2017) slimmed it: residual
blocks without batch norm (it hurts fidelity and makes tiles depend on their neighbours'
statistics), residual scaling, a long skip over the body, and x2 pixel-shuffle stages. One
addition pays for itself on short CPU budgets: the network predicts the *difference* from a
bicubic upscale of its input (global residual learning, as in VDSR), so an untrained network
already equals bicubic and every step of training is spent on detail.

The generator only uses 3x3 convolutions with zero padding, so an output pixel depends on a
bounded neighbourhood of input pixels (`receptive_radius`): tiles cut with that margin and
stitched give exactly the untiled image.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import UserError

SCALES = (2, 4)


class ResidualBlock(nn.Module):
    """conv-ReLU-conv, added back at 0.1 scale so deep stacks train stably without batch norm."""

    def __init__(self, width: int, res_scale: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(True), nn.Conv2d(width, width, 3, 1, 1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class SRGenerator(nn.Module):
    """Low-resolution image (N, C, h, w) in [-1, 1] -> (N, C, scale*h, scale*w)."""

    def __init__(self, scale: int = 4, channels: int = 3, width: int = 64, blocks: int = 8):
        super().__init__()
        if scale not in SCALES:
            raise UserError(f"--scale: {scale} is not supported; choose {' or '.join(map(str, SCALES))}")
        self.scale = scale
        self.head = nn.Conv2d(channels, width, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)], nn.Conv2d(width, width, 3, 1, 1))
        stages = []
        for _ in range(scale.bit_length() - 1):  # one x2 pixel-shuffle stage per doubling
            stages += [nn.Conv2d(width, 4 * width, 3, 1, 1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, True)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(width, channels, 3, 1, 1)
        nn.init.zeros_(self.tail.weight)  # start as exactly bicubic: see the module docstring
        nn.init.zeros_(self.tail.bias)
        # Input pixels that can reach an output pixel, counted on the input grid: head, 2 per block,
        # body end, one per x2 stage at growing resolution (<= 1 in all), and the bicubic skip (2).
        self.receptive_radius = 2 * blocks + 2 + 1 + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.body(features)
        residual = self.tail(self.upsample(features))
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) + residual


# The 8 symmetries of the square as (mirror first?, quarter turns), in the order `SelfEnsemble` takes them: 2 is
# the photo and its mirror image, 4 adds the upside-down pair (a group, as 8 is), 8 adds the quarter turns.
SYMMETRIES = ((False, 0), (True, 0), (False, 2), (True, 2), (False, 1), (True, 1), (False, 3), (True, 3))
ENSEMBLE_SIZES = (1, 2, 4, 8)


class SelfEnsemble(nn.Module):
    """EDSR's geometric self-ensemble (Lim et al. 2017, "EDSR+"): the generator run on `n` flips and rotations of
    its input, each output turned back and the `n` averaged. The network's errors differ from one orientation to
    another and partly cancel: more PSNR for n times the time, and no training.

    It keeps the generator's `scale` and `receptive_radius`, so `upscale_tensor` tiles it exactly as it tiles the
    generator: a tile and its context are turned together, and every output pixel still sees the input it would
    see untiled.
    """

    def __init__(self, generator: nn.Module, n: int):
        super().__init__()
        if n not in ENSEMBLE_SIZES:
            raise UserError(f"--self-ensemble: must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, got {n}")
        self.generator, self.symmetries = generator, SYMMETRIES[:n]
        self.scale, self.receptive_radius = generator.scale, generator.receptive_radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.symmetries) == 1:  # the default: the generator itself, no copies on the upscale's path
            return self.generator(x)
        total = 0
        for mirror, turns in self.symmetries:
            turned = torch.rot90(x.flip(-1) if mirror else x, turns, dims=(-2, -1))
            y = torch.rot90(self.generator(turned), -turns, dims=(-2, -1))
            total = total + (y.flip(-1) if mirror else y)
        return total / len(self.symmetries)


def deepened(weights: dict[str, torch.Tensor], built: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """The weights of a `blocks`-block generator for a deeper one whose freshly built weights are `built`.

    The old blocks keep their places and the body's last convolution moves after the new blocks. Each new block
    starts as the identity: its second convolution is zero, its first as built (were both zero, no gradient would
    ever reach them). The deeper network then computes exactly what the shallower one did, and training more
    capacity starts from a trained model instead of from scratch.
    """
    deeper = sum(1 for k in built if k.startswith("body.") and k.endswith(".body.0.weight"))
    end = f"body.{blocks}."
    grown = {(f"body.{deeper}." + k.removeprefix(end) if k.startswith(end) else k): v for k, v in weights.items()}
    for i in range(blocks, deeper):
        grown[f"body.{i}.body.0.weight"] = built[f"body.{i}.body.0.weight"]
        grown[f"body.{i}.body.0.bias"] = built[f"body.{i}.body.0.bias"]
        grown[f"body.{i}.body.2.weight"] = torch.zeros_like(built[f"body.{i}.body.2.weight"])
        grown[f"body.{i}.body.2.bias"] = torch.zeros_like(built[f"body.{i}.body.2.bias"])
    return grown


def build_sr_generator(model: dict) -> SRGenerator:
    """The generator described by a saved super-resolution model's config."""
    return SRGenerator(model["scale"], model["channels"], model["width"], model["blocks"])


class PatchDiscriminator(nn.Module):
    """image -> a map of real/fake logits, one per overlapping patch (no sigmoid).

    Judging patches rather than whole images suits crops of any size and asks for texture, not
    layout: what upscaling has to invent. Spectral norm on every convolution keeps it Lipschitz.
    """

    def __init__(self, channels: int = 3, width: int = 64, spectral_norm: bool = True):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        widths = [width, width * 2, width * 4]
        layers: list[nn.Module] = [sn(nn.Conv2d(channels, widths[0], 3, 1, 1)), nn.LeakyReLU(0.2, True)]
        cin = widths[0]
        for cout in widths:
            layers += [sn(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2, True),
                       sn(nn.Conv2d(cout, cout, 3, 1, 1)), nn.LeakyReLU(0.2, True)]
            cin = cout
        layers += [sn(nn.Conv2d(cin, 1, 3, 1, 1))]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten(1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each LeakyReLU: what feature matching (pix2pixHD, LaMa) compares."""
        maps = []
        for layer in self.main:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(x)
        return maps
