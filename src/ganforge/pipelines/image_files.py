"""Reading and writing the user's own image files, for the commands that change images one by one (upscale, inpaint).

Unlike training data, which is decoded straight to 8-bit tensors (`ganforge.imageio`), these keep
what the file holds (mode, alpha, 16 bits) so the command can write back the same kind of image,
and they mirror an input folder into an output folder without one output overwriting another.
"""

import logging
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageOps

from ganforge.atomic import atomic_path
from ganforge.errors import UserError
from ganforge.imageio import HIGH_DEPTH_MODES, image_format

log = logging.getLogger("ganforge")


def open_image(path: Path) -> Image.Image:
    """An image file decoded whole in its own mode, EXIF orientation applied; a note when it has more than 8 bits."""
    with Image.open(path) as im:
        if im.mode in HIGH_DEPTH_MODES or im.info.get("bits", 8) > 8:
            log.info("%s: 16-bit image converted to 8 bits (the models work on 8-bit pixels)", path)
        im.load()
        return ImageOps.exif_transpose(im)


def save_image_file(im: Image.Image, path: Path) -> None:
    """Write `im` atomically in the format of `path`'s suffix, or a UserError naming --out (alpha it cannot keep, a
    full disk)."""
    fmt = image_format(path)
    if fmt in ("JPEG", "BMP") and im.mode in ("RGBA", "LA"):
        raise UserError(f"--out: {path} cannot keep the alpha channel; use .png or .webp")
    try:
        with atomic_path(path) as tmp:
            im.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    except OSError as e:
        raise UserError(f"--out: cannot write {path}: {e.strerror or e}") from None


def output_paths(source: Path, paths: list[Path], out: Path) -> tuple[dict[Path, Path], list[Path]]:
    """Where each input's PNG goes under `out`, and the inputs whose output name keeps their suffix.

    Outputs mirror the inputs as `<stem>.png`, except where two inputs would share one (`a.jpg`
    and `a.png`, or `A.jpg` and `a.png`, which clash on case-blind file systems): those become
    `<name>.png` (`a.jpg.png`, `a.png.png`), so no input overwrites another or passes for an
    output that already existed. Repeated until no clash is left, since a new name can itself be
    another input's `<stem>.png`; names that keep their suffix never clash with each other.
    """
    keep_suffix: set[Path] = set()
    while True:
        relative = {p: p.relative_to(source) for p in paths}
        targets = {p: r.with_name(r.name + ".png") if p in keep_suffix else r.with_suffix(".png")
                   for p, r in relative.items()}
        users = defaultdict(list)
        for p, t in targets.items():
            users[t.as_posix().lower()].append(p)
        clashing = {p for group in users.values() if len(group) > 1 for p in group} - keep_suffix
        if not clashing:
            return {p: out / t for p, t in targets.items()}, sorted(keep_suffix)
        keep_suffix |= clashing
