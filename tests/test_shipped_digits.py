"""The shipped digit generators make digits: a classifier trained on mnist5k reads their samples
confidently and finds every class, and a generator with random weights fails the same checks.

Thresholds sit below what the shipped models were measured at with this classifier (unconditional,
configs/mnist5k.yaml at depth 4, seeds 0-499: confidence 0.86, entropy 0.994, where the four generators
it replaced scored 0.85 and 0.989, 0.79 and 0.985, 0.74 and 0.97, and 0.70-0.72 and 0.94-0.95; conditional
(configs/mnist5k-conditional.yaml, depth 4), seeds 0, 1000 and 5000 of 500 samples each: confidence 0.90-0.91,
requested class 0.96, entropy 0.999-1.000, where the depth-0 generator it replaced scored 0.90, 0.94-0.96 and
0.997-0.999), and above random weights (confidence 0.40 / 0.62, entropy 0.0 / 0.39, requested class 0.0).
"""

import copy

import pytest
import torch

from ganforge.data import load_imageset
from ganforge.imageio import float_to_uint8
from ganforge.latent import balanced_labels, generate, latents
from ganforge.metrics import class_histogram_stats
from ganforge.metrics.domain import domain_features
from ganforge.pipelines.sampling import load_generator

THRESHOLDS = {
    "mnist5k": {"confidence": 0.83, "entropy": 0.97, "classes": 10},
    "mnist5k-conditional": {"confidence": 0.8, "entropy": 0.95, "classes": 10, "requested": 0.85},
}


@pytest.fixture(scope="session")
def digit_classifier():
    """The domain classifier of mnist5k, trained 100 steps instead of 400 so that this file stays fast."""
    return domain_features(load_imageset("mnist5k", 28), steps=100)


def digit_quality(classifier, generator: torch.nn.Module, model: dict, n: int = 500) -> dict[str, float]:
    """Mean top-1 confidence, normalised class entropy, classes found and, for a conditional model,
    the share of samples read as the class they were asked for; on 8-bit samples of seeds 0..n-1."""
    labels = balanced_labels(n, model)
    probs = classifier.predict_proba(float_to_uint8(generate(generator, latents(list(range(n)), model["latent_dim"]), labels)))
    quality = {"confidence": float(probs.max(dim=1).values.mean()),
               "entropy": class_histogram_stats(probs, 10)["class_entropy"],
               "classes": len(probs.argmax(dim=1).unique())}
    if labels is not None:
        quality["requested"] = float((probs.argmax(dim=1) == labels).double().mean())
    return quality


def shortfalls(quality: dict, thresholds: dict) -> list[str]:
    return [key for key, threshold in thresholds.items() if quality[key] < threshold]


def randomised(generator: torch.nn.Module) -> torch.nn.Module:
    """A copy of the generator with freshly initialised weights (and batch-norm statistics)."""
    copied = copy.deepcopy(generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for module in copied.modules():
            if module is not copied and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return copied.eval()


@pytest.mark.parametrize("name", THRESHOLDS)
def test_shipped_generator_makes_confident_digits_of_every_class(name, digit_classifier):
    generator, model = load_generator(name, "cpu")
    quality = digit_quality(digit_classifier, generator, model)
    assert shortfalls(quality, THRESHOLDS[name]) == [], quality
    random_quality = digit_quality(digit_classifier, randomised(generator), model)
    failed = shortfalls(random_quality, THRESHOLDS[name])
    assert "entropy" in failed and ("requested" in failed if model.get("num_classes") else True), random_quality
