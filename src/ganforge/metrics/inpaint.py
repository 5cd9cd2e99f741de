"""Scoring inpainting where the original is known: PSNR, SSIM and L1 of the hole alone.

Known pixels are copied from the input, so scores over the whole image would mostly measure how
big the hole is. Every score here averages over hole pixels only, on the [0, 1] pixel scale:
PSNR from the mean squared error of the hole, L1 its mean absolute error, and SSIM the mean of
the SSIM map (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) over the hole, so the
structure along the hole's border, where the fill meets the image, counts too.
Each image is scored on its own and the scores are averaged.
"""

import math

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def hole_scores(filled: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Scores of `filled` against `original` (N, C, H, W) in [-1, 1] inside `mask` (N, 1, H, W), 1 = hole."""
    f, o = (filled.detach().float() + 1) / 2, (original.detach().float() + 1) / 2
    m = mask.detach().float().expand_as(f)
    pixels = m.sum(dim=(1, 2, 3))
    if bool((pixels == 0).any()):
        raise ValueError("every image needs a hole to be scored")
    diff = (f - o) * m
    mse = diff.pow(2).sum(dim=(1, 2, 3)) / pixels
    l1 = diff.abs().sum(dim=(1, 2, 3)) / pixels
    _, ssim_map = structural_similarity_index_measure(f, o, data_range=1.0, return_full_image=True, reduction="none")
    ssim = (ssim_map * m).sum(dim=(1, 2, 3)) / pixels
    psnr = [10 * math.log10(1 / max(float(e), 1e-12)) for e in mse]
    return {"psnr_hole": sum(psnr) / len(psnr), "ssim_hole": float(ssim.mean()), "l1_hole": float(l1.mean())}
