"""Nearest-neighbour distances in chunks, so 10k x 10k feature sets never need a full distance matrix.

Every metric built on k-NN balls or nearest distances (precision/recall, density/coverage,
diversity, the memorisation audit) goes through here, in float64.
"""

from collections.abc import Iterator

import numpy as np
import torch

# Rows of the query set per chunk: 1024 x 10k float64 distances are 80 MB.
CHUNK_ROWS = 1024


def as_float64(features: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A feature matrix (N, D), torch or numpy, as a float64 CPU tensor."""
    x = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    x = x.detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a feature matrix (N, D), got shape {tuple(x.shape)}")
    return x


def distance_chunks(query: torch.Tensor, reference: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, distances from query[rows] to every reference row), a chunk of query rows at a time."""
    for start in range(0, query.shape[0], CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        yield rows, torch.cdist(query[rows], reference)


def kth_neighbour_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of `x` to its k-th nearest other row (the radius of its k-NN ball).

    Each row's zero distance to itself is the smallest, so the k-th neighbour is the (k+1)-th smallest.
    """
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k={k} needs at least {k + 1} samples, got {x.shape[0]}")
    out = torch.empty(x.shape[0], dtype=x.dtype)
    for rows, d in distance_chunks(x, x):
        out[rows] = d.kthvalue(k + 1, dim=1).values
    return out


def nearest(query: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the distance to its nearest reference row and that row's index."""
    dist = torch.empty(query.shape[0], dtype=query.dtype)
    index = torch.empty(query.shape[0], dtype=torch.long)
    for rows, d in distance_chunks(query, reference):
        dist[rows], index[rows] = d.min(dim=1)
    return dist, index
