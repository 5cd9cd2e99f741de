"""Evaluation of generated images: paired fidelity, distribution distances, collapse and memorisation checks.

Distribution metrics work on feature matrices; an extractor turns images into them, either the
standard FID Inception-v3 (weights from a local file) or a small network trained on the data itself.
"""

from ganforge.metrics.collapse import CollapseMonitor, class_histogram_stats, diversity
from ganforge.metrics.distribution import (
    density_coverage,
    feature_stats,
    fid,
    frechet_distance,
    kid,
    precision_recall,
)
from ganforge.metrics.domain import DomainFeatures, load_domain_features, train_domain_features
from ganforge.metrics.extractors import FeatureExtractor
from ganforge.metrics.inception import InceptionV3Features
from ganforge.metrics.memorization import memorization_audit, save_closest_pairs
from ganforge.metrics.paired import crop_border, psnr, rgb_to_y, ssim

__all__ = [
    "CollapseMonitor",
    "DomainFeatures",
    "FeatureExtractor",
    "InceptionV3Features",
    "class_histogram_stats",
    "crop_border",
    "density_coverage",
    "diversity",
    "feature_stats",
    "fid",
    "frechet_distance",
    "kid",
    "load_domain_features",
    "memorization_audit",
    "precision_recall",
    "psnr",
    "rgb_to_y",
    "save_closest_pairs",
    "ssim",
    "train_domain_features",
]
