"""A training set in the form its size calls for: in memory while small, streamed from an on-disk cache when large.

In memory (an ImageSet) a training step indexes a uint8 tensor, the fastest there is. A prepared cache
(`ganforge data prepare`) is streamed from as it is; so is a plain folder whose decoded size exceeds
AUTO_CACHE_BYTES, after it is decoded once into a cache under the cache folder. Either way the
trainer sees `len`, `shape` and a batch of uint8 pixels for given indices.
"""

import hashlib
import logging
from pathlib import Path

import torch

from ganforge.data.cache import CachedCrops, ImageCache, is_cache, prepare_cache, source_files
from ganforge.data.embedded import EMBEDDED, cache_dir
from ganforge.data.folder import find_images, folder_channels
from ganforge.data.imageset import ImageSet, load_imageset
from ganforge.errors import UserError

log = logging.getLogger("ganforge")
AUTO_CACHE_BYTES = 2 << 30  # a folder larger than this decoded is cached on disk and streamed, not held in memory


def open_training_set(spec: str, resolution: int, channels: int | None,
                      distributed: bool = False) -> ImageSet | ImageCache:
    """The images of `spec` (an embedded set, a folder or a prepared cache) at `resolution`, in memory or streamed.

    Under torchrun (`distributed`) a large folder must have its cache already: every rank would otherwise
    wait on one decoding a whole folder, longer than a process group waits.
    """
    if is_cache(spec):
        return _open_prepared(spec, resolution, channels)
    paths = None
    if spec not in EMBEDDED:
        paths = find_images(Path(spec))
        decoded = len(paths) * 3 * resolution**2  # as RGB whatever the channels: one answer for a run and its resume
        if decoded > AUTO_CACHE_BYTES:
            channels = channels or folder_channels(paths)
            size = f"{len(paths)} images, {decoded / 2**30:.1f} GiB decoded"
            return _open_auto_cache(spec, paths, resolution, channels, size, distributed)
    return load_imageset(spec, resolution, channels, paths)  # the folder searched once


def _open_prepared(spec: str, resolution: int, channels: int | None) -> ImageCache:
    cache = ImageCache.open(spec)
    if resolution != cache.resolution:
        raise UserError(f"--resolution: {spec} holds {cache.resolution}x{cache.resolution} images (it was prepared "
                        f"with --resolution {cache.resolution}); leave --resolution out, or prepare another cache")
    if channels not in (None, cache.channels):
        raise UserError(f"--channels: {spec} holds images of {cache.channels} channel(s); leave --channels out, "
                        f"or prepare another cache with --channels {channels}")
    return cache


def auto_cache_folder(source: Path, resolution: int, channels: int) -> Path:
    """Where a large folder's cache lives: named after the folder, keyed by its absolute path and the settings.

    `channels` is the number the images get (asked for, or found in the data), so that a resumed run, whose
    config names them, finds the cache its first part made.
    """
    source = source.resolve()
    key = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    return cache_dir() / "images" / f"{source.name}-{key}-{resolution}px-{channels}ch"


def _open_auto_cache(spec: str, paths: list[Path], resolution: int, channels: int, size: str,
                     distributed: bool) -> ImageCache:
    """The cache of the large folder `spec` (whose images are `paths`), prepared now unless it is up to date.

    The folder is searched once (by the caller), its files stat'ed once, and the manifest read at most once.
    """
    folder = auto_cache_folder(Path(spec), resolution, channels)
    if distributed:
        try:
            return ImageCache.open(folder, source=spec, files=source_files(Path(spec), paths))
        except UserError:
            raise UserError(f"--data: {spec} is too large to hold in memory ({size}); under torchrun, prepare its "
                            f"cache first (ganforge data prepare {spec} --resolution {resolution} --out FOLDER) and "
                            "train with --data FOLDER") from None
    log.info("%s: %s, more than the %.0f GiB held in memory: decoding it once into %s and streaming from there",
             spec, size, AUTO_CACHE_BYTES / 2**30, folder)
    report = prepare_cache(spec, resolution, folder, channels=channels, paths=paths)
    log.info(report.summary())
    return ImageCache.from_manifest(folder, report.manifest, source=spec)


def read_images(data: torch.Tensor | ImageCache | CachedCrops, indices: torch.Tensor) -> torch.Tensor:
    """The uint8 images (or crops) at `indices` of a training set, held in memory as a tensor or read from a cache."""
    return data[indices] if isinstance(data, torch.Tensor) else data.read(indices)


def in_memory(data: ImageSet | ImageCache, limit: int) -> ImageSet:
    """`data` itself if it is in memory; from a cache, a fixed seeded choice of at most `limit` of its images, read once."""
    if isinstance(data, ImageSet):
        return data
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:limit].sort().values
    return ImageSet(data.read(pick), data.labels[pick], data.class_names, data.source)
