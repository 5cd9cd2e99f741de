"""`ganforge inpaint`: fill the holes of any image, or of every image in a folder, with a trained model.

Holes come from a mask image (any mode: non-zero pixels are holes; with an alpha channel, only
visible non-black pixels are) or from `--box x,y,w,h` rectangles. Only hole pixels change:
everything else, alpha included, is written back exactly as read. Greyscale stays greyscale,
EXIF orientation is applied to the image and its mask alike, and images of any size are filled
window by window (see `ganforge.fill`), so memory stays bounded.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ganforge.data.folder import find_images
from ganforge.data.masks import MAX_COVERAGE
from ganforge.device import pick_device
from ganforge.errors import UserError
from ganforge.fill import fill_holes
from ganforge.imageio import HIGH_DEPTH_MODES, UNREADABLE_IMAGE, float_to_uint8, to_8bit, uint8_to_float
from ganforge.pipelines.image_files import checked_output, map_folder, plain_mode, read_image, save_image_file
from ganforge.saved_model import load_model, resolve_model
from ganforge.nets.inpaint import build_inpaint_generator

log = logging.getLogger("ganforge")
DEFAULT_MODEL = "inpaint-photos"
WORK_SIZE = 512  # windows larger than this are filled at this size and scaled back (see ganforge.fill)


def load_inpainter(where: str | Path, device: str = "auto") -> tuple[torch.nn.Module, dict]:
    """An inpainting generator in eval mode and its config, from a run, a model folder or a shipped name."""
    config, weights = load_model(resolve_model(where), "generator")
    if config.get("task") != "inpaint":
        raise UserError(f"--model: {where} is a {config.get('task', 'generation')} model, not an inpainting one")
    generator = build_inpaint_generator(config)
    generator.load_state_dict(weights)
    return generator.to(pick_device(device)).eval(), config


def parse_box(text: str) -> tuple[int, int, int, int]:
    """`x,y,w,h` in pixels, with w and h positive."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--box: expected x,y,w,h in whole pixels, got {text!r}") from None
    if w < 1 or h < 1 or x < 0 or y < 0:
        raise UserError(f"--box {text}: x and y must be at least 0, w and h at least 1")
    return x, y, w, h


