import pytest
import torch

from ganforge.data import load_imageset
from ganforge.errors import UserError


def test_folder_loads_every_mode_and_skips_junk(image_folder):
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        data = load_imageset(str(image_folder), 16)
    assert data.images.shape == (5, 3, 16, 16)  # one greyscale image among RGB ones: RGB
    assert data.images.dtype == torch.uint8
    assert data.class_names == ["cats", "dogs"]
    assert sorted(data.labels.tolist()) == [0, 0, 1, 1, 1]


def test_channels_can_be_forced(image_folder):
    with pytest.warns(UserWarning):
        data = load_imageset(str(image_folder), 8, channels=1)
    assert data.images.shape[1] == 1


def test_alpha_is_flattened_onto_white(tmp_path):
    from PIL import Image

    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    data = load_imageset(str(tmp_path), 8)
    assert data.images.min() == 255


def test_16_bit_images_keep_their_brightness(tmp_path):
    """16-bit pixels map to 8 bits by one fixed rule (v / 257), not stretched per image."""
    import numpy as np
    from PIL import Image

    grey = np.array([[0, 64, 128, 200]] * 4, dtype=np.uint8)  # a dim image: its maximum is far below white
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(grey).save(tmp_path / "flat.png")
    data = load_imageset(str(tmp_path), 4)
    assert data.images.shape == (2, 1, 4, 4)
    assert torch.equal(data.images[0], data.images[1])
    assert data.images.max() == 200


def test_missing_and_empty_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_imageset(str(tmp_path / "nope"), 32)
    with pytest.raises(UserError, match="holds no image"):
        load_imageset(str(tmp_path), 32)
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(UserError, match="no readable image"), pytest.warns(UserWarning):
        load_imageset(str(tmp_path), 32)


def test_embedded_sets():
    digits = load_imageset("digits", 8)
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.max() == 255
    mnist = load_imageset("mnist5k", 32)
    assert mnist.images.shape == (5000, 1, 32, 32)
    assert set(mnist.labels.tolist()) == set(range(10))
