import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.metrics import density_coverage, fid, kid, precision_recall


def _gaussian(rng, n, d, shift=0.0):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def _scipy_fid(a, b):
    """The textbook formula with scipy's sqrtm, as an independent reference."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def test_fid_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    a, b = _gaussian(rng, 400, 16), _gaussian(rng, 300, 16, shift=0.3)
    expected = _scipy_fid(a, b)
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(expected, rel=1e-5)


def test_fid_of_a_set_with_itself_is_zero():
    x = _gaussian(np.random.default_rng(1), 200, 32)
    assert abs(fid(x, x)) < 1e-8


def test_kid_is_unbiased_for_samples_of_one_distribution():
    # Independent draws, one subset each: the mean of the estimates must sit at 0. The biased
    # estimator (diagonal terms kept) would be off by about 0.25 here, dozens of standard errors.
    rng = np.random.default_rng(2)
    estimates = [kid(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)), subsets=1, seed=i)[0] for i in range(40)]
    mean, sem = np.mean(estimates), np.std(estimates) / np.sqrt(len(estimates))
    assert abs(mean) < 3 * sem
    assert sem < 0.05


def test_kid_subsets_are_seeded_and_shifted_sets_score_clearly_above_zero():
    rng = np.random.default_rng(3)
    a, same, shifted = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.0
    mean_same, std_same = kid(a, same, subsets=20, subset_size=100)
    mean_shift, std_shift = kid(a, shifted, subsets=20, subset_size=100)
    assert abs(mean_same) < 3 * std_same
    assert mean_shift > 10 * std_shift > 0
    assert kid(a, shifted, subsets=5, subset_size=100, seed=7) == kid(a, shifted, subsets=5, subset_size=100, seed=7)
    assert kid(a, shifted[:40], subsets=3)[0] > 0  # subset_size clamps to the smaller set


def _clusters(rng, centres, per_cluster):
    return np.concatenate([rng.normal(size=(per_cluster, 2)) + c for c in centres])


CORNERS = [(50, 50), (50, -50), (-50, 50), (-50, -50)]


def test_identical_sets_have_full_precision_recall_and_coverage():
    x = np.random.default_rng(4).normal(size=(200, 4))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    assert density_coverage(x, x)["coverage"] == 1.0


def test_far_apart_sets_score_zero():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 1000
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(real, fake) == {"density": 0.0, "coverage": 0.0}


def test_fakes_that_drop_half_the_modes_lose_recall_not_precision():
    rng = np.random.default_rng(6)
    real = _clusters(rng, CORNERS, 150)
    fake = _clusters(rng, CORNERS[:2], 300)
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    assert pr["precision"] > 0.9
    assert pr["recall"] == pytest.approx(0.5, abs=0.06)
    assert dc["coverage"] == pytest.approx(0.5, abs=0.06)
    assert dc["density"] > 0.8


def test_chunking_gives_the_same_answer(monkeypatch):
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(150, 3)), rng.normal(size=(120, 3)) + 0.5
    whole = precision_recall(real, fake), density_coverage(real, fake)
    monkeypatch.setattr("ganforge.metrics.neighbours.CHUNK_ROWS", 32)
    assert (precision_recall(real, fake), density_coverage(real, fake)) == whole
