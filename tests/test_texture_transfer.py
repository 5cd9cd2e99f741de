"""`ganforge inpaint --texture`: the known pixels' detail quilted into a smooth fill."""

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage

from ganforge.classical_inpaint import smooth_fill
from ganforge.texture_transfer import PATCH, _grid, _waves, add_texture, blur, seam_mask


def _textured_image(size=96, seed=0):
    """A colour gradient with a fine random texture on it, (1, 3, size, size) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-0.5, 0.5, size)
    base = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 0.2)])
    grain = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.7) * 0.6
    return torch.from_numpy(base + grain[None]).float()[None].clamp(-1, 1)


def _box(size, top, left, side):
    hole = np.zeros((size, size), bool)
    hole[top : top + side, left : left + side] = True
    return hole


def _laplacian_variance(image: torch.Tensor, where: np.ndarray) -> float:
    """Variance of scipy's Laplacian of the grey image at `where` (an independent measure of fine detail)."""
    grey = image[0].mean(0).double().numpy()
    return float(ndimage.laplace(grey)[where].var())


def test_seam_is_the_minimum_error_cut():
    """The dynamic programme's cut costs exactly as little as the best of every connected cut, tried one by one."""
    rng = np.random.default_rng(0)
    rows, overlap = 6, 3
    for _ in range(20):
        error = torch.from_numpy(rng.random((rows, 5)))
        right = seam_mask(error, overlap)
        cut = right.int().argmax(1).numpy()  # first column on the new patch's side, per row
        best = min(sum(error[i, c].item() for i, c in enumerate(path))
                   for path in itertools.product(range(overlap), repeat=rows)
                   if all(abs(a - b) <= 1 for a, b in zip(path, path[1:])))
        assert sum(error[i, c].item() for i, c in enumerate(cut)) == pytest.approx(best)
        assert all(right[i, c:].all() and not right[i, :c].any() for i, c in enumerate(cut))


def test_texture_brings_back_the_detail_a_smooth_fill_lacks():
    image = _textured_image()
    hole = _box(96, 32, 32, 32)
    smooth = smooth_fill(image, torch.from_numpy(hole)[None, None])
    textured = add_texture(smooth, hole, hole, seed=0)
    inner = _box(96, 34, 34, 28)  # the hole's inside, away from its edge
    around = ~ndimage.binary_dilation(hole, iterations=4)
    around[:4], around[-4:], around[:, :4], around[:, -4:] = False, False, False, False
    reference = _laplacian_variance(image, around)
    assert _laplacian_variance(smooth, inner) < 0.05 * reference
    assert 0.5 * reference < _laplacian_variance(textured, inner) < 1.5 * reference
    # the colours stay the fill's: the detail is added, the low-pass is kept
    low_smooth, low_textured = blur(smooth, 3.0), blur(textured, 3.0)
    assert (low_textured - low_smooth)[:, :, torch.from_numpy(inner)].abs().mean() < 0.03
    # every hole pixel gets detail, and only the hole changes
    assert (textured == smooth)[:, :, torch.from_numpy(hole)].float().mean() < 0.02
    assert torch.equal(textured[:, :, torch.from_numpy(~hole)], smooth[:, :, torch.from_numpy(~hole)])


def test_flat_surroundings_get_no_texture():
    """Beside a textured part of the same colour, a hole in the flat part stays flat (the expected energy is ~0)."""
    image = _textured_image()
    image[:, :, :, :64] = image[:, :, :, :64].mean()  # the left two thirds flat, the rest textured
    image[:, :, :, 64:] = image[:, :, :, 64:] - image[:, :, :, 64:].mean() + image[:, :, :, :64].mean()
    hole = _box(96, 36, 8, 24)
    smooth = smooth_fill(image, torch.from_numpy(hole)[None, None])
    textured = add_texture(smooth, hole, hole, seed=0)
    assert (textured - smooth)[:, :, torch.from_numpy(hole)].abs().max() < 0.02


