"""The super-resolution papers' scoring protocol: PSNR and SSIM on the BT.601 luma (Y) channel of
8-bit-rounded outputs, with `scale` pixels cut from each border; beside them a sharpness figure,
because PSNR rewards the blur that averages what a model cannot know."""

import numpy as np
import torch
from skimage.filters import laplace

from ganforge.imageio import float_to_uint8, uint8_to_float
from ganforge.metrics.paired import crop_border, psnr, rgb_to_y, ssim


def score(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """PSNR and SSIM on Y with a `scale`-pixel border cut, of an 8-bit-rounded output."""
    sr_y = crop_border(rgb_to_y(uint8_to_float(float_to_uint8(sr)) if sr.is_floating_point() else uint8_to_float(sr)), scale)
    hr_y = crop_border(rgb_to_y(hr), scale)
    return {"psnr_y": psnr(sr_y, hr_y), "ssim_y": ssim(sr_y, hr_y), "sharpness": sharpness(sr_y, hr_y)}


def sharpness(sr_y: torch.Tensor, hr_y: torch.Tensor) -> float:
    """The variance of the output's Laplacian as a percentage of the original's (the "variance of the Laplacian"
    focus measure, Pech-Pacheco et al. 2000), averaged over images: 100 is as much fine detail as the original, less
    is blur (bicubic's is far below), more is invented detail, noise or ringing."""
    ratios = [np.var(laplace(s[0].double().numpy())) / max(np.var(laplace(h[0].double().numpy())), 1e-12)
              for s, h in zip(sr_y, hr_y, strict=True)]
    return 100 * float(np.mean(ratios))


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
