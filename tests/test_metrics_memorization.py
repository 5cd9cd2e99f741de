import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image

from ganforge.metrics import memorization_audit, save_closest_pairs
from ganforge.metrics.memorization import mann_whitney_z


@pytest.fixture
def sets():
    g = torch.Generator().manual_seed(0)
    train, heldout, fresh = (torch.randn(300, 16, generator=g) for _ in range(3))
    return train, heldout, fresh


def test_a_generator_that_copies_training_images_is_flagged(sets):
    train, heldout, _ = sets
    copies = train[torch.randperm(300, generator=torch.Generator().manual_seed(1))[:200]]
    report = memorization_audit(copies, train, heldout, num_pairs=4)
    assert report["near_copy_share"] == 1.0
    assert report["copying_z"] < -10
    g, t, d = report["closest_pairs"][0]
    assert torch.equal(copies[g], train[t]) and d < 1e-6


def test_a_generator_that_samples_the_distribution_is_not_flagged(sets):
    train, heldout, fresh = sets
    report = memorization_audit(fresh, train, heldout)
    assert report["near_copy_share"] < 0.15
    assert abs(report["copying_z"]) < 3
    assert len(report["closest_pairs"]) == 16


def test_mann_whitney_z_matches_scipy_with_ties():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 6, 40).astype(float), rng.integers(1, 7, 55).astype(float)
    res = scipy.stats.mannwhitneyu(a, b, use_continuity=False, method="asymptotic")
    expected = scipy.stats.norm.isf(res.pvalue / 2) * np.sign(res.statistic - len(a) * len(b) / 2)
    assert mann_whitney_z(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-9)


def test_closest_pairs_grid_has_one_row_per_pair(tmp_path, sets):
    train, heldout, _ = sets
    gen_images, train_images = torch.rand(5, 1, 8, 8) * 2 - 1, torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8)
    report = memorization_audit(train[:5], train, heldout, num_pairs=3)
    path = tmp_path / "audit" / "closest.png"
    save_closest_pairs(gen_images, train_images, report["closest_pairs"], path)
    with Image.open(path) as im:
        assert im.size == (2 * (8 + 2) + 2, 3 * (8 + 2) + 2)
