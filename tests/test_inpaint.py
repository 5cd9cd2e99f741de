"""Inpainting: the networks, hole scores against independent references, window-by-window filling."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ganforge.classical_inpaint import available_methods, classical_fill
from ganforge.fill import fill_holes, hole_windows
from ganforge.metrics.inpaint import hole_scores
from ganforge.nets.inpaint import InpaintGenerator


def test_hole_scores_match_numpy_and_scikit_image():
    rng = np.random.default_rng(0)
    original = rng.random((1, 3, 48, 40))
    filled = np.clip(original + rng.normal(0, 0.1, original.shape), 0, 1)
    mask = np.zeros((1, 1, 48, 40))
    mask[..., 14:30, 12:28] = 1
    hole = np.broadcast_to(mask, original.shape).astype(bool)
    filled[~hole] = original[~hole]
    scores = hole_scores(torch.from_numpy(filled * 2 - 1), torch.from_numpy(original * 2 - 1), torch.from_numpy(mask))
    mse = ((filled - original)[hole] ** 2).mean()
    assert scores["psnr_hole"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
    assert scores["l1_hole"] == pytest.approx(np.abs(filled - original)[hole].mean(), abs=1e-6)
    _, ssim_map = structural_similarity(original[0].transpose(1, 2, 0), filled[0].transpose(1, 2, 0), data_range=1.0,
                                        channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        full=True)
    assert scores["ssim_hole"] == pytest.approx(ssim_map[hole[0].transpose(1, 2, 0)].mean(), abs=2e-3)


def test_a_perfect_fill_scores_perfectly_and_needs_a_hole():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:8, 4:8] = 1
    scores = hole_scores(x, x, mask)
    assert scores["l1_hole"] == 0 and scores["ssim_hole"] == pytest.approx(1) and scores["psnr_hole"] >= 119
    with pytest.raises(ValueError, match="needs a hole"):
        hole_scores(x, x, torch.zeros_like(mask))


@pytest.mark.parametrize("method", available_methods())
def test_classical_fills_change_only_the_hole_and_follow_smooth_images(method):
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([2 * x + y, 3 * y, 100 + x], axis=-1).astype(np.uint8)  # smooth ramps
    mask = np.zeros((64, 64), bool)
    mask[20:36, 24:40] = True
    out = classical_fill(method, image, mask)
    assert np.array_equal(out[~mask], image[~mask])
    assert np.abs(out.astype(int) - image)[mask].mean() < 6  # a ramp is continued, not blanked


def test_ffc_sees_the_whole_image_and_conv_does_not():
    for block, reaches in (("ffc", True), ("conv", False)):
        g = InpaintGenerator(3, 8, 2, 2, block).eval()
        torch.manual_seed(0)
        x = (torch.rand(1, 3, 96, 96) * 2 - 1).requires_grad_(True)
        g(x, torch.zeros(1, 1, 96, 96))[0, :, 0, 0].sum().backward()
        assert bool(x.grad[0, :, -8:, -8:].abs().sum() > 0) == reaches


def test_generator_takes_any_size_and_ignores_hole_pixels():
    g = InpaintGenerator(1, 8, 2, 1).eval()
    x = torch.rand(1, 1, 29, 23) * 2 - 1
    mask = torch.zeros(1, 1, 29, 23)
    mask[..., 5:15, 5:15] = 1
    y = g(x, mask)
    assert y.shape == x.shape
    scrambled = torch.where(mask.bool(), torch.rand_like(x), x)
    assert torch.equal(g(scrambled, mask), y)  # what lies under the hole cannot leak into the fill


def test_holes_are_filled_window_by_window_independently_of_layout():
    torch.manual_seed(0)
    g = InpaintGenerator(3, 8, 2, 1).eval()
    image = torch.rand(1, 3, 200, 300) * 2 - 1
    near = np.zeros((200, 300), bool)
    near[20:40, 20:50] = True
    far = np.zeros((200, 300), bool)
    far[150:170, 240:280] = True
    both = fill_holes(g, image, near | far, context=16, work_size=512)
    assert len(hole_windows(near | far, 16)) == 2
    outside = ~torch.from_numpy(near | far)
    assert torch.equal(both[:, :, outside], image[:, :, outside])
    for hole in (near, far):  # each hole's fill is what it gets alone
        alone = fill_holes(g, image, hole, context=16, work_size=512)
        assert torch.equal(both[:, :, torch.from_numpy(hole)], alone[:, :, torch.from_numpy(hole)])
    # A larger working size changes nothing for windows that already fit.
    assert torch.equal(fill_holes(g, image, near | far, context=16, work_size=1024), both)


def test_windows_of_nearby_holes_merge():
    mask = np.zeros((100, 100), bool)
    mask[10:20, 10:20] = True
    mask[10:20, 35:45] = True  # its window (25..55) overlaps the first hole's (0..30)
    assert hole_windows(mask, 8) == [(0, 0, 30, 55)]
    mask[10:20, 35:45] = False
    mask[10:20, 40:50] = True  # windows 0..30 and 30..60 only touch: two fills
    assert hole_windows(mask, 8) == [(0, 0, 30, 30), (0, 30, 30, 60)]
