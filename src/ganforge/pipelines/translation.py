"""`ganforge translate RUN input --direction a2b|b2a`: an image, or every image of a folder, through a CycleGAN generator.

Each direction is a `FastStyleNet`, so inference is the fast style network's: the image's own
size, tile by tile with no seams and bounded memory, alpha kept, PNG metadata naming the model
and direction, folders mirrored, existing outputs kept unless --overwrite.
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


def load_translator(where: str | Path, direction: str):
    """The generator of one direction of a translation run, model folder or name, with the model's config."""
    if direction not in DIRECTIONS:
        raise UserError(f"--direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")
    folder = resolve_model(where)
    config, weights = load_model(folder, "generator")
    task = config.get("task", "generation")
    if task != "translate":
        raise UserError(f"{where}: a {task} model, not a translator (train one with --task translate)")
    return build_model(build_cycle_generators, config, weights, folder).direction(direction).eval(), config


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

    def convert(im: Image.Image) -> Image.Image:
        return image_through_network(net, im, torch_device)

    return save_converted(source, content, out, convert, overwrite, "translated", text)
