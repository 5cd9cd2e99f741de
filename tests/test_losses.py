import math

import torch

from ganforge.losses import bce_discriminator_loss, bce_generator_loss


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_bce_losses_match_hand_computation():
    real, fake = [2.0, -1.0], [0.5, -3.0]
    expected_d = sum(-math.log(sigmoid(r)) for r in real) / 2 + sum(-math.log(1 - sigmoid(f)) for f in fake) / 2
    expected_g = sum(-math.log(sigmoid(f)) for f in fake) / 2
    assert math.isclose(bce_discriminator_loss(torch.tensor(real), torch.tensor(fake)).item(), expected_d, rel_tol=1e-6)
    assert math.isclose(bce_generator_loss(torch.tensor(fake)).item(), expected_g, rel_tol=1e-6)


def test_bce_losses_are_finite_for_extreme_logits():
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(bce_discriminator_loss(big, big))
    assert math.isclose(bce_generator_loss(torch.tensor([-200.0])).item(), 200.0, rel_tol=1e-6)


def test_bce_equals_torch_bce_on_probabilities():
    real, fake = torch.randn(16), torch.randn(16)
    bce = torch.nn.functional.binary_cross_entropy
    expected = bce(torch.sigmoid(real), torch.ones(16)) + bce(torch.sigmoid(fake), torch.zeros(16))
    assert torch.allclose(bce_discriminator_loss(real, fake), expected, atol=1e-6)
