"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for GANs trained on little data.

The same kind of random transform is applied to real and generated images before D sees them,
so D cannot memorise the few real images, and gradients still flow back to G through the
transform. Draws come from torch's global RNG, which the trainer seeds per step.
"""

import torch
import torch.nn.functional as F

from ganforge.errors import UserError


def color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to `ratio` of the size, filling with zeros (grey in [-1, 1])."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    idx = (gy * (w + 2) + gx).flatten(1)[:, None, :].expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, idx).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of `ratio` times the size in each image (its centre may lie on the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = (gy[None] >= top) & (gy[None] < top + ch) & (gx[None] >= left) & (gx[None] < left + cw)
    return x * (~inside)[:, None].to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(text: str) -> list[str]:
    """`--augment color,translation,cutout` (or `none`) as a list of transform names."""
    if text in ("", "none"):
        return []
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in POLICIES]
    if unknown:
        raise UserError(f"--augment: unknown transform(s) {', '.join(unknown)}; choose from {', '.join(POLICIES)} or none")
    return names


def diff_augment(x: torch.Tensor, policy: list[str], p: float = 1.0) -> torch.Tensor:
    """Apply `policy` to each image with probability `p` (1: all of them, as in DiffAugment)."""
    if not policy or p <= 0:
        return x
    augmented = x
    for name in policy:
        augmented = POLICIES[name](augmented)
    if p < 1:
        keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p
        augmented = torch.where(keep, x, augmented)
    return augmented.contiguous(memory_format=torch.channels_last)


class AdaptiveProbability:
    """ADA's heuristic (Karras et al. 2020): augment more while D is overconfident on real images.

    r = E[sign(D(x))] over the last `interval` D updates; p moves up when r is above `target`
    and down when below, fast enough to go from 0 to 1 in `speed_images` real images. On little
    data D starts memorising after a while, r climbs, and augmentation comes in only then; on
    enough data p stays near 0 and costs nothing. With `target` 0 the probability is fixed at `fixed_p`.
    """

    def __init__(self, target: float = 0.0, interval: int = 4, speed_images: int = 50_000, fixed_p: float = 1.0):
        self.target, self.interval, self.speed_images = target, interval, speed_images
        self.p = fixed_p if target <= 0 else 0.0
        self.sign_sum, self.count, self.images = 0.0, 0, 0

    def update(self, real_logits: torch.Tensor) -> None:
        if self.target <= 0:
            return
        signs = torch.stack([real_logits.detach().float().sign().mean(), torch.tensor(1.0, device=real_logits.device)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(signs)  # every rank must keep the same p
        self.sign_sum += float(signs[0] / signs[1])
        self.count += 1
        self.images += real_logits.shape[0] * int(signs[1])
        if self.count >= self.interval:
            r = self.sign_sum / self.count
            step = self.images / self.speed_images
            self.p = min(1.0, max(0.0, self.p + (step if r > self.target else -step)))
            self.sign_sum, self.count, self.images = 0.0, 0, 0

    def state(self) -> dict:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "images": self.images}

    def load_state(self, state: dict) -> None:
        self.p, self.sign_sum, self.count, self.images = state["p"], state["sign_sum"], state["count"], state["images"]
