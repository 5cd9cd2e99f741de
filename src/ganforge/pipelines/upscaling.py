"""`ganforge upscale`: photos of any size in, x2 or x4 photos out, with a shipped model or a trained one.

Colour photos go through the model; greyscale ones go through it as equal-channel RGB and come
back greyscale; an alpha channel is upscaled separately (bicubic: it is a mask, not texture).
16-bit images are converted to 8 bits with a note, and EXIF orientation is applied first.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.errors import UserError
from ganforge.imageio import HIGH_DEPTH_MODES, to_8bit, uint8_to_float
from ganforge.pipelines.image_files import (checked_output, map_folder, open_image, plain_mode, read_image,
                                            save_image_file)
from ganforge.saved_model import build_model, load_model, read_config, resolve_model, shipped_models
from ganforge.nets.sr import SelfEnsemble, build_sr_generator
from ganforge.tiling import upscale_tensor
from ganforge.device import pick_device

log = logging.getLogger("ganforge")
VARIANTS = ("fidelity", "gan")
MIN_SIDE = 4  # smaller inputs give the networks nothing to work with


def shipped_name(scale: int, variant: str) -> str:
    return f"superres-x{scale}" + ("-gan" if variant == "gan" else "")


def run_variants(where: str | Path) -> dict[str, Path]:
    """The model folders of a super-resolution run (fidelity, and gan when its second phase ran), or one model."""
    path = Path(where)
    if (path / "model-fidelity" / "config.json").exists():
        variants = {"fidelity": path / "model-fidelity"}
        if read_config(path / "model").get("variant") == "gan":
            variants["gan"] = path / "model"
        return variants
    folder = resolve_model(where)
    return {read_config(folder).get("variant", "model"): folder}


def pick_model(model: str | None, scale: int | None, variant: str | None) -> Path:
    """The model folder for `--model` (a run, folder or shipped name) or, without it, the shipped one for `--scale`.

    Without `--variant`, a run gives its fidelity model and a model folder gives itself.
    """
    if variant not in (None, *VARIANTS):
        raise UserError(f"--variant: {variant!r} is not one of {', '.join(VARIANTS)}")
    if model is None:
        name = shipped_name(scale or 4, variant or "fidelity")
        if name not in shipped_models():
            raise UserError(f"--scale: no shipped {variant or 'fidelity'} model for x{scale}; shipped: {', '.join(shipped_models())}")
        return resolve_model(name)
    variants = run_variants(model)
    if variant is None:
        return variants.get("fidelity", next(iter(variants.values())))
    if variant not in variants:
        raise UserError(f"--variant: {model} has no {variant} model (it has: {', '.join(variants)})")
    return variants[variant]


def load_upscaler(folder: str | Path, scale: int | None = None, device: str = "auto") -> tuple[torch.nn.Module, dict]:
    """A super-resolution generator in eval mode and its config; `scale`, when given, must be the model's."""
    config, weights = load_model(Path(folder), "generator")
    if config.get("task") != "superres":
        raise UserError(f"--model: {folder} is a {config.get('task', 'generation')} model, not a super-resolution one")
    if scale is not None and scale != config["scale"]:
        raise UserError(f"--scale: the model in {folder} upscales x{config['scale']}, not x{scale}")
    generator = build_model(build_sr_generator, config, weights, folder)
    return generator.to(pick_device(device)).eval(), config


def upscale_image(generator: torch.nn.Module, im: Image.Image, tile: int = 256, progress: bool = False) -> Image.Image:
    """One PIL image upscaled: RGB through the model, greyscale back to greyscale, alpha by bicubic.

    `progress` shows a bar over its tiles: wanted for one big photo, not inside a folder's bar.
    """
    im = plain_mode(im)
    if min(im.size) < MIN_SIDE:
        raise UserError(f"{im.size[0]}x{im.size[1]} is too small to upscale (at least {MIN_SIDE}x{MIN_SIDE})")
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    grey = im.mode in ("L", "LA", "1", *HIGH_DEPTH_MODES)
    rgb = np.asarray(to_8bit(im).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    lr = uint8_to_float(torch.from_numpy(np.ascontiguousarray(rgb)))[None]
    out = upscale_tensor(generator, lr, tile, progress=progress)[0].numpy().transpose(1, 2, 0)
    result = Image.fromarray(out)
    if grey:
        result = result.convert("L")
    if alpha is not None:
        result = result.convert("LA" if grey else "RGBA")
        result.putalpha(alpha.resize(result.size, Image.Resampling.BICUBIC))
    return result


def check_tile(tile: int) -> None:
    """`--tile`, checked before any model is loaded (smaller tiles would be mostly context)."""
    if tile < 16:
        raise UserError(f"--tile: must be at least 16, got {tile}")


def upscale(source: str | Path, out: str | Path | None = None, scale: int | None = None, model: str | None = None,
            variant: str | None = None, tile: int = 256, device: str = "auto", overwrite: bool = False,
            self_ensemble: int = 1) -> Path:
    """Upscale one image, or every image under a folder (mirrored into `out` as PNGs, see `output_paths`); returns `out`.

    `self_ensemble` > 1 averages the model over that many flips and rotations (`SelfEnsemble`).
    A folder run skips unreadable or too-small files, and outputs that exist already (so an
    interrupted run can be repeated), and reports them at the end.
    """
    source = Path(source)
    check_tile(tile)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    generator, _ = load_upscaler(pick_model(model, scale, variant), scale, device)
    generator = SelfEnsemble(generator, self_ensemble)
    scale = generator.scale
    out = checked_output(source, out, f"_x{scale}", overwrite)
    if source.is_file():
        im = read_image(source)
        try:
            result = upscale_image(generator, im, tile, progress=True)
        except UserError as e:
            raise UserError(f"{source}: {e}") from None
        save_image_file(result, out)
        return out
    map_folder(source, out, lambda path: upscale_image(generator, open_image(path), tile), overwrite, "upscaled")
    return out
