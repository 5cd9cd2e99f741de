"""Filling the holes of an image of any size with an inpainting generator, window by window.

Each connected hole gets its own window: its bounding box with `context` pixels (or half the
hole's larger side, if more) of image around it on every side, and at least 2 x `context` on a
side (where the image is that large; a window reaching past the border is moved inside it), so
that the generator never sees a window smaller than the crops it trained on (callers pass half
the training resolution). The generator sees one window at a time, with every hole inside it
masked, and only that hole's pixels are taken from its output.
Windows always read the input image, never another window's fill, so the result does not depend
on the order of the holes, a hole's fill does not change when holes are added outside its
window, and memory is set by the window, not by the image. Windows may overlap; they are not
merged, because merging lets a cluster of holes grow one window as large as the whole image.

A window larger than `work_size` is filled at a reduced size that sees all of its context (the
fast Fourier convolutions see the whole window at once) and the fill is scaled back up; only the
hole's pixels are ever taken from the generator, so known pixels come back bit-identical.

With `texture`, each hole's fill then gets the known pixels' detail quilted in at full resolution
(`ganforge.texture_transfer`), from its own window, with a seed set by the window's place, so the
result still depends on neither the order of the holes, nor the holes outside the window, nor the
pixels under the other holes inside it.
"""

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label, regionprops

from ganforge.texture_transfer import add_texture

Window = tuple[int, int, int, int]  # y0, x0, y1, x1


def hole_windows(mask: np.ndarray, context: int) -> list[tuple[Window, np.ndarray]]:
    """(window, the hole's pixels inside that window) for each connected hole of `mask` (H, W)."""
    h, w = mask.shape
    labels = label(mask, connectivity=2)
    windows = []
    for region in regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        margin = max(context, max(y1 - y0, x1 - x0) // 2)
        top, bottom = _span(y0 - margin, y1 + margin, 2 * context, h)
        left, right = _span(x0 - margin, x1 + margin, 2 * context, w)
        windows.append(((top, left, bottom, right), labels[top:bottom, left:right] == region.label))
    return windows


def _span(start: int, stop: int, least: int, size: int) -> tuple[int, int]:
    """[start, stop) grown evenly to at least `least` long, then moved inside [0, size) and cut to it."""
    grow = max(0, least - (stop - start))
    start, stop = start - grow // 2, stop + grow - grow // 2
    shift = max(0, -start) - max(0, stop - size)
    return max(0, start + shift), min(size, stop + shift)


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
               work_size: int, texture: bool = False) -> torch.Tensor:
    """`image` (1, C, H, W) in [-1, 1] with its holes (`mask` (H, W), True = hole) filled by `generator`,
    and with the known pixels' detail added to each fill where `texture`.

    Pixels outside the holes are returned exactly as given.
    """
    out = image.clone()
    holes = torch.from_numpy(np.array(mask, dtype=bool))  # a writable copy
    for (y0, x0, y1, x1), own in hole_windows(mask, context):
        window = image[:, :, y0:y1, x0:x1]
        prediction = fill_window(generator, window, holes[y0:y1, x0:x1].float()[None, None], work_size)
        filled = torch.where(torch.from_numpy(own)[None, None], prediction, window)
        if texture:
            filled = add_texture(filled, own, mask[y0:y1, x0:x1], seed=y0 * image.shape[-1] + x0)
        region = out[:, :, y0:y1, x0:x1]
        region.copy_(torch.where(torch.from_numpy(own)[None, None], filled, region))
    return out
