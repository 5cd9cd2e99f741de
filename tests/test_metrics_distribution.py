import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch
from sklearn.metrics.pairwise import polynomial_kernel
from sklearn.neighbors import NearestNeighbors

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


def _sklearn_mmd2(x, y):
    """The unbiased MMD² of Bińkowski et al. with the cubic polynomial kernel, from scikit-learn's kernel."""
    kernel = lambda p, q: polynomial_kernel(p, q, degree=3, gamma=1 / x.shape[1], coef0=1)  # noqa: E731
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    m, n = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return within_x + within_y - 2 * k_xy.mean()


def test_kid_averages_to_the_full_set_mmd_of_an_independent_implementation():
    # The unbiased MMD² averaged over all subsets of the sets is the MMD² of the whole sets (a
    # U-statistic property), so many random subsets must land within their standard error of it.
    rng = np.random.default_rng(9)
    a, b = _gaussian(rng, 60, 4), _gaussian(rng, 60, 4, shift=0.4)
    result = kid(a, b, subsets=3000)
    assert result["kid_subset_size"] == 30 and result["kid_subsets"] == 3000
    assert result["kid"] == pytest.approx(_sklearn_mmd2(a, b), abs=4 * result["kid_std"] / np.sqrt(3000))


def test_kid_std_is_the_spread_of_half_size_subsets():
    # 500 against 500: subsets of the whole set, reshuffled, would all give one number (std ~1e-16).
    rng = np.random.default_rng(10)
    a, b = _gaussian(rng, 500, 8), _gaussian(rng, 500, 8, shift=0.2)
    result = kid(a, b)
    assert result["kid_subset_size"] == 250 and result["kid_subsets"] == 100
    draws = [_sklearn_mmd2(a[rng.permutation(500)[:250]], b[rng.permutation(500)[:250]]) for _ in range(100)]
    assert 0.75 < result["kid_std"] / np.std(draws) < 1.33  # two estimates of one spread from 100 draws each
    assert result["kid"] == pytest.approx(np.mean(draws), abs=3 * np.std(draws) / np.sqrt(100))


def test_kid_seed_picks_the_subsets():
    rng = np.random.default_rng(11)
    a, b = _gaussian(rng, 100, 4), _gaussian(rng, 100, 4, shift=0.3)
    assert kid(a, b, subsets=5, seed=7) == kid(a, b, subsets=5, seed=7)
    assert kid(a, b, subsets=5, seed=7)["kid"] != kid(a, b, subsets=5, seed=8)["kid"]
    with pytest.raises(ValueError, match="at least 4 samples"):
        kid(a[:3], b)


def test_kid_is_unbiased_for_samples_of_one_distribution():
    # Independent draws, one subset each: the mean of the estimates must sit at 0. The biased
    # estimator (diagonal terms kept) would be off by about 0.5 here, dozens of standard errors.
    rng = np.random.default_rng(2)
    estimates = [kid(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)), subsets=1, seed=i)["kid"] for i in range(40)]
    mean, sem = np.mean(estimates), np.std(estimates) / np.sqrt(len(estimates))
    assert abs(mean) < 3 * sem
    assert sem < 0.05


def test_kid_of_shifted_sets_is_clearly_above_zero():
    rng = np.random.default_rng(3)
    a, same, shifted = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.0
    same_sets, shifted_sets = kid(a, same, subsets=20, subset_size=100), kid(a, shifted, subsets=20, subset_size=100)
    assert same_sets["kid_subset_size"] == 100
    assert abs(same_sets["kid"]) < 3 * same_sets["kid_std"]
    assert shifted_sets["kid"] > 10 * shifted_sets["kid_std"] > 0
    assert kid(a, shifted[:40], subsets=3)["kid_subset_size"] == 20  # half of the smaller set


def _sklearn_radii(x, k):
    """Distance from each row to its k-th nearest other row (the query point itself comes first)."""
    return NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)[0][:, k]


def _inside(points, centres, radii):
    """(points, centres) matrix: is the point inside the centre's ball?"""
    return scipy.spatial.distance.cdist(points, centres) <= radii[None, :]


def test_precision_recall_match_an_independent_knn_at_k_3():
    rng = np.random.default_rng(12)
    real, fake = _gaussian(rng, 200, 5), 1.3 * _gaussian(rng, 150, 5, shift=0.4)
    expected = {"precision": _inside(fake, real, _sklearn_radii(real, 3)).any(axis=1).mean(),
                "recall": _inside(real, fake, _sklearn_radii(fake, 3)).any(axis=1).mean()}
    assert precision_recall(real, fake) == pytest.approx(expected, abs=1e-12)


def test_density_coverage_match_an_independent_knn_at_k_5():
    rng = np.random.default_rng(13)
    real, fake = _gaussian(rng, 200, 5), 1.3 * _gaussian(rng, 150, 5, shift=0.4)
    inside = _inside(fake, real, _sklearn_radii(real, 5))
    expected = {"density": inside.sum() / (5 * len(fake)), "coverage": inside.any(axis=0).mean()}
    assert density_coverage(real, fake) == pytest.approx(expected, abs=1e-12)


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
