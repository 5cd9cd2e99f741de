"""CycleGAN's networks (Zhu et al. 2017): two generators, two discriminators and their pools of past fakes.

CycleGAN's generator is Johnson et al.'s residual network with instance norm, which is
`FastStyleNet(norm="instance")` (see there why the norm is needed); its discriminators are
PatchGANs, here `PatchDiscriminator` with spectral norm, as super-resolution and inpainting
use. The pair of generators is one module and the pair of discriminators another, as the
reference implementation gives each pair one optimiser (`itertools.chain(G_A, G_B)`): the one
trainer then sees one G and one D, and the checkpoint, EMA, DDP and export need nothing new.
"""

import torch
from torch import nn

from ganforge.nets.fast_style import FastStyleNet
from ganforge.nets.sr import PatchDiscriminator

DIRECTIONS = ("a2b", "b2a")


class CycleGenerators(nn.Module):
    """G_AB and G_BA; one forward computes every image the losses need, so DDP sees one pass per step."""

    def __init__(self, width: int = 64, blocks: int = 6):
        super().__init__()
        self.a2b, self.b2a = FastStyleNet(width, blocks, "instance"), FastStyleNet(width, blocks, "instance")

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor, identity: bool = True) -> dict[str, torch.Tensor]:
        """Translations (fake_b = G_AB(a), fake_a = G_BA(b)), round trips (rec_a = G_BA(fake_b), rec_b),
        and with `identity` each generator applied to its own target domain (idt_b = G_AB(b), idt_a = G_BA(a))."""
        fake_b, fake_a = self.a2b(real_a), self.b2a(real_b)
        out = {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.b2a(fake_b), "rec_b": self.a2b(fake_a)}
        if identity:
            out |= {"idt_b": self.a2b(real_b), "idt_a": self.b2a(real_a)}
        return out

    def direction(self, name: str) -> FastStyleNet:
        """The generator of one direction, `a2b` or `b2a`: what `ganforge translate` runs."""
        return getattr(self, name)


class ImagePool(nn.Module):
    """The last `size` generated images, shown to D in place of new ones half of the time (Shrivastava et al. 2017).

    D then also remembers what G made a while ago, which damps oscillation. The images are
    buffers, so the pool is checkpointed with D (a resumed run sees the same pool) and a skipped
    step's changes to it are undone with D's. Random draws use torch's global generator, which
    the trainer seeds at every step.
    """

    def __init__(self, size: int, channels: int, resolution: int):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, channels, resolution, resolution))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        out = []
        for fake in fakes.float():
            filled = int(self.filled)
            if filled < self.size:  # fill the pool first, showing the new image
                self.images[filled] = fake
                self.filled += 1
                out.append(fake)
            elif torch.rand(()) < 0.5:  # show an old image, keep the new one in its place
                i = int(torch.randint(self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = fake
            else:
                out.append(fake)
        return torch.stack(out).to(fakes.dtype)


class CycleDiscriminators(nn.Module):
    """D_A (real A images against G_BA's) and D_B (real B against G_AB's), with a pool of past fakes each."""

    def __init__(self, width: int = 64, pool_size: int = 50, resolution: int = 96, channels: int = 3):
        super().__init__()
        self.a, self.b = PatchDiscriminator(channels, width), PatchDiscriminator(channels, width)
        self.pool_a, self.pool_b = ImagePool(pool_size, channels, resolution), ImagePool(pool_size, channels, resolution)

    def forward(self, images: torch.Tensor, domain: str) -> torch.Tensor:
        return self.a(images) if domain == "a" else self.b(images)


def build_cycle_generators(model: dict) -> CycleGenerators:
    """The generator pair a saved translation model's config describes."""
    return CycleGenerators(model["width"], model["blocks"])
