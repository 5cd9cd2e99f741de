"""Image I/O with Pillow, numpy and torch only: decode, resize, grids, PNG and GIF writing.

Inside ganforge images are float32 NCHW tensors in [-1, 1]; conversion to and from
8-bit pixels happens here and nowhere else.
"""

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.atomic import atomic_path
from ganforge.errors import UserError

# What is read as an image. GIF (first frame of an animation) and TIFF (first page) are read as
# users expect; outputs are written only as the formats of `image_format`.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # greyscale with more than 8 bits: see to_8bit
GREY_MODES = ("1", "L", "LA", *HIGH_DEPTH_MODES)
# What decoding a file that is not a usable image raises: callers skip or report the file.
UNREADABLE_IMAGE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def open_rgb_or_l(path: Path, channels: int | None = None) -> Image.Image:
    """Open an image as RGB or L, flattening alpha onto white and respecting EXIF orientation.

    `channels` forces 1 (L) or 3 (RGB); with None, greyscale stays greyscale and
    everything else (palette, RGBA, CMYK, 16-bit) becomes RGB.
    """
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im.alpha_composite(rgba)
        if channels is None:
            channels = 1 if im.mode in GREY_MODES else 3
        return to_8bit(im).convert("L" if channels == 1 else "RGB")


def to_8bit(im: Image.Image) -> Image.Image:
    """16-bit (or 32-bit/float) greyscale as 8-bit L by one fixed rule, 65535 -> 255 (v / 257), so every
    image keeps its brightness; values already within 0..255 are kept as they are."""
    if im.mode not in HIGH_DEPTH_MODES:
        return im
    arr = np.asarray(im, dtype=np.float64)
    if arr.max() > 255:
        arr = arr / 257.0
    return Image.fromarray(arr.round().clip(0, 255).astype(np.uint8))


def resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Scale the short side to `size` (Lanczos, antialiased), then crop the centre square."""
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def pil_to_uint8(im: Image.Image) -> np.ndarray:
    """A PIL image as a CHW uint8 array."""
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 pixels (rounded, clamped)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile N images (NCHW) into one CHW image, `nrow` per row (default: a near-square grid)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = images.new_full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def to_pil(image: torch.Tensor) -> Image.Image:
    """One CHW image in [-1, 1] as a PIL image (L or RGB)."""
    arr = float_to_uint8(image).numpy()
    return Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))


def check_writable(path: Path, what: str = "--out") -> None:
    """Fail early, with the option's name, when `path` (a file if it has a suffix, else a folder) cannot be written.

    A file path that names an existing folder is refused here: the writer would fail only after the work.
    Outputs that are always folders go to `check_writable_folder`, so a folder name with a dot passes.
    """
    path = Path(path)
    if not path.suffix:
        check_writable_folder(path, what)
        return
    if path.is_dir():
        raise UserError(f"{what}: {path} is a folder; name a file")
    check_writable_folder(path.parent, what)


def check_writable_folder(folder: Path, what: str) -> None:
    """Fail, naming the option, unless files could be written in `folder`; create nothing.

    The check runs before a command does its work, so it must not touch the disk: a command that
    fails later leaves it exactly as it was. A folder that does not exist yet passes when its
    nearest existing ancestor is a writable folder; writers create it when they write into it.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        kind = "a broken link" if existing.is_symlink() and not existing.exists() else "a file"
        where = f"{kind} of that name exists" if existing == folder else f"{existing} is {kind}"
        raise UserError(f"{what}: cannot create {folder}: {where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: {existing} is not writable")


def save_image(image: torch.Tensor, path: Path) -> None:
    """Save one CHW image in [-1, 1] atomically (a temporary file, then a rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        to_pil(image).save(tmp, format=image_format(path))


def save_gif(frames: list[torch.Tensor], path: Path, fps: int = 12) -> None:
    """Save CHW frames in [-1, 1] as a looping GIF, going forth and back so the loop has no jump."""
    pils = [to_pil(f).convert("RGB") for f in frames]
    pils = pils + pils[-2:0:-1]
    path = Path(path)
    with atomic_path(path) as tmp:
        pils[0].save(tmp, format="GIF", save_all=True, append_images=pils[1:], duration=int(1000 / fps), loop=0)


def image_format(path: Path) -> str:
    """Pillow's format name for an output file's suffix, or a UserError naming the file."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported image extension {path.suffix!r}; use .png, .jpg, .webp or .bmp")
    return fmt
