"""What a feature network offers the metrics, and the batching every one of them shares.

An extractor has a `name`, written into every report because scores computed with different
extractors (or different weights) are not comparable, and `features(images) -> (N, D)`, a
float32 CPU tensor, for images NCHW in [-1, 1] (uint8 pixels are accepted too).
"""

import hashlib
from collections.abc import Callable
from typing import Protocol

import torch
from tqdm import tqdm

from ganforge.imageio import uint8_to_float


class FeatureExtractor(Protocol):
    name: str

    def features(self, images: torch.Tensor) -> torch.Tensor: ...


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (as an ImageSet holds them) become float in [-1, 1]; float images pass through."""
    return uint8_to_float(images) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """`fn` over `images` a batch at a time on `device`, without gradients; the outputs concatenated on the CPU.

    A progress bar shows from 10 batches on (320 images for Inception on a CPU take a while).
    """
    starts = range(0, images.shape[0], batch_size)
    bar = tqdm(starts, desc="features", unit="batch", leave=False, disable=len(starts) < 10)
    return torch.cat([fn(as_float_images(images[i : i + batch_size]).to(device)).float().cpu() for i in bar])


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """8 hex digits that change with any weight, so an extractor's name pins its exact weights."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:8]
