import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ganforge.metrics import crop_border, psnr, rgb_to_y, ssim


def test_psnr_of_a_constant_offset_matches_the_formula():
    target = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    # 0.1 in [-1, 1] is 0.05 on the [0, 1] scale: PSNR = 10 log10(1 / 0.05^2) = 26.02 dB.
    assert psnr(target + 0.1, target) == pytest.approx(10 * math.log10(1 / 0.05**2), rel=1e-5)
    assert psnr(target, target) == math.inf


def test_psnr_averages_per_image_scores():
    target = torch.zeros(2, 1, 8, 8)
    pred = target.clone()
    pred[0] += 0.2  # 0.1 on [0, 1]: 20 dB
    pred[1] += 0.02  # 0.01 on [0, 1]: 40 dB
    assert psnr(pred, target) == pytest.approx(30.0, rel=1e-5)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 24, 24, generator=g) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert 0 < ssim(noisy, x) < 0.9


def test_rgb_to_y_uses_bt601_studio_range():
    white, black = torch.ones(1, 3, 2, 2), -torch.ones(1, 3, 2, 2)
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    to_255 = lambda y: ((y + 1) / 2 * 255).flatten()  # noqa: E731
    assert torch.allclose(to_255(rgb_to_y(white)), torch.tensor(235.0), atol=1e-3)
    assert torch.allclose(to_255(rgb_to_y(black)), torch.tensor(16.0), atol=1e-3)
    assert torch.allclose(to_255(rgb_to_y(red)), torch.tensor(16.0 + 65.481), atol=1e-3)
    grey = torch.rand(1, 1, 4, 4)
    assert rgb_to_y(grey) is grey


def test_crop_border_cuts_each_side():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert torch.equal(crop_border(x, 2), x[..., 2:4, 2:4])
    assert crop_border(x, 0).shape == x.shape
    with pytest.raises(ValueError):
        crop_border(x, 3)


def _pair(seed):
    """An image and a blurred, noisy copy of it, on the [-1, 1] scale."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    return (blurred + 0.1 * torch.randn(target.shape, generator=g)).clamp(-1, 1), target


def _unit_numpy(image):
    return ((image + 1) / 2).permute(1, 2, 0).double().numpy()


def test_ssim_matches_scikit_image_with_gaussian_weights_of_sigma_1_5():
    pred, target = _pair(2)
    expected = np.mean([
        structural_similarity(_unit_numpy(p), _unit_numpy(t), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1, channel_axis=2)
        for p, t in zip(pred, target)
    ])
    assert ssim(pred, target) == pytest.approx(expected, abs=1e-5)


def test_psnr_matches_scikit_image_per_image():
    pred, target = _pair(3)
    expected = np.mean([peak_signal_noise_ratio(_unit_numpy(t), _unit_numpy(p), data_range=1) for p, t in zip(pred, target)])
    assert psnr(pred, target) == pytest.approx(expected, rel=1e-5)


def test_rgb_to_y_matches_scikit_image_ycbcr_on_random_colours():
    x = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(4)) * 2 - 1
    expected = rgb2ycbcr(_unit_numpy(x[0]))[..., 0]  # Y in [16, 235]
    assert ((rgb_to_y(x)[0, 0] + 1) / 2 * 255).double().numpy() == pytest.approx(expected, abs=1e-3)


def test_sharpness_is_the_laplacian_variance_as_a_share_of_the_original():
    from scipy import ndimage

    from ganforge.metrics.superres import sharpness

    g = torch.Generator().manual_seed(3)
    original = torch.rand(2, 1, 40, 48, generator=g, dtype=torch.float64) * 2 - 1
    blurred = torch.from_numpy(ndimage.gaussian_filter(original.numpy(), sigma=(0, 0, 1, 1)))
    # By hand: the 4-neighbour Laplacian (scipy's, with the edges mirrored as scikit-image's filter does), variance.
    by_hand = [np.var(ndimage.laplace(b[0].numpy(), mode="reflect")) / np.var(ndimage.laplace(o[0].numpy(), mode="reflect"))
               for b, o in zip(blurred, original)]
    assert sharpness(blurred, original) == pytest.approx(100 * np.mean(by_hand), rel=1e-6)
    assert sharpness(original, original) == pytest.approx(100)
    assert sharpness(blurred, original) < 30 < 100 < sharpness(original * 2, original)  # blur below, amplified above
