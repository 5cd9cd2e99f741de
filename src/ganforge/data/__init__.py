"""Where images come from: embedded data sets and folders decoded once into memory, or on-disk caches streamed from."""

from ganforge.data.imageset import ImageSet, load_imageset, split

__all__ = ["ImageSet", "load_imageset", "split"]