def test_texture_is_seeded_and_needs_room():
    image = _textured_image()
    hole = _box(96, 30, 30, 30)
    smooth = smooth_fill(image, torch.from_numpy(hole)[None, None])
    first = add_texture(smooth, hole, hole, seed=3)
    assert torch.equal(first, add_texture(smooth, hole, hole, seed=3))
    assert not torch.equal(first, add_texture(smooth, hole, hole, seed=4))
    # no patch of known pixels to copy from (the image is nearly all hole, or smaller than a patch): unchanged
    most = np.ones((96, 96), bool)
    most[:3] = False
    assert torch.equal(add_texture(smooth, most, most, seed=0), smooth)
    tiny = smooth[:, :, : PATCH - 1, : PATCH - 1]
    assert torch.equal(add_texture(tiny, hole[: PATCH - 1, : PATCH - 1], hole[: PATCH - 1, : PATCH - 1], 0), tiny)


def test_pixels_of_other_holes_are_never_copied():
    """A second, unfilled hole holding horizontal stripes as strong as the texture is not real image: no detail is
    taken from it, so the fill's detail stays as isotropic as the texture's."""
    image = _textured_image()
    fill, other = _box(96, 10, 10, 24), _box(96, 50, 50, 40)
    stripes = torch.from_numpy(np.indices((40, 40))[0] % 2 * 2.0 - 1).float() * 0.15
    garbage = image.clone()
    garbage[:, :, 50:90, 50:90] = image[:, :, 50:90, 50:90].mean((2, 3), keepdim=True) + stripes
    smooth = smooth_fill(garbage, torch.from_numpy(fill)[None, None])
    textured = add_texture(smooth, fill, fill | other, seed=0)
    detail = (textured - blur(textured, 2.0))[0].mean(0)[12:32, 12:32]
    down, across = detail.diff(dim=0).pow(2).mean(), detail.diff(dim=1).pow(2).mean()
    assert 0.7 < down / across < 1.4  # random grain; the stripes alone would make it far above 1
    assert torch.equal(textured[:, :, torch.from_numpy(~fill)], smooth[:, :, torch.from_numpy(~fill)])


@pytest.mark.parametrize("value", [-1.0, 0.0, 0.5, 0.37])
def test_a_flat_image_gets_nothing_added(value):
    """A perfect match scores zero; rounding in the expanded squares must not make that an error."""
    image = torch.full((1, 3, 64, 64), value)
    hole = _box(64, 20, 20, 20)
    assert torch.equal(add_texture(image, hole, hole, seed=0), image)


def test_the_fill_ignores_what_lies_under_other_holes():
    """Pixels under another hole of the same window are what the user wants gone: changing them changes nothing."""
    image = _textured_image()
    fill, other = _box(96, 10, 10, 24), _box(96, 36, 12, 30)  # two pixels below the fill
    hidden = image.clone()
    hidden[:, :, 36:66, 12:42] = torch.rand(1, 3, 30, 30, generator=torch.Generator().manual_seed(5)) * 2 - 1
    smooth = smooth_fill(image, torch.from_numpy(fill | other)[None, None])
    first = add_texture(torch.where(torch.from_numpy(other), image, smooth), fill, fill | other, seed=0)
    second = add_texture(torch.where(torch.from_numpy(other), hidden, smooth), fill, fill | other, seed=0)
    assert torch.equal(first[:, :, torch.from_numpy(fill)], second[:, :, torch.from_numpy(fill)])


def test_the_grid_covers_every_hole_and_no_wave_holds_overlapping_patches():
    for size in range(PATCH, 60):
        limit = size - PATCH
        for first in range(0, size):
            for last in range(first, size):
                origins = _grid(max(0, first - 6), last, limit)
                covered = set().union(*(range(o, o + PATCH) for o in origins))
                assert set(range(first, last + 1)) <= covered and 0 <= origins[0] and origins[-1] <= limit
                if len(origins) >= 4:
                    assert all(4 <= b - a <= 6 for a, b in zip(origins, origins[1:])), origins
    origins = _grid(0, 63, 52)  # a hole as wide as the image: steps below 6
    rows, cols = origins[:5], origins
    place = {(i, j): (rows[i], cols[j]) for i in range(len(rows)) for j in range(len(cols))}
    waves = _waves(len(rows), len(cols))
    wave_of = {p: k for k, wave in enumerate(waves) for p in wave}
    assert sorted(wave_of) == sorted(place)

    def overlap(p, q):
        return abs(place[p][0] - place[q][0]) < PATCH and abs(place[p][1] - place[q][1]) < PATCH

    for p in place:
        for q in place:
            if p != q and overlap(p, q):
                assert wave_of[p] != wave_of[q]
                assert (wave_of[q] < wave_of[p]) == (q < p)  # raster order decides who is laid first