def box_mask(size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The holes of `boxes` in an image of `size` (width, height); a box must lie inside the image."""
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in boxes:
        if x + w > width or y + h > height:
            raise UserError(f"--box {x},{y},{w},{h}: reaches outside the {width}x{height} image")
        mask[y : y + h, x : x + w] = True
    return mask


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The holes of a mask file: non-zero pixels (visible ones, where it has alpha); it must be `size` (w, h)."""
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except UNREADABLE_IMAGE as e:
        raise UserError(f"{path}: not a readable mask image ({e})") from None
    if im.size != size:
        raise UserError(f"{path}: the mask is {im.size[0]}x{im.size[1]} but its image is {size[0]}x{size[1]} "
                        "(masks are not resized: make one of the image's size)")
    return mask_pixels(im)


def mask_pixels(im: Image.Image) -> np.ndarray:
    """The holes of a decoded mask image (H, W): its non-zero pixels, or where it has alpha its visible non-black ones."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return (rgba[..., 3] > 0) & (rgba[..., :3].max(axis=-1) > 0)
    if im.mode in HIGH_DEPTH_MODES:
        return np.asarray(im) != 0
    return np.asarray(im.convert("RGB")).max(axis=-1) > 0


def check_coverage(mask: np.ndarray, where: str) -> None:
    """Refuse a mask that leaves nothing to fill from; warn beyond the coverage the models trained on."""
    coverage = float(mask.mean())
    if coverage == 1:
        raise UserError(f"{where}: the mask covers the whole image; there is nothing to fill it from")
    if coverage > MAX_COVERAGE:
        log.warning("%s: the mask covers %.0f%% of the image; the models trained on holes of at most %.0f%%, "
                    "so expect a blurry fill", where, 100 * coverage, 100 * MAX_COVERAGE)


@torch.no_grad()
def fill_pixels(generator: torch.nn.Module, config: dict, image: np.ndarray, mask: np.ndarray,
                work_size: int = WORK_SIZE, texture: bool = False) -> np.ndarray:
    """A uint8 (C, H, W) image with its holes (`mask` (H, W)) filled by the model; other pixels are the input's."""
    x = uint8_to_float(torch.from_numpy(np.ascontiguousarray(image)))[None]
    filled = float_to_uint8(fill_holes(generator, x, mask, config["resolution"] // 2, work_size, texture))[0].numpy()
    return np.where(mask[None], filled, image)


@torch.no_grad()
def inpaint_image(generator: torch.nn.Module, config: dict, im: Image.Image, mask: np.ndarray,
                  work_size: int = WORK_SIZE, texture: bool = False) -> Image.Image:
    """`im` with the pixels where `mask` (H, W) is True filled by the model; every other pixel is kept."""
    im = plain_mode(im)
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    grey = im.mode in ("L", "LA", "1", *HIGH_DEPTH_MODES)
    pixels = np.array(to_8bit(im).convert("L" if config["channels"] == 1 else "RGB"), dtype=np.uint8)  # writable
    if config["channels"] == 1 and not grey:
        log.info("the model fills greyscale images: the result is greyscale")
        grey = True
    out = fill_pixels(generator, config, pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1), mask, work_size,
                      texture)
    result = Image.fromarray(out[0] if out.shape[0] == 1 else out.transpose(1, 2, 0))
    if grey:
        result = result.convert("L")
    if alpha is not None:
        result = result.convert("LA" if grey else "RGBA")
        result.putalpha(alpha)
    return result


def _fill_file(generator, config, image_path: Path, mask_path: Path | None, boxes, work_size: int,
               texture: bool) -> Image.Image:
    """Read one image and its holes, and fill them (an image without holes comes back unchanged)."""
    im = read_image(image_path)
    mask = read_mask(mask_path, im.size) if mask_path is not None else box_mask(im.size, boxes)
    return fill_image(generator, config, im, mask, work_size, str(mask_path or image_path), texture)


def fill_image(generator: torch.nn.Module, config: dict, im: Image.Image, mask: np.ndarray, work_size: int = WORK_SIZE,
               where: str = "mask", texture: bool = False) -> Image.Image:
    """`inpaint_image` after the mask's checks: no hole gives the image back unchanged; `where` names the mask."""
    if mask.shape != (im.height, im.width):
        raise UserError(f"{where}: the mask is {mask.shape[1]}x{mask.shape[0]} but its image is {im.width}x{im.height}")
    if not mask.any():
        log.info("%s: the mask has no hole; the image is kept unchanged", where)
        return im
    check_coverage(mask, where)
    return inpaint_image(generator, config, im, mask, work_size, texture)


def check_work_size(work_size: int) -> None:
    """`--work-size`, checked before any model is loaded."""
    if work_size < 32:
        raise UserError(f"--work-size: must be at least 32, got {work_size}")


def inpaint(source: str | Path, out: str | Path | None = None, mask: str | Path | None = None,
            boxes: list[str] | None = None, model: str | None = None, overwrite: bool = False, device: str = "auto",
            work_size: int = WORK_SIZE, texture: bool = False) -> Path:
    """Fill the holes of one image, or of every image under a folder (masks matched by file stem); returns `out`.

    With `texture`, the known pixels' detail is quilted into each fill (`ganforge.texture_transfer`).
    """
    source = Path(source)
    if (mask is None) == (not boxes):
        raise UserError("inpaint: give the holes as --mask FILE|FOLDER or as --box x,y,w,h (one or more), not both")
    check_work_size(work_size)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    parsed_boxes = [parse_box(b) for b in boxes or []]
    mask = Path(mask) if mask is not None else None
    if mask is not None and not mask.exists():
        raise UserError(f"--mask: {mask} does not exist")
    out = checked_output(source, out, "_filled", overwrite)
    if source.is_file():
        if mask is not None and mask.is_dir():
            raise UserError(f"--mask: {mask} is a folder; a single image takes a mask file")
        generator, config = load_inpainter(model or DEFAULT_MODEL, device)
        save_image_file(_fill_file(generator, config, source, mask, parsed_boxes, work_size, texture), out)
        return out
    if mask is not None and not mask.is_dir():
        raise UserError(f"--mask: {mask} is a file; a folder of images takes a folder of masks (matched by file stem)")
    generator, config = load_inpainter(model or DEFAULT_MODEL, device)
    masks = _masks_by_stem(mask) if mask is not None else {}

    def fill(path: Path) -> Image.Image:
        key = path.relative_to(source).with_suffix("").as_posix()
        mask_path = None
        if mask is not None:
            found = masks.get(key, [])
            if len(found) != 1:
                raise UserError(f"no mask named {key}.* in {mask}" if not found else
                                f"{len(found)} masks named {key}.* in {mask}: {', '.join(p.name for p in found)}")
            mask_path = found[0]
        return _fill_file(generator, config, path, mask_path, parsed_boxes, work_size, texture)

    map_folder(source, out, fill, overwrite, "inpainted")
    return out


def _masks_by_stem(folder: Path) -> dict[str, list[Path]]:
    """Mask files under `folder` by their path without suffix (`sub/a` for `sub/a.png`)."""
    found: dict[str, list[Path]] = {}
    for p in find_images(folder):
        found.setdefault(p.relative_to(folder).with_suffix("").as_posix(), []).append(p)
    return found
