"""An in-memory image set: uint8 pixels plus labels, so that a training step never waits on decoding."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.data.cache import ImageCache, is_cache
from ganforge.data.embedded import EMBEDDED, load_embedded
from ganforge.data.folder import check_image_shape, load_folder
from ganforge.errors import UserError


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W) in a tensor; labels are -1 where unknown."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        """The images at `indices`, in that order."""
        return ImageSet(self.images[indices], self.labels[indices], self.class_names, self.source)


def native_resolution(spec: str) -> int | None:
    """The natural size of an embedded set, or None for a folder (which must be told)."""
    if spec in EMBEDDED:
        return int(load_embedded(spec)[0].shape[-1])
    return None


def load_imageset(spec: str, resolution: int, channels: int | None = None,
                  paths: list[Path] | None = None) -> ImageSet:
    """Load `spec` (an embedded set name or a folder path) at `resolution` x `resolution` (`paths`: a folder's
    images, when the caller has already searched it)."""
    check_image_shape(resolution, channels)
    if is_cache(spec):
        raise UserError(f"--data: {spec} is a prepared image cache, which only `ganforge train` (generation) reads "
                        "so far; give the folder it was prepared from")
    if spec in EMBEDDED:
        images, labels, names = load_embedded(spec)
        images = _resize_uint8(images, resolution)
        if channels == 3 and images.shape[1] == 1:
            images = np.repeat(images, 3, axis=1)
    else:
        images, labels, names = load_folder(Path(spec), resolution, channels, paths)
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), names, spec)


def split(data: ImageSet | ImageCache, max_images: int | None) -> tuple:
    """(training, held-out): `max_images` images chosen by a fixed seeded shuffle, and the rest, of the same kind
    as `data` (an in-memory ImageSet, or an ImageCache streamed from disk).

    The shuffle's seed is fixed (not the run's seed) so that runs with different seeds train on
    the same images and are evaluated against the same held-out ones.
    """
    if max_images is None or max_images >= len(data):
        return data, data.subset(torch.arange(0))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    return data.subset(perm[:max_images]), data.subset(perm[max_images:])


def _resize_uint8(images: np.ndarray, resolution: int) -> np.ndarray:
    if images.shape[-1] == resolution:
        return images
    out = [
        np.asarray(Image.fromarray(im[0]).resize((resolution, resolution), Image.Resampling.LANCZOS))[None]
        for im in images
    ]
    return np.stack(out)
