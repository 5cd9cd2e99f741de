"""Pictures from a trained generator: seeded samples, grids and latent walks (slerp)."""

from pathlib import Path

import torch
from torch import nn

from ganforge.errors import UserError
from ganforge.imageio import check_writable, image_format, make_grid, save_gif, save_image
from ganforge.latent import check_truncation, generate, latents, slerp
from ganforge.saved_model import build_model, load_model, resolve_model
from ganforge.nets.build import build_generator
from ganforge.device import pick_device


# What a model of each image-to-image task is for, named when it is given to a command for noise models.
USE_INSTEAD = {"superres": "ganforge upscale IMAGE --model {where}",
               "inpaint": "ganforge inpaint IMAGE --mask MASK --model {where}",
               "style": "ganforge stylize IMAGE --model {where}", "translate": "ganforge translate {where} IMAGE"}


def load_generator(where: str | Path, device: str = "auto") -> tuple[nn.Module, dict]:
    """The generator of a run directory, exported model folder or shipped model, in eval mode."""
    config, weights = load_model(resolve_model(where), "generator")
    if config.get("task", "generation") != "generation":
        use = USE_INSTEAD.get(config["task"], "").format(where=where)
        raise UserError(f"{where}: a {config['task']} model makes no samples from noise" + (f"; use `{use}`" if use else ""))
    generator = build_model(build_generator, config, weights, where)
    return generator.to(pick_device(device)).eval(), config


def class_folder(name: str, index: int) -> str:
    """A class's sub-folder: its name where that is a plain file name, else `class<index>`."""
    plain = name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    return name if plain else f"class{index}"


def resolve_class(model: dict, name: str | None, where: str | Path = "the model") -> int | None:
    """The class index that `--class` names (a class name, else an index); None when no class is named.

    A name wins over an index, so a folder class called "3" is that folder even if it is not index 3.
    """
    names = model.get("class_names") or []
    if name is None:
        return None
    if not names:
        raise UserError(f"--class: {where} is an unconditional model; it takes no class")
    if str(name) in names:
        return names.index(str(name))
    try:
        index = int(name)
    except ValueError:
        index = None
    if index is None or not 0 <= index < len(names):
        listed = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", ..."
        raise UserError(f"--class: {where} has no class {name!r}; its classes are {listed} (or an index 0-{len(names) - 1})")
    return index


def sample(where: str | Path, out: str | Path, n: int = 64, seed: int = 0, device: str = "auto",
           class_name: str | None = None, truncation: float = 1.0) -> Path:
    """Write `n` samples as one grid (`out` ends in an image suffix) or as a folder of PNGs.

    Image i uses seed `seed + i`, so `--n 8 --seed 0` repeats the first eight of `--n 64 --seed 0`.
    A class-conditional model makes `n` images of `class_name` or, without one, a class-by-row grid:
    one row per class, ceil(n / classes) columns, column j with seed `seed + j` in every row
    (a folder gets one sub-folder per class). `truncation` < 1: the truncation trick (`latent.seeded_latent`).
    """
    check_sample(n, truncation)
    out = Path(out)
    check_writable(out, "--out")
    if out.suffix:
        image_format(out)  # a grid format it can write, checked before the work
    generator, config = load_generator(where, device)
    label = resolve_class(config, class_name, where)
    images, cols = sample_images(generator, config, n, seed, label, truncation)
    if out.suffix:
        save_image(make_grid(images, nrow=cols), out)
    elif config.get("num_classes") and label is None:
        for i, image in enumerate(images):
            c, j = divmod(i, cols)
            save_image(image, out / class_folder(config["class_names"][c], c) / f"seed{seed + j:06d}.png")
    else:
        for i, image in enumerate(images):
            save_image(image, out / f"seed{seed + i:06d}.png")
    return out


def sample_images(generator: nn.Module, config: dict, n: int, seed: int = 0, label: int | None = None,
                  truncation: float = 1.0) -> tuple[torch.Tensor, int]:
    """The images `sample` makes (NCHW in [-1, 1]) and the columns of their grid.

    Image i uses seed `seed + i` (of class `label` for a conditional model). A conditional model
    without a label gives every class: one row per class, ceil(n / classes) columns, column j
    with seed `seed + j` in every row. Shared by `ganforge sample`, the Python API and the studio.
    """
    check_sample(n, truncation)
    if config.get("num_classes") and label is None:
        classes, cols = config["num_classes"], -(-n // config["num_classes"])
        z = latents(list(range(seed, seed + cols)), config["latent_dim"], truncation).repeat(classes, 1)
        return generate(generator, z, torch.arange(classes).repeat_interleave(cols)), cols
    z = latents(list(range(seed, seed + n)), config["latent_dim"], truncation)
    images = generate(generator, z, None if label is None else torch.full((n,), label))
    return images, int(n**0.5 + 0.5) if n > 3 else n


def interpolate(where: str | Path, seeds: list[int], out: str | Path, frames: int = 8, device: str = "auto",
                class_name: str | None = None, truncation: float = 1.0) -> Path:
    """A slerp walk through the latents of `seeds`: a grid (one row per leg) or a looping GIF."""
    check_walk(seeds, frames, truncation)
    out = Path(out)
    check_writable(out, "--out")
    if out.suffix.lower() not in (".png", ".gif", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"--out: {out} must end in .png, .jpg, .webp (a grid) or .gif (an animation)")
    generator, config = load_generator(where, device)
    images = walk_images(generator, config, seeds, frames, resolve_class(config, class_name, where), truncation, where)
    if out.suffix.lower() == ".gif":
        save_gif(list(images), out)
    else:
        save_image(make_grid(images, nrow=frames), out)
    return out


def walk_images(generator: nn.Module, config: dict, seeds: list[int], frames: int = 8, label: int | None = None,
                truncation: float = 1.0, where: str | Path = "the model") -> torch.Tensor:
    """The frames of `interpolate`'s slerp walk (NCHW in [-1, 1]): `frames` per leg between consecutive seeds."""
    check_walk(seeds, frames, truncation)
    if config.get("num_classes") and label is None:
        raise UserError(f"--class: {where} is a class-conditional model; name the class to walk in "
                        f"({', '.join(config['class_names'][:20])})")
    z = latents(seeds, config["latent_dim"], truncation)
    legs = torch.cat([torch.stack([slerp(a, b, i / (frames - 1)) for i in range(frames)]) for a, b in zip(z, z[1:])])
    return generate(generator, legs, None if label is None else torch.full((len(legs),), label))


def check_sample(n: int, truncation: float) -> None:
    """The options of `sample`, checked before any model is loaded."""
    if n < 1:
        raise UserError(f"--n: must be at least 1, got {n}")
    check_truncation(truncation)


def check_walk(seeds: list[int], frames: int, truncation: float) -> None:
    """The options of a latent walk, checked before any model is loaded."""
    if len(seeds) < 2:
        raise UserError("--seeds: give at least two seeds to walk between")
    if frames < 2:
        raise UserError(f"--frames: must be at least 2, got {frames}")
    check_truncation(truncation)
