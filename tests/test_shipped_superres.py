"""The shipped super-resolution models are tested for what they are for: beating bicubic on photos they never saw.

Each model is scored with the papers' protocol (metrics/superres.py) on 12 fixed 128x128 crops
of the four held-out embedded photos (centre, upper-left and lower-right quarter of each), beside
MATLAB-style bicubic. MARGINS are the measured mean PSNR-Y gains less 0.2-0.3 dB of slack:

    superres-x2 +2.43 dB, superres-x2-gan +2.36, superres-x4 +2.25, superres-x4-gan +1.53

The same generator with every layer re-initialised at random (the zero-initialised last layer
too) must fall short of its margin: it measured -5.8 dB at x2 and -1.5 dB at x4. So must the
untrained generator, whose output is its internal a = -0.75 bicubic skip (+0.19 and +0.14 dB):
the margins are far above what the architecture gives for free.
"""

import numpy as np
import pytest
import torch

from ganforge.data.degrade import bicubic_upsample, lr_hr_pair
from ganforge.data.photos import HELDOUT_PHOTOS, _embedded_path, load_photo
from ganforge.metrics.superres import mean_scores, score
from ganforge.pipelines.upscaling import load_upscaler, pick_model
from ganforge.tiling import upscale_tensor

CROP = 128
CORNERS = ((0.5, 0.5), (0.25, 0.25), (0.75, 0.75))  # crop centres, as fractions of the photo's height and width
MARGINS = {(2, "fidelity"): 2.1, (2, "gan"): 2.05, (4, "fidelity"): 1.95, (4, "gan"): 1.2}  # dB over bicubic


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    out = []
    for spec in HELDOUT_PHOTOS:
        photo = load_photo(_embedded_path(*spec))
        h, w = photo.shape[1:]
        for fy, fx in CORNERS:
            y, x = int(fy * h) - CROP // 2, int(fx * w) - CROP // 2
            out.append(photo[:, y : y + CROP, x : x + CROP])
    return out


def gain(generator: torch.nn.Module, pairs: list) -> float:
    """Mean PSNR-Y of the generator's 8-bit outputs minus that of MATLAB-style bicubic, in dB."""
    scale = generator.scale
    model = mean_scores([score(upscale_tensor(generator, lr), hr, scale) for lr, hr in pairs])["psnr_y"]
    bicubic = mean_scores([score(bicubic_upsample(lr, scale), hr, scale) for lr, hr in pairs])["psnr_y"]
    return model - bicubic


@pytest.mark.parametrize("scale,variant", sorted(MARGINS))
def test_shipped_model_beats_bicubic_and_random_weights_do_not(crops, scale, variant):
    generator, _ = load_upscaler(pick_model(None, scale, variant), scale, "cpu")
    pairs = [lr_hr_pair(crop, scale, seed=i) for i, crop in enumerate(crops)]
    margin = MARGINS[scale, variant]
    trained = gain(generator, pairs)
    assert trained > margin, f"x{scale} {variant}: {trained:+.2f} dB over bicubic, below the {margin} dB margin"
    torch.manual_seed(0)
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    assert gain(generator, pairs) < margin
    torch.nn.init.zeros_(generator.tail.weight)  # trunk still random, but the tail adds nothing: the bicubic skip alone
    torch.nn.init.zeros_(generator.tail.bias)
    assert gain(generator, pairs) < margin
