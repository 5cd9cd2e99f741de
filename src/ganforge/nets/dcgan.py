"""The DCGAN of Radford et al. 2015, generic over resolution.

Strided (transposed) convolutions with kernel 4, batch norm, ReLU in G, LeakyReLU(0.2) in D,
tanh out and N(0, 0.02) initialisation. A resolution is `base * 2**k` with `base` in 4..7:
G starts from a `base` x `base` map and doubles k times, D halves k times and ends with a
`base` x `base` convolution to one logit. At 64x64 with width 64 and latent 100 this is
exactly the pytorch/examples DCGAN.

`depth` adds that many 3x3 stride-1 convolutions (each with its norm and activation) after each of
G's hidden layers and after each of D's normalised strided convolutions: at 28x28 the DCGAN has
only two layers on each side: one more per resolution (depth 1) took the quickstart's digits from domain
FID 37 to 9.9 in less time, and two (its default now) to 5.6 in less time still (README, "Quickstart").
"""

import math

import torch
from torch import nn

from ganforge.errors import UserError

MAX_WIDTH_MULT = 8


def resolution_plan(resolution: int) -> tuple[int, int]:
    """(base, doublings) for `resolution`, or a UserError naming the valid sizes."""
    for k in range(1, 12):
        base, rem = divmod(resolution, 2**k)
        if rem == 0 and 4 <= base <= 7:
            return base, k
        if base < 4:
            break
    raise UserError(
        f"--resolution: DCGAN cannot make {resolution}x{resolution} images; use 4..7 times a power of two "
        "(e.g. 28, 32, 64, 128, 256)"
    )


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales, as in the paper."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def spectral_normalise(module: nn.Module) -> None:
    """Spectral norm on every convolution, linear layer and embedding of `module`.

    Call it after initialising the weights: the parametrisation keeps the weight it is given as its
    stored original and recomputes `weight` from it at every forward, so an initialisation written
    into `weight` afterwards would be lost (D would silently keep PyTorch's default init).
    """
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(m)


def _widths(width: int, k: int) -> list[int]:
    """Channel widths from the smallest map (index 0) to the largest, capped at 8 x width."""
    return [width * min(2 ** (k - 1 - i), MAX_WIDTH_MULT) for i in range(k)]


class LatentProjection(nn.ConvTranspose2d):
    """G's first layer: a transposed convolution of a 1x1 input to a `kernel` x `kernel` map, computed as the
    matrix product it is.

    oneDNN's convolution kernels handle this shape badly: forward and backward at batch 64 took 4.0 ms against
    0.73 ms as a matrix product at 28 px (latent 100 to 64 x 7 x 7), 13.4 ms against 1.6 ms at 64 px (to 512 x 4 x
    4). The weight, and so every saved model, is the ConvTranspose2d's. On the CPU at 28 px the output and the
    weight's gradient are the convolution's bit for bit; elsewhere, and for the input's gradient, they differ by
    float rounding (tests/test_nets.py).
    """

    def __init__(self, latent_dim: int, channels: int, kernel: int):
        super().__init__(latent_dim, channels, kernel, 1, 0, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # z (N, latent_dim, 1, 1)
        weight = self.weight.permute(0, 2, 3, 1)  # (latent, k, k, out): a view where the weight is channels_last
        maps = z.flatten(1) @ weight.reshape(weight.shape[0], -1)
        return maps.view(-1, *weight.shape[1:]).permute(0, 3, 1, 2)  # channels_last, as the layers after it


def generator_refinements(channels: int, depth: int) -> list[nn.Module]:
    """`depth` x (3x3 stride-1 convolution, batch norm, ReLU) at one of G's resolutions."""
    return [m for _ in range(depth)
            for m in (nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True))]


class DCGANGenerator(nn.Module):
    """z (N, latent_dim) -> image (N, channels, resolution, resolution) in [-1, 1]."""

    def __init__(self, resolution: int = 64, channels: int = 3, latent_dim: int = 100, width: int = 64,
                 depth: int = 0):
        super().__init__()
        base, k = resolution_plan(resolution)
        widths = _widths(width, k)
        layers: list[nn.Module] = [
            LatentProjection(latent_dim, widths[0], base),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
            *generator_refinements(widths[0], depth),
        ]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
            layers += generator_refinements(cout, depth)
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z[:, :, None, None])


def discriminator_normalisation(norm: str, channels: int) -> list[nn.Module]:
    """What follows each of D's strided convolutions but the first: `norm` is "batch" (the DCGAN's), "group"
    (per image: differentially private training clips each image's gradient alone, which batch norm would mix),
    or "none" (a WGAN-GP critic: its penalty is per image)."""
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "group":
        return [nn.GroupNorm(math.gcd(32, channels), channels)]  # up to 32 groups, as Opacus's examples use
    return []


def discriminator_trunk(resolution: int, channels: int, width: int, spectral_norm: bool,
                        norm: str, depth: int = 0) -> tuple[list[nn.Module], int, int]:
    """D's strided convolutions down to a `base` x `base` map: (layers, their last width, base).

    With `spectral_norm` there is no normalisation layer; the caller applies spectral norm itself,
    after initialising (see `spectral_normalise`).
    """
    base, k = resolution_plan(resolution)
    widths = _widths(width, k)[::-1]
    layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for cin, cout in zip(widths, widths[1:]):
        for conv in [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)] + [nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                                                                   for _ in range(depth)]:
            layers += [conv]
            layers += [] if spectral_norm else discriminator_normalisation(norm, cout)  # spectral norm replaces it
            layers += [nn.LeakyReLU(0.2, True)]
    return layers, widths[-1], base


class DCGANDiscriminator(nn.Module):
    """image -> one real/fake logit per image (no sigmoid: losses work on logits)."""

    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 64, spectral_norm: bool = False,
                 norm: str = "batch", depth: int = 0):
        super().__init__()
        layers, last_width, base = discriminator_trunk(resolution, channels, width, spectral_norm, norm, depth)
        self.main = nn.Sequential(*layers, nn.Conv2d(last_width, 1, base, 1, 0, bias=False))
        init_dcgan_weights(self)
        if spectral_norm:
            spectral_normalise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()
