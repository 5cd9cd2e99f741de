"""Fills that need no training, the baselines every inpainting model is scored beside.

Smooth (`smooth_fill`, below) is a membrane fill solved coarse to fine in PyTorch: linear in the
pixels, and the start that ganforge's photo models correct. Biharmonic (scikit-image's
`inpaint_biharmonic`) continues the image's smooth shading into the hole; Telea's fast marching
(2004) and Navier-Stokes (Bertalmio et al. 2001) propagate edges and colours inwards, through
OpenCV when `opencv-python-headless` is installed (an optional extra: the others need nothing
beyond scikit-image and PyTorch). None of them can invent texture or structure, which is what a
GAN is for.
"""

import importlib.util

import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic

CV2_METHODS = {"telea": "INPAINT_TELEA", "navier-stokes": "INPAINT_NS"}


# Jacobi steps per pyramid level: in thick holes of the held-out photos (one mask each) 21.3 dB, against 17.4 dB
# with plain pull-push, 21.7 with 50 steps (2.4 times the time) and scikit-image's biharmonic 22.2.
RELAXATION_STEPS = 20
NEIGHBOURS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]) / 4


def smooth_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`image` with its holes filled smoothly from the pixels around them: a membrane (harmonic) fill, coarse to fine.

    A pyramid of 2x2 averages of the known pixels and of their share in each cell (the pull of
    pull-push, Gortler et al. 1996) gives every hole, however large, a first colour at the level
    where it is small; going down the pyramid, each level starts from the one above, upsampled,
    and relaxes its unknown share towards the average of its four neighbours (Jacobi steps of
    Laplace's equation, as a multigrid solver does). Known pixels come back exactly, and colours
    run smoothly across the hole from every side, at a cost linear in the pixels.
    """
    known = 1 - mask.to(image.dtype)
    values, shares = [image * known], [known]
    while max(values[-1].shape[-2:]) > 1:
        values.append(F.avg_pool2d(values[-1], 2, ceil_mode=True))
        shares.append(F.avg_pool2d(shares[-1], 2, ceil_mode=True))
    out = values[-1] / shares[-1].clamp(min=1e-6)
    channels = image.shape[1]
    neighbours = NEIGHBOURS.to(image).expand(channels, 1, 3, 3)
    for value, share in zip(reversed(values[:-1]), reversed(shares[:-1])):
        out = F.interpolate(out, size=value.shape[-2:], mode="bilinear", align_corners=False)
        for _ in range(RELAXATION_STEPS):
            out = value + (1 - share) * F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), neighbours, groups=channels)
    return out


def available_methods() -> list[str]:
    """The classical fills this installation can run."""
    return ["biharmonic", "smooth"] + (list(CV2_METHODS) if importlib.util.find_spec("cv2") else [])


def classical_fill(method: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` (H, W, C) uint8 with the pixels where `mask` (H, W) is True filled by `method`; uint8."""
    image, mask = np.array(image, dtype=np.uint8), np.array(mask, dtype=bool)  # writable copies: the fills need them
    if method == "biharmonic":
        # split_into_regions: scikit-image 0.26 with the whole mask at once built corrupt sparse indices on some
        # masks (a ValueError on the second call); region by region it solves the same equations.
        filled = inpaint_biharmonic(image.astype(np.float64) / 255, mask, channel_axis=-1, split_into_regions=True)
        out = np.clip(np.round(filled * 255), 0, 255).astype(np.uint8)
    elif method == "smooth":
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        filled = smooth_fill(x, torch.from_numpy(mask)[None, None].float())[0].permute(1, 2, 0).numpy()
        out = np.clip(np.round(filled), 0, 255).astype(np.uint8)
    elif method in CV2_METHODS:
        import cv2

        flag = getattr(cv2, CV2_METHODS[method])
        out = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), 3, flag).reshape(image.shape)
    else:
        raise ValueError(f"unknown classical fill {method!r}; choose from {', '.join(available_methods())}")
    return np.where(mask[..., None], out, image)
