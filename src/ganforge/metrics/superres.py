"""The super-resolution papers' scoring protocol: PSNR and SSIM on the BT.601 luma (Y) channel of
8-bit-rounded outputs, with `scale` pixels cut from each border."""

import numpy as np
import torch

from ganforge.imageio import float_to_uint8, uint8_to_float
from ganforge.metrics.paired import crop_border, psnr, rgb_to_y, ssim


def score(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """PSNR and SSIM on Y with a `scale`-pixel border cut, of an 8-bit-rounded output."""
    sr_y = crop_border(rgb_to_y(uint8_to_float(float_to_uint8(sr)) if sr.is_floating_point() else uint8_to_float(sr)), scale)
    hr_y = crop_border(rgb_to_y(hr), scale)
    return {"psnr_y": psnr(sr_y, hr_y), "ssim_y": ssim(sr_y, hr_y)}


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
