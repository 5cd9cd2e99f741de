"""Whole photographs at their own size, for super-resolution: the embedded `photos` set or a folder.

The embedded set is the natural photographs and textures that ship inside scikit-image,
scikit-learn and matplotlib (no download). Four of them are held out, always the same ones, so that every
model is scored on photos it never trained on.

Training sees reproducible crops: `extract_patches` cuts each photo into
overlapping square patches on a grid (capped per photo for large folders), held in memory as
uint8 like every other training set. A prepared cache's images are cut on the same grid, and
each crop read from disk alone (`ImageCache.crops`).
"""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.data.folder import find_images
from ganforge.errors import UserError
from ganforge.imageio import UNREADABLE_IMAGE, open_rgb_or_l, pil_to_uint8

EMBEDDED_PHOTOS = "photos"
# (package, file) pairs. Greyscale textures are used as RGB (equal channels): detail is detail.
TRAIN_PHOTOS = [
    ("skimage", "astronaut.png"), ("skimage", "coffee.png"), ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "ihc.png"), ("skimage", "motorcycle_left.png"), ("skimage", "motorcycle_right.png"),
    ("skimage", "retina.jpg"), ("skimage", "brick.png"), ("skimage", "grass.png"), ("skimage", "gravel.png"),
    ("skimage", "moon.png"), ("skimage", "coins.png"), ("skimage", "color.png"), ("sklearn", "china.jpg"),
    # Added after the first 14 (which `--max-images 14` still picks, as the inpaint-photos recipe does): the other
    # photographs of the installed packages. Left out: synthetic drawings (phantom, chessboards, horse's
    # silhouette, logos), a motion-blurred photo (clock_motion) and photos smaller than a 96 px crop.
    ("skimage", "cell.png"), ("skimage", "text.png"), ("skimage", "page.png"), ("matplotlib", "grace_hopper.jpg"),
]
HELDOUT_PHOTOS = [("skimage", "chelsea.png"), ("skimage", "rocket.jpg"), ("skimage", "camera.png"),
                  ("sklearn", "flower.jpg")]
DATA_FOLDERS = {"skimage": "data", "sklearn": "datasets/images", "matplotlib": "mpl-data/sample_data"}
PACKAGE_NAMES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def _embedded_path(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"--data photos: needs the {PACKAGE_NAMES[package]} package "
                        "(it ships the photos); reinstall ganforge")
    return Path(spec.submodule_search_locations[0]) / DATA_FOLDERS[package] / name


def load_photo(path: Path) -> np.ndarray:
    """A photo as RGB uint8 (3, H, W): greyscale replicated, alpha flattened, EXIF orientation applied."""
    return pil_to_uint8(open_rgb_or_l(path, channels=3))


def seeded_order(n: int) -> list[int]:
    """0..n-1 shuffled the same way every time: its first k are a run's k training photos."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()


def load_photos(spec: str, max_images: int | None = None,
                option: str = "--data") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training, held-out) photos of `spec`: the embedded set's fixed split, or a folder split by `max_images`.

    For the embedded set, `max_images` keeps the first that many training photos of `TRAIN_PHOTOS`;
    the held-out photos stay the same four, so runs of any size are scored alike. Errors name
    `option`, the flag that gave `spec`.
    """
    if spec == EMBEDDED_PHOTOS:
        train = TRAIN_PHOTOS[:max_images]  # all of them without max_images
        return [load_photo(_embedded_path(*p)) for p in train], [load_photo(_embedded_path(*p)) for p in HELDOUT_PHOTOS]
    paths = find_images(Path(spec), option)
    if not paths:
        raise UserError(f"{option}: {spec} holds no image files")
    photos, bad = [], []
    for p in tqdm(paths, desc=f"reading {spec}", unit="img", leave=False, disable=len(paths) < 50):
        try:
            photos.append(load_photo(p))
        except UNREADABLE_IMAGE:
            bad.append(p)
    if bad:
        warnings.warn(f"{spec}: skipped {len(bad)} unreadable file(s), e.g. {bad[0]}", stacklevel=2)
    if not photos:
        raise UserError(f"{option}: {spec} holds no readable image")
    if max_images is None or max_images >= len(photos):
        return photos, []
    order = seeded_order(len(photos))
    return [photos[i] for i in order[:max_images]], [photos[i] for i in order[max_images:]]


MAX_PATCHES = 20_000  # crops a photo set gives at most (more only when there are more photos: one each)


def crops_per_photo(photos: int, max_patches: int = MAX_PATCHES) -> int:
    """How many crops each of `photos` photos gives at most, so that one huge photo cannot crowd out the others."""
    return max(1, max_patches // max(1, photos))


def crop_corners(height: int, width: int, size: int, limit: int, seed: int) -> list[tuple[int, int]]:
    """(y, x) of the overlapping `size` x `size` crops of a height x width photo: a grid of stride size/3 whose last
    crops touch the far edges, or at most `limit` of them (a fixed choice seeded by `seed`, in grid order)."""
    stride = max(1, size // 3)
    ys = sorted(set(range(0, height - size + 1, stride)) | {height - size})
    xs = sorted(set(range(0, width - size + 1, stride)) | {width - size})
    corners = [(y, x) for y in ys for x in xs]
    if len(corners) > limit:
        pick = torch.randperm(len(corners), generator=torch.Generator().manual_seed(seed))[:limit]
        corners = [corners[j] for j in sorted(pick.tolist())]
    return corners


def extract_patches(photos: list[np.ndarray], size: int, max_patches: int = MAX_PATCHES) -> torch.Tensor:
    """`crop_corners`' crops of every photo (photo i seeds its choice with i), as uint8 (N, 3, size, size).

    A prepared cache gives the same crops of its images without holding them (`ImageCache.crops`).
    """
    limit = crops_per_photo(len(photos), max_patches)
    patches, too_small = [], 0
    for i, photo in enumerate(photos):
        h, w = photo.shape[1:]
        if h < size or w < size:
            too_small += 1
            continue
        patches += [photo[:, y : y + size, x : x + size] for y, x in crop_corners(h, w, size, limit, seed=i)]
    if too_small:
        warnings.warn(f"skipped {too_small} photo(s) smaller than the {size}x{size} training crop", stacklevel=2)
    if not patches:
        raise UserError(f"--patch-size: every photo is smaller than {size}x{size}; use a smaller --patch-size")
    return torch.from_numpy(np.ascontiguousarray(np.stack(patches)))
