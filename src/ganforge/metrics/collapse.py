"""Signs of mode collapse: generated samples that stop varying, or that stop reaching all classes.

A collapsing GAN can keep a fine loss curve while its samples converge on a few modes, so
training watches two cheap figures on each batch of samples: the spread of their features and,
where the data has labels, the histogram of the classes a domain classifier assigns to them.
"""

import math

import numpy as np
import torch

from ganforge.metrics.neighbours import as_float64, distance_chunks


def class_histogram_stats(probs_or_labels: torch.Tensor | np.ndarray, num_classes: int) -> dict[str, float]:
    """Class coverage and normalised entropy of the predicted-class histogram of generated samples.

    Takes class probabilities (N, num_classes), whose argmax is the predicted class, or
    predicted labels (N,). A class is covered when it gets at least a quarter of its fair share,
    1 / (4 * num_classes) of the samples, so a few stray samples do not count as a mode reached.
    The entropy is divided by log(num_classes): 1 is perfectly balanced, 0 is a single class.
    """
    x = torch.as_tensor(probs_or_labels)
    labels = x.argmax(dim=1) if x.ndim == 2 else x.long()
    share = torch.bincount(labels.flatten().cpu(), minlength=num_classes)[:num_classes].double()
    share = share / max(labels.numel(), 1)
    nonzero = share[share > 0]
    entropy = float(-(nonzero * nonzero.log()).sum()) / math.log(num_classes) if num_classes > 1 else 1.0
    coverage = float((share >= 1 / (4 * num_classes)).double().mean())
    return {"class_coverage": coverage, "class_entropy": entropy}


def diversity(features: torch.Tensor | np.ndarray) -> float:
    """Mean L2 distance between all pairs of distinct samples: 0 when every sample is the same."""
    x = as_float64(features)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {n}")
    total = sum(float(d.sum()) for _, d in distance_chunks(x, x))
    return total / (n * (n - 1))


class CollapseMonitor:
    """Watches diversity (and class coverage) over training and says when they fall.

    The first measurement is the baseline, and the baseline then follows the best diversity
    seen so far: a warning comes when diversity falls below `fraction` of it. Passing the
    diversity of real features as `reference` starts the baseline there, so a generator that
    is collapsed from the first measurement is caught as well. Class coverage is checked
    against `min_class_coverage` whenever class probabilities are given.
    """

    def __init__(self, fraction: float = 0.5, min_class_coverage: float = 0.5, reference: float | None = None):
        self.fraction = fraction
        self.min_class_coverage = min_class_coverage
        self.best = reference

    def update(self, features: torch.Tensor | np.ndarray, probs: torch.Tensor | None = None) -> str | None:
        """Measure one batch of generated features (and class probabilities); a warning string, or None."""
        div = diversity(features)
        self.best = div if self.best is None else max(self.best, div)
        warnings = []
        if div < self.fraction * self.best:
            warnings.append(f"sample diversity {div:.4g} fell below {self.fraction:.0%} of its best {self.best:.4g}")
        if probs is not None:
            stats = class_histogram_stats(probs, probs.shape[1])
            if stats["class_coverage"] < self.min_class_coverage:
                warnings.append(
                    f"samples reach only {stats['class_coverage']:.0%} of the classes "
                    f"(threshold {self.min_class_coverage:.0%})"
                )
        return "possible mode collapse: " + "; ".join(warnings) if warnings else None
