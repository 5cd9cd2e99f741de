"""ganforge: train GANs on a folder of images, then turn them into pictures."""

__version__ = "0.1.0"
