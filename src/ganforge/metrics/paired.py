"""PSNR and SSIM for tasks with a ground truth (super-resolution, inpainting, translation with pairs).

Inputs follow the library convention, float NCHW in [-1, 1]. They are mapped to [0, 1] before
scoring (data range 1), the scale on which published numbers are computed: PSNR does not
care about the scale, but SSIM's luminance term does, so scoring [-1, 1] directly would not
match papers. Super-resolution papers score the BT.601 luma channel with `scale` pixels cut
from each border: `psnr(crop_border(rgb_to_y(sr), s), crop_border(rgb_to_y(hr), s))`.
"""

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


SSIM_BORDER = 5  # half the 11x11 window: border pixels have no full window around them


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x.detach().float() + 1) / 2


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over images of each image's PSNR in dB (inf when an image is reproduced exactly)."""
    per_image = peak_signal_noise_ratio(_unit(pred), _unit(target), data_range=1.0, dim=(1, 2, 3), reduction="none")
    return float(per_image.mean())


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03); 1 for identical images.

    Only windows that lie wholly inside the image are averaged, as in Wang's reference code,
    scikit-image and the SR benchmark scripts. torchmetrics also scores the 5-pixel border on a
    mirrored image, which moves the score (0.151 against 0.165 on 32x32 noise), so its map is cropped.
    """
    if min(pred.shape[-2:]) < 2 * SSIM_BORDER + 1:
        raise ValueError(f"SSIM needs images of at least 11x11, got {pred.shape[-2]}x{pred.shape[-1]}")
    _, ssim_map = structural_similarity_index_measure(_unit(pred), _unit(target), data_range=1.0, return_full_image=True)
    return float(crop_border(ssim_map, SSIM_BORDER).mean())


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """The ITU-R BT.601 luma channel (N, 1, H, W), as MATLAB's rgb2ycbcr computes it for SR benchmarks.

    On the [0, 1] scale Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, so Y spans
    [16/255, 235/255]; it is returned mapped back to [-1, 1] like any image here, so `psnr`
    and `ssim` score it on the [0, 1] scale the papers use ([0, 255] divided by 255; the
    papers' extra rounding to 8 bits is not applied). A greyscale image is already luma and
    comes back unchanged.
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"rgb_to_y needs 1 or 3 channels, got {x.shape[1]}")
    r, g, b = _unit(x).unbind(dim=1)
    y = (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    return (y * 2 - 1).unsqueeze(1)


def crop_border(x: torch.Tensor, n: int) -> torch.Tensor:
    """Cut `n` pixels from each side of the image, where SR upsampling has no neighbours to work from."""
    if n < 0 or 2 * n >= min(x.shape[-2:]):
        raise ValueError(f"cannot crop {n} pixels from each border of a {x.shape[-2]}x{x.shape[-1]} image")
    return x[..., n : x.shape[-2] - n, n : x.shape[-1] - n]
