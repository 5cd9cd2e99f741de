"""One seeding function, so that the same seed and config give the same images on the CPU."""

import random

import numpy as np
import torch

from ganforge.errors import UserError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch's global RNGs and return a fresh CPU generator seeded the same way.

    Code that must be reproducible draws from an explicit `torch.Generator` rather than
    the global state, so that its stream does not depend on what else ran before it.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def parse_seeds(text: str) -> list[int]:
    """Parse `--seeds` as stylegan2-ada does: "1,2,5-8" -> [1, 2, 5, 6, 7, 8]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise UserError(f"--seeds: cannot read {text!r}; expected integers like 1,2,5-8") from None
    if not seeds:
        raise UserError(f"--seeds: {text!r} names no seed")
    return seeds
