"""Gatys et al.'s style and content losses as plain functions of feature maps (N, C, H, W).

The Gram matrix is divided by H*W, the number of positions: each entry is then the mean over
the image of a product of two channels, the same for a 256-pixel and a 512-pixel picture of one
texture, so a style image need not have the content image's size. With that normalisation the
MSE over the C*C entries is Gatys' per-layer E_l = sum (G - A)^2 / (4 N^2 M^2) times 4, so the
per-layer weights keep his meaning. Dividing by C as well (C*H*W, as fast-neural-style does)
would weigh every layer by a further 1/C^2, a choice hidden in the normalisation; here the
weights say it.
"""

import torch
import torch.nn.functional as F

# The balance of `ganforge stylize` and of the fast style network's training, at --strength 1, where each style
# layer's loss is divided by the mean square of its target Gram matrix and the content loss by that of its targets.
STYLE_WEIGHT = 3.0  # style against content, tuned by eye on the built-in features
TV_WEIGHT = 0.1  # total variation: keeps the random features' pixel noise out


def style_layer_weights(grams: dict[str, torch.Tensor], layer_weights: dict[str, float],
                        strength: float) -> dict[str, float]:
    """The balance's per-layer style weights: strength x STYLE_WEIGHT x the layer's weight, each divided by the
    mean square of its target Gram matrix, so that every layer's term is a relative error."""
    return {layer: strength * STYLE_WEIGHT * w / grams[layer].square().mean().clamp_min(1e-12).item()
            for layer, w in layer_weights.items()}


def content_weight(targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """The balance's content weight: 1 over the summed mean squares of the content targets (a relative error)."""
    return 1 / sum(t.square().mean() for t in targets.values()).clamp_min(1e-12)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): G_ij = sum over positions of F_i F_j, divided by H*W."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def masked_gram_matrix(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W), mask (N, 1, H', W') -> (N, C, C): the Gram matrix of the positions inside the mask only.

    The mask is area-resized to the maps' size, so a position half inside the hole counts half;
    the sum is divided by the (weighted) number of positions, as `gram_matrix` divides by H*W.
    """
    n, c, h, w = features.shape
    weight = F.interpolate(mask.to(features.dtype), size=(h, w), mode="area")
    flat = (features * weight.sqrt()).reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-6)[:, None, None]


def texture_loss(features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], mask: torch.Tensor,
                 weights: dict[str, float]) -> torch.Tensor:
    """sum over layers l of weights[l] x the relative error of the hole's Gram matrix, averaged over the images.

    Per image, ||G_l(fill) - G_l(original)||^2 / ||G_l(original)||^2 with the Gram matrices of the
    hole's positions only (`masked_gram_matrix`): the texture statistics of the fill against those
    of what the hole hid (Liu et al. 2018's style loss, restricted to the hole, where the
    composite differs). They do not depend on where in the hole a stroke falls, so unlike L1 they
    do not reward the blur that averages every placement.
    """
    total = 0
    for layer, w in weights.items():
        fill, target = masked_gram_matrix(features[layer], mask), masked_gram_matrix(targets[layer], mask)
        error = (fill - target).square().mean(dim=(1, 2)) / target.square().mean(dim=(1, 2)).clamp_min(1e-12)
        total = total + w * error.mean()
    return total


def style_loss(features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor],
               weights: dict[str, float]) -> torch.Tensor:
    """sum over layers l of weights[l] * MSE(gram(features[l]), target_grams[l])."""
    return sum(w * F.mse_loss(gram_matrix(features[layer]), target_grams[layer]) for layer, w in weights.items())


def content_loss(features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum over the layers of `targets` of MSE(features[l], targets[l])."""
    return sum(F.mse_loss(features[layer], target) for layer, target in targets.items())


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertical neighbours plus that between horizontal neighbours."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


RANGE_WEIGHT = 10.0  # weight of `out_of_range` beside the other terms, in `stylize` and the fast style task


def out_of_range(images: torch.Tensor) -> torch.Tensor:
    """Mean of the squared excess of |pixel| over 1: 0 inside the image range [-1, 1].

    The pixels are optimised freely, so this keeps them where the saved image can show them.
    Clamping inside the loss instead leaves a pixel that crossed the limit without gradient, stuck
    at a saturated colour, and clamping only at the end changes the image after it was optimised
    (the first scores worse in benchmarks/style_optimiser.py; the second hands back an image
    the optimisation never scored).
    """
    return (images.abs() - 1).clamp_min(0).square().mean()
