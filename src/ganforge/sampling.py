"""Pictures from a trained generator: seeded samples, grids and latent walks (slerp)."""

from pathlib import Path

import torch
from torch import nn

from ganforge.errors import UserError
from ganforge.imageio import check_writable, make_grid, save_gif, save_image
from ganforge.saved_model import load_model, resolve_model
from ganforge.tasks.generation import build_generator
from ganforge.training.device import pick_device


def load_generator(where: str | Path, device: str = "auto") -> tuple[nn.Module, dict]:
    """The generator of a run directory, exported model folder or shipped model, in eval mode."""
    config, weights = load_model(resolve_model(where), "generator")
    generator = build_generator(config)
    generator.load_state_dict(weights)
    return generator.to(pick_device(device)).eval(), config


def latents(seeds: list[int], latent_dim: int) -> torch.Tensor:
    """One z per seed, each drawn from its own generator: seed s gives the same z in any batch."""
    return torch.stack([torch.randn(latent_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: keeps |z| near the prior's shell, unlike a straight line."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return (1 - t) * a + t * b
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def balanced_labels(n: int, model: dict) -> torch.Tensor | None:
    """Classes 0, 1, ..., K-1, 0, 1, ... for `n` images of a conditional model; None for an unconditional one."""
    return torch.arange(n) % model["num_classes"] if model.get("num_classes") else None


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
    """Images for latents `z` (and, for a class-conditional generator, classes `labels`)."""
    device = next(generator.parameters()).device
    if getattr(generator, "num_classes", 0):
        if labels is None:
            raise ValueError("a class-conditional generator needs labels")
        return torch.cat([generator(zc.to(device), yc.to(device)).float().cpu()
                          for zc, yc in zip(z.split(batch_size), labels.split(batch_size))])
    if labels is not None:
        raise ValueError("an unconditional generator takes no labels")
    return torch.cat([generator(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)])


def sample(where: str | Path, out: str | Path, n: int = 64, seed: int = 0, device: str = "auto") -> Path:
    """Write `n` samples as one grid (`out` ends in an image suffix) or as a folder of PNGs.

    Image i uses seed `seed + i`, so `--n 8 --seed 0` repeats the first eight of `--n 64 --seed 0`.
    """
    if n < 1:
        raise UserError(f"--n: must be at least 1, got {n}")
    out = Path(out)
    check_writable(out, "--out")
    generator, config = load_generator(where, device)
    images = generate(generator, latents(list(range(seed, seed + n)), config["latent_dim"]))
    if out.suffix:
        save_image(make_grid(images, nrow=int(n**0.5 + 0.5) if n > 3 else n), out)
    else:
        for i, image in enumerate(images):
            save_image(image, out / f"seed{seed + i:06d}.png")
    return out


def interpolate(where: str | Path, seeds: list[int], out: str | Path, frames: int = 8, device: str = "auto") -> Path:
    """A slerp walk through the latents of `seeds`: a grid (one row per leg) or a looping GIF."""
    if len(seeds) < 2:
        raise UserError("--seeds: give at least two seeds to walk between")
    if frames < 2:
        raise UserError(f"--frames: must be at least 2, got {frames}")
    out = Path(out)
    check_writable(out, "--out")
    if out.suffix.lower() not in (".png", ".gif", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"--out: {out} must end in .png, .jpg, .webp (a grid) or .gif (an animation)")
    generator, config = load_generator(where, device)
    z = latents(seeds, config["latent_dim"])
    legs = [torch.stack([slerp(a, b, i / (frames - 1)) for i in range(frames)]) for a, b in zip(z, z[1:])]
    images = generate(generator, torch.cat(legs))
    if out.suffix.lower() == ".gif":
        save_gif(list(images), out)
    else:
        save_image(make_grid(images, nrow=frames), out)
    return out
