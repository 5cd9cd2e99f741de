"""Does the generator copy its training images? A privacy audit on features of three sets.

A generator that learnt the distribution puts its samples as far from the training images
as fresh real images are; one that memorised puts them closer. So nearest-neighbour distances
generated -> train are compared with held-out -> train, where the held-out images are real
images the generator never saw.
"""

from pathlib import Path

import numpy as np
import torch

from ganforge.imageio import make_grid, save_image
from ganforge.metrics.extractors import as_float_images
from ganforge.metrics.neighbours import as_float64, nearest

Features = torch.Tensor | np.ndarray


def memorization_audit(
    generated: Features, train: Features, heldout: Features, percentile: float = 5.0, num_pairs: int = 16
) -> dict:
    """Near-copy share, the data-copying z-score and the closest generated/training pairs.

    - `near_copy_share`: the share of generated samples closer to their nearest training image
      than `near_copy_threshold`, the `percentile`-th percentile (default 5th) of held-out ->
      train distances. A generator that samples the data distribution without copying scores
      about percentile/100 (0.05); a copying one approaches 1.
    - `copying_z`: the Mann-Whitney U z-score of Meehan et al. 2020 (their Z_U over a single
      cell), comparing generated -> train with held-out -> train distances. About 0 for a
      faithful generator, strongly negative (below -3, say) for data copying, positive for
      samples farther from the data than real images are (underfitting).
    - `closest_pairs`: [generated index, training index, distance] for the `num_pairs` generated
      samples nearest to the training set, to look at with `save_closest_pairs`.
    """
    gen, tr, held = as_float64(generated), as_float64(train), as_float64(heldout)
    d_gen, nn_gen = nearest(gen, tr)
    d_held, _ = nearest(held, tr)
    threshold = float(torch.quantile(d_held, percentile / 100))
    order = d_gen.argsort()[:num_pairs]
    return {
        "near_copy_share": float((d_gen < threshold).double().mean()),
        "near_copy_threshold": threshold,
        "percentile": percentile,
        "copying_z": mann_whitney_z(d_gen, d_held),
        "closest_pairs": [[int(i), int(nn_gen[i]), float(d_gen[i])] for i in order],
    }


def mann_whitney_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """The normal-approximation z-score of the Mann-Whitney U statistic of `a` against `b`.

    Negative when values in `a` tend to be smaller than values in `b`. Ties get average ranks
    and the variance is corrected for them.
    """
    m, n = a.numel(), b.numel()
    values = torch.cat([a.flatten(), b.flatten()]).double()
    sorted_values, order = values.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    # Tied values share the mean of the ranks (1-based) they occupy.
    ends = counts.cumsum(0).double()
    tie_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = tie_rank[inverse]
    u = float(ranks[:m].sum()) - m * (m + 1) / 2
    total = m + n
    tie_term = float((counts.double() ** 3 - counts.double()).sum()) / (total * (total - 1))
    var = m * n / 12 * (total + 1 - tie_term)
    return (u - m * n / 2) / var**0.5 if var > 0 else 0.0


def save_closest_pairs(gen_images: torch.Tensor, train_images: torch.Tensor, pairs: list, path: Path) -> None:
    """A PNG grid with one row per pair: the generated image, then its nearest training image.

    `pairs` are the audit's `closest_pairs` ([generated index, training index, ...]); images are
    NCHW in [-1, 1] or uint8, indexed as the features given to `memorization_audit` were.
    """
    gen, train = as_float_images(gen_images), as_float_images(train_images)
    rows = [img for g, t, *_ in pairs for img in (gen[int(g)], train[int(t)])]
    save_image(make_grid(torch.stack(rows).cpu(), nrow=2), path)
