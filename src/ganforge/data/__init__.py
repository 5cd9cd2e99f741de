"""Where images come from: embedded data sets and folders, decoded once into memory."""

from ganforge.data.imageset import ImageSet, load_imageset

__all__ = ["ImageSet", "load_imageset"]
