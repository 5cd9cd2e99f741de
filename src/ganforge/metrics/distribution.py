"""How far generated images are from real ones, measured on feature matrices (N, D) in float64.

FID and KID compare the two distributions as a whole; precision/recall and density/coverage
split that into fidelity (do fakes land where real data lives?) and diversity (is all of the
real data reached?), which tells mode dropping apart from bad samples.
Features come from an extractor (see `ganforge.metrics.inception` and `.domain`); scores
from different extractors are not comparable, so reports carry the extractor's name.
"""

import numpy as np
import torch

from ganforge.metrics.neighbours import as_float64, distance_chunks, kth_neighbour_distance

Features = torch.Tensor | np.ndarray


def feature_stats(features: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of a feature matrix: what FID needs, and what to cache for real data."""
    x = as_float64(features)
    if x.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples, got {x.shape[0]}")
    return x.mean(dim=0), torch.cov(x.T)


def frechet_distance(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two Gaussians.

    tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b, which are
    those of the symmetric PSD matrix sqrt(S_a) S_b sqrt(S_a); going through `eigh` twice is
    stable in float64 and avoids scipy's iterative `sqrtm` (and its complex round-off).
    Negative eigenvalues from round-off are clamped to zero.
    """
    mu_a, cov_a, mu_b, cov_b = (torch.as_tensor(t, dtype=torch.float64) for t in (mu_a, cov_a, mu_b, cov_b))
    evals, evecs = torch.linalg.eigh(cov_a)
    sqrt_a = (evecs * evals.clamp(min=0).sqrt()) @ evecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu_a - mu_b
    return float(diff @ diff + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt)


def fid(features_a: Features, features_b: Features) -> float:
    """Fréchet Inception Distance (Heusel et al. 2017) between two feature sets; 0 for identical sets."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def kid(
    features_a: Features, features_b: Features, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict[str, float | int]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std of unbiased MMD² over random subsets.

    The kernel is k(x, y) = (x·y / d + 1)^3. Unlike FID the estimate is unbiased, so it can be
    slightly negative when the sets match and small sample sizes compare fairly. Subsets are
    drawn without replacement from a generator seeded with `seed`, so the same inputs give the
    same numbers. Their size is `subset_size` (1000, as torch-fidelity), at most half of the
    smaller set: subsets as large as the set would all be the whole set reshuffled, and their
    spread (`kid_std`) would say nothing. The size and count used are returned with the scores.
    """
    a, b = as_float64(features_a), as_float64(features_b)
    m = min(subset_size, a.shape[0] // 2, b.shape[0] // 2)
    if m < 2:
        raise ValueError(f"KID needs at least 4 samples per set, got {a.shape[0]} and {b.shape[0]}")
    d = a.shape[1]
    gen = torch.Generator().manual_seed(seed)
    scores = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        y = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        k_xx, k_yy, k_xy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        scores[i] = within - 2 * k_xy.mean()
    return {"kid": float(scores.mean()), "kid_std": float(scores.std(correction=0)), "kid_subset_size": m,
            "kid_subsets": subsets}


def precision_recall(real: Features, fake: Features, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its samples, of radius the distance to
    the sample's k-th nearest neighbour in the same set. Precision is the share of fakes inside
    the real manifold (fidelity); recall the share of reals inside the fake manifold (diversity).
    A point on a ball's boundary counts as inside, as in the paper.
    """
    r, f = as_float64(real), as_float64(fake)
    return {"precision": _share_inside(f, r, kth_neighbour_distance(r, k)),
            "recall": _share_inside(r, f, kth_neighbour_distance(f, k))}


def density_coverage(real: Features, fake: Features, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), both built on k-NN balls around real samples only.

    Density counts how many real balls hold each fake, divided by k (about 1 when fakes follow the
    real distribution, above 1 when they crowd dense regions); unlike precision it is not fooled by
    real outliers. Coverage is the share of real balls that hold at least one fake.
    """
    r, f = as_float64(real), as_float64(fake)
    radii = kth_neighbour_distance(r, k)
    count = 0.0
    covered = torch.zeros(r.shape[0], dtype=torch.bool)
    for rows, d in distance_chunks(r, f):
        inside = d <= radii[rows, None]
        count += float(inside.sum())
        covered[rows] = inside.any(dim=1)
    return {"density": count / (k * f.shape[0]), "coverage": float(covered.double().mean())}


def _share_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """The share of `points` inside at least one ball (centres[i], radii[i])."""
    inside = torch.zeros(points.shape[0], dtype=torch.bool)
    for rows, d in distance_chunks(points, centres):
        inside[rows] = (d <= radii[None, :]).any(dim=1)
    return float(inside.double().mean())

