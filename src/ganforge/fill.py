"""Filling the holes of an image of any size with an inpainting generator, window by window.

Holes are grouped: each connected hole gets a window around it with at least `context` pixels
(and at least the hole's own size) of known image on every side, and holes whose windows meet
are filled together in one window. The generator sees one window at a time, so memory is set by
the window, not the image, and a hole's fill depends only on its own neighbourhood: it does not
change when other holes are added far away, or when the image is cut differently.

A window larger than `work_size` is filled at a reduced size that sees all of its context (the
fast Fourier convolutions see the whole window at once) and the fill is scaled back up; only the
hole's pixels are ever taken from the generator, so known pixels come back bit-identical.
"""

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label, regionprops

Window = tuple[int, int, int, int]  # y0, x0, y1, x1


def hole_windows(mask: np.ndarray, context: int) -> list[Window]:
    """Disjoint windows that together hold every hole of `mask` (H, W) with their context."""
    h, w = mask.shape
    windows = []
    for region in regionprops(label(mask, connectivity=2)):
        y0, x0, y1, x1 = region.bbox
        margin = max(context, y1 - y0, x1 - x0)
        windows.append((max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)))
    merged = True
    while merged:  # union windows that overlap until none do
        merged = False
        for i in range(len(windows)):
            for j in range(i + 1, len(windows)):
                a, b = windows[i], windows[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    windows[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del windows[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(windows)


def shrink_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (N, 1, H, W) mask at `size`, where any pixel that touches the hole stays in it."""
    return (F.interpolate(mask.float(), size=size, mode="area") > 0).float()


@torch.no_grad()
def fill_window(generator: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, work_size: int) -> torch.Tensor:
    """The generator's prediction for one window (1, C, h, w) in [-1, 1], made at most `work_size` on a side."""
    h, w = image.shape[-2:]
    device = next(generator.parameters()).device
    scale = min(1.0, work_size / max(h, w))
    if scale == 1.0:
        return generator(image.to(device), mask.to(device)).float().cpu()
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    prediction = generator(small.to(device), shrink_mask(mask, size).to(device)).float().cpu()
    return F.interpolate(prediction, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)


def fill_holes(generator: torch.nn.Module, image: torch.Tensor, mask: np.ndarray, context: int,
               work_size: int) -> torch.Tensor:
    """`image` (1, C, H, W) in [-1, 1] with its holes (`mask` (H, W), True = hole) filled by `generator`.

    Pixels outside the holes are returned exactly as given.
    """
    out = image.clone()
    hole = torch.from_numpy(np.array(mask, dtype=bool))  # a writable copy
    for y0, x0, y1, x1 in hole_windows(mask, context):
        window_mask = hole[y0:y1, x0:x1].float()[None, None]
        prediction = fill_window(generator, image[:, :, y0:y1, x0:x1], window_mask, work_size)
        region = out[:, :, y0:y1, x0:x1]
        region.copy_(torch.where(window_mask.bool(), prediction, region))
    return out
