"""Reading and writing the user's own image files, for the commands that change images one by one (upscale, inpaint,
stylize).

Unlike training data, which is decoded straight to 8-bit tensors (`ganforge.imageio`), these keep
what the file holds (mode, alpha, 16 bits) so the command can write back the same kind of image,
and they mirror an input folder into an output folder without one output overwriting another.
"""

import logging
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo
from tqdm import tqdm

from ganforge.atomic import atomic_path
from ganforge.errors import UserError
from ganforge.data.folder import find_images
from ganforge.imageio import (HIGH_DEPTH_MODES, IMAGE_SUFFIXES, UNREADABLE_IMAGE, check_writable, check_writable_folder,
                              image_format)

log = logging.getLogger("ganforge")


def open_image(path: Path) -> Image.Image:
    """An image file decoded whole in its own mode, EXIF orientation applied; a note when it has more than 8 bits."""
    with Image.open(path) as im:
        if im.mode in HIGH_DEPTH_MODES or im.info.get("bits", 8) > 8:
            log.info("%s: 16-bit image converted to 8 bits (the models work on 8-bit pixels)", path)
        im.load()
        return ImageOps.exif_transpose(im)


def read_image(path: Path) -> Image.Image:
    """`open_image`, with a file it cannot decode as a UserError naming the file."""
    try:
        return open_image(path)
    except UNREADABLE_IMAGE as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def checked_output(source: Path, out: str | Path | None, tag: str, overwrite: bool) -> Path:
    """Where a command writes what it makes of `source`, checked before the work (nothing is created).

    `out`, or by default `<stem><tag>.png` beside an input file and `<name><tag>` beside an input
    folder. An output file must be of a format it can write, and new unless `overwrite`; an output
    folder must not be the input folder.
    """
    if source.is_file():
        out = Path(out) if out else source.with_name(f"{source.stem}{tag}.png")
        image_format(out)
        if out.exists() and not overwrite:
            raise UserError(f"--out: {out} exists; add --overwrite to replace it")
        check_writable(out, "--out")
        return out
    out = Path(out) if out else source.with_name(f"{source.name}{tag}")
    if out.resolve() == source.resolve():
        raise UserError(f"--out: {out} is the input folder; choose another folder")
    check_writable_folder(out, "--out")
    return out


def plain_mode(im: Image.Image) -> Image.Image:
    """Palette, 1-bit, CMYK and other colour spaces as RGB(A) or L, so alpha and greyness show in the mode."""
    if im.mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else ("L" if im.mode == "1" else "RGB"))
    return im


def save_image_file(im: Image.Image, path: Path, text: dict[str, str] | None = None) -> None:
    """Write `im` atomically in the format of `path`'s suffix, or a UserError naming --out (alpha it cannot keep, a
    full disk). A PNG keeps `text` as text chunks (how the image was made); other formats do not."""
    fmt = image_format(path)
    if fmt in ("JPEG", "BMP") and im.mode in ("RGBA", "LA"):
        raise UserError(f"--out: {path} cannot keep the alpha channel; use .png or .webp")
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if text and fmt == "PNG":
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    try:
        with atomic_path(path) as tmp:
            im.save(tmp, format=fmt, **options)
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


def map_folder(source: Path, out: Path, convert: Callable[[Path], Image.Image], overwrite: bool, verb: str,
               text: dict[str, str] | None = None) -> None:
    """Write `convert(path)` for every image under `source` into `out` (named by `output_paths`, with `text`).

    Outputs that exist are kept unless `overwrite`, so an interrupted run can be repeated; a file
    that `convert` cannot handle (unreadable, or a UserError) is skipped, and all skipped files are
    reported in one warning at the end: none is lost silently.
    """
    paths = [p for p in find_images(source) if out.resolve() not in (p.parent.resolve(), *p.parent.resolve().parents)]
    if not paths:
        raise UserError(f"{source}: holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    targets, renamed = output_paths(source, paths, out)
    if renamed:
        log.info("%d input(s) differ from another only in suffix; their outputs keep it: %s", len(renamed),
                 ", ".join(f"{p.relative_to(source)} -> {targets[p].relative_to(out)}" for p in renamed[:3])
                 + (" ..." if len(renamed) > 3 else ""))
    bad, existing = [], 0
    for path in tqdm(paths, desc=verb, unit="img"):
        target = targets[path]
        if target.exists() and not overwrite:
            existing += 1
            continue
        try:
            result = convert(path)
        except (*UNREADABLE_IMAGE, UserError) as e:
            bad.append(f"{path} ({e})")
            continue
        save_image_file(result, target, text)
    if existing:
        log.info("kept %d output(s) that already existed in %s (--overwrite replaces them)", existing, out)
    if bad:
        warnings.warn(f"skipped {len(bad)} file(s) that could not be {verb}: " + "; ".join(bad[:3])
                      + (" ..." if len(bad) > 3 else ""), stacklevel=3)


def save_converted(source: Path, content: Image.Image | None, out: Path, convert: Callable[[Image.Image], Image.Image],
                   overwrite: bool, verb: str, text: dict[str, str] | None = None) -> Path:
    """Save `convert` of one image (`content`, read from the file `source`) as `out`, or of every image of
    the folder `source` into `out` (`map_folder`); a UserError about the one image names its file."""
    if content is None:
        map_folder(source, out, lambda path: convert(open_image(path)), overwrite, verb, text)
        return out
    try:
        result = convert(content)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    save_image_file(result, out, text)
    return out
