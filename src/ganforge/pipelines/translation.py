"""`ganforge translate RUN input --direction a2b|b2a`: an image, or every image of a folder, through a CycleGAN generator.

Each direction is a `FastStyleNet` with instance norm, so an image is run in one piece at its own
size (up to MAX_PIXELS); alpha is kept, the PNG metadata names the model and direction, folders
are mirrored, and existing outputs are kept unless --overwrite.
"""

import logging
from pathlib import Path

from PIL import Image

from ganforge import __version__
from ganforge.device import pick_device
from ganforge.errors import UserError
from ganforge.nets.translate import DIRECTIONS, build_cycle_generators
from ganforge.pipelines.fast_stylize import image_through_network
from ganforge.pipelines.image_files import checked_output, read_image, save_converted
from ganforge.saved_model import build_model, load_model, resolve_model

log = logging.getLogger("ganforge")
# A translator's instance norm needs the whole image at once: 2048x2048 took 1.3 GB with a width-32 model, so
# 4096x4096 takes about 5 GB at width 32 and twice that at 64; larger images are refused, not run out of memory.
MAX_PIXELS = 4096 * 4096


def load_translators(where: str | Path):
    """Both generators of a translation run, model folder or name (the pair, in eval mode), with the model's config."""
    folder = resolve_model(where)
    config, weights = load_model(folder, "generator")
    task = config.get("task", "generation")
    if task != "translate":
        raise UserError(f"{where}: a {task} model, not a translator (train one with --task translate)")
    return build_model(build_cycle_generators, config, weights, folder).eval(), config


def check_direction(direction: str) -> None:
    """`--direction`: a2b or b2a."""
    if direction not in DIRECTIONS:
        raise UserError(f"--direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")


def load_translator(where: str | Path, direction: str):
    """The generator of one direction of a translation run, model folder or name, with the model's config."""
    check_direction(direction)
    pair, config = load_translators(where)
    return pair.direction(direction), config


def translate(model: str | Path, source: str | Path, out: str | Path | None = None, direction: str = "a2b",
              overwrite: bool = False, device: str = "auto") -> Path:
    """Translate one image, or every image under a folder, from domain A to B (`a2b`) or back (`b2a`); returns `out`."""
    source = Path(source)
    net, config = load_translator(model, direction)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    out = checked_output(source, out, f"_{direction}", overwrite)
    content = read_image(source) if source.is_file() else None
    torch_device = pick_device(device)
    domains = {"a": config.get("data"), "b": config.get("data_b")}
    log.info("translate %s -> %s with %s", domains[direction[0]], domains[direction[-1]], model)
    text = {"Software": f"ganforge {__version__}", "model": str(model), "direction": direction,
            "from": str(domains[direction[0]]), "to": str(domains[direction[-1]])}
    return save_converted(source, content, out, lambda im: translate_image(net, im, torch_device), overwrite,
                          "translated", text)


def translate_image(net, im: Image.Image, device) -> Image.Image:
    """One PIL image through one direction of a translator, in one piece (instance norm needs the whole image)."""
    if im.width * im.height > MAX_PIXELS:
        raise UserError(f"{im.width}x{im.height} is more than a translator takes in one piece "
                        f"({MAX_PIXELS / 1e6:.1f} megapixels); scale it down first")
    return image_through_network(net, im, device)
