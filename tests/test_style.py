"""Style transfer by optimisation: the losses against hand computation."""

import pytest
import torch

from ganforge.style_losses import content_loss, gram_matrix, out_of_range, style_loss, total_variation


# ---------------------------------------------------------------------------------------- losses by hand
def test_gram_matrix_divides_by_the_number_of_positions():
    f = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    # G_ij = sum_p F_ip F_jp / (H W): (1+4+9+16)/4, (0+2+0-4)/4, (0+1+0+1)/4
    assert torch.equal(gram_matrix(f), torch.tensor([[[7.5, -0.5], [-0.5, 0.5]]]))
    # the same texture twice as large has the same Gram matrix
    assert torch.allclose(gram_matrix(torch.cat([f, f], dim=-1)), gram_matrix(f))


def test_style_loss_is_the_weighted_sum_of_gram_mses():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    b = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    targets = {"a": torch.zeros(1, 2, 2), "b": torch.tensor([[[4.0]]])}
    # a: mean(7.5^2, 0.5^2, 0.5^2, 0.5^2) = 57/4 = 14.25, weight 2; b: G = (9+1)/2 = 5, (5-4)^2 = 1, weight 0.5
    assert style_loss({"a": a, "b": b}, targets, {"a": 2.0, "b": 0.5}).item() == pytest.approx(2 * 14.25 + 0.5 * 1)
    assert style_loss({"a": a, "b": b}, targets, {"b": 1.0}).item() == pytest.approx(1.0)  # only the weighted layers


def test_content_loss_is_the_sum_over_layers_of_feature_mses():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    b = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    # a against a + 1: every difference is 1; b against 0: mean(9, 1) = 5
    assert content_loss({"a": a, "b": b, "c": a}, {"a": a + 1, "b": torch.zeros_like(b)}).item() == pytest.approx(6.0)


def test_total_variation_and_out_of_range_by_hand():
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    # vertical |3-0|, |5-1| -> mean 3.5; horizontal |1-0|, |5-3| -> mean 1.5
    assert total_variation(x).item() == pytest.approx(5.0)
    # excess over 1: 0.5, 0, 1, 0 -> mean of squares (0.25 + 1) / 4
    assert out_of_range(torch.tensor([-1.5, 0.5, 2.0, 1.0])).item() == pytest.approx(0.3125)
