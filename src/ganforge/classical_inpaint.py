"""Fills that need no training, the baselines every inpainting model is scored beside.

Biharmonic (scikit-image's `inpaint_biharmonic`) continues the image's smooth shading into the
hole; Telea's fast marching (2004) and Navier-Stokes (Bertalmio et al. 2001) propagate edges
and colours inwards, through OpenCV when `opencv-python-headless` is installed (an optional
extra: the biharmonic baseline needs nothing beyond scikit-image). None of them can invent
texture or structure, which is what a GAN is for.
"""

import importlib.util

import numpy as np
from skimage.restoration import inpaint_biharmonic

CV2_METHODS = {"telea": "INPAINT_TELEA", "navier-stokes": "INPAINT_NS"}


def available_methods() -> list[str]:
    """The classical fills this installation can run."""
    return ["biharmonic"] + (list(CV2_METHODS) if importlib.util.find_spec("cv2") else [])


def classical_fill(method: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` (H, W, C) uint8 with the pixels where `mask` (H, W) is True filled by `method`; uint8."""
    image, mask = np.array(image, dtype=np.uint8), np.array(mask, dtype=bool)  # writable copies: the fills need them
    if method == "biharmonic":
        # split_into_regions: scikit-image 0.26 with the whole mask at once built corrupt sparse indices on some
        # masks (a ValueError on the second call); region by region it solves the same equations.
        filled = inpaint_biharmonic(image.astype(np.float64) / 255, mask, channel_axis=-1, split_into_regions=True)
        out = np.clip(np.round(filled * 255), 0, 255).astype(np.uint8)
    elif method in CV2_METHODS:
        import cv2

        flag = getattr(cv2, CV2_METHODS[method])
        out = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), 3, flag).reshape(image.shape)
    else:
        raise ValueError(f"unknown classical fill {method!r}; choose from {', '.join(available_methods())}")
    return np.where(mask[..., None], out, image)
