"""Images from a folder, searched recursively; the first-level sub-folders name the classes."""

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganforge.errors import UserError
from ganforge.imageio import GREY_MODES, IMAGE_SUFFIXES, UNREADABLE_IMAGE, open_rgb_or_l, pil_to_uint8, resize_center_crop


def find_images(root: Path, option: str = "--data") -> list[Path]:
    """All files under `root` with an image suffix, sorted so that runs are reproducible; errors name `option`."""
    if not root.exists():
        raise UserError(f"{option}: {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{option}: {root} is not a folder (or a known embedded set)")
    # Not `is_file()`: a broken link or a link loop named like an image must reach the decoder, to be counted.
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def check_image_shape(resolution: int, channels: int | None) -> None:
    """The --resolution and --channels every loader of training images accepts (channels None: from the data)."""
    if resolution < 4:
        raise UserError(f"--resolution: {resolution} is too small (at least 4)")
    if channels not in (None, 1, 3):
        raise UserError(f"--channels: {channels} is not 1 (greyscale) or 3 (RGB)")


def load_folder(root: Path, resolution: int, channels: int | None,
                paths: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every usable image under `root` once, resized and centre-cropped to `resolution`.

    Unreadable files are skipped and counted in one warning. Channels come from `channels`
    or, when None, from the data: greyscale only if every image is greyscale. `paths`: the folder's
    images when the caller has already searched it (`find_images`).
    """
    paths = find_images(root) if paths is None else paths
    if not paths:
        raise UserError(f"--data: {root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    channels = channels or folder_channels(paths)
    class_names = folder_classes(root, paths)
    class_index = {name: i for i, name in enumerate(class_names)}
    images, labels, bad = [], [], []
    for p in tqdm(paths, desc=f"decoding {root}", unit="img", leave=False, disable=len(paths) < 500):
        try:
            images.append(decode_image(p, resolution, channels))
        except UNREADABLE_IMAGE as e:
            bad.append(f"{p} ({e})")
            continue
        labels.append(label_of(root, p, class_index))
    if bad:
        warnings.warn(f"{root}: skipped {len(bad)} unreadable file(s), e.g. {bad[0]}", stacklevel=2)
    if not images:
        raise UserError(f"--data: {root} holds no readable image ({len(bad)} file(s) could not be decoded)")
    return np.stack(images), np.asarray(labels, dtype=np.int64), class_names


def decode_image(file: Path | BinaryIO, resolution: int, channels: int) -> np.ndarray:
    """One image file as uint8 (C, H, W), resized and centre-cropped: what every training set of a folder holds."""
    return pil_to_uint8(resize_center_crop(open_rgb_or_l(file, channels), resolution))


def folder_channels(paths: list[Path]) -> int:
    """1 if every image is greyscale, else 3: the channels a folder gets when none are asked for."""
    return 1 if all(is_grey(p) for p in paths) else 3


def folder_classes(root: Path, paths: list[Path]) -> list[str]:
    """The class names of a folder: its first-level sub-folders that hold images, sorted."""
    return sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})


def label_of(root: Path, path: Path, class_index: dict[str, int]) -> int:
    """The class of an image: its first-level sub-folder's index (`class_index`: name -> index), or -1 outside one."""
    parts = path.relative_to(root).parts
    return class_index[parts[0]] if len(parts) > 1 else -1


def is_grey(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return im.mode in GREY_MODES
    except UNREADABLE_IMAGE:
        return True  # unreadable files (a decompression bomb too) are skipped and counted when decoding; they must not force RGB
