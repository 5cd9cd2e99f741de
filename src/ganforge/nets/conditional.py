"""Class-conditional DCGAN: a generator asked for a class, and a projection discriminator.

G (as in the DCGAN, conditioned twice): a learned class embedding is concatenated to z at the
input, and every batch norm is a *conditional* batch norm whose scale and shift are looked up per
class (de Vries et al. 2017, Miyato & Koyama 2018). D is the DCGAN discriminator with a
projection head (Miyato & Koyama 2018, "cGANs with projection discriminator"):

    D(x, y) = psi(phi(x)) + <embed(y), sum_hw phi(x)>

where phi(x) is D's last feature map and psi the DCGAN's final convolution to one logit. With
`aux_classifier` D also has an AC-GAN head (Odena et al. 2017) predicting the class from the
pooled features; `forward(x, y, with_classes=True)` returns (logits, class_logits).
"""

from functools import partial

import torch
from torch import nn

from ganforge.nets.dcgan import (LatentProjection, _widths, discriminator_trunk, init_dcgan_weights, resolution_plan,
                                 spectral_normalise)

# Scale of G's input class embedding. Measured on mnist5k (28x28, 1.5 CPU minutes): at N(0, 1), as loud as z,
# G ignored z and made one image per class; at 0.1 the class was barely heard; 0.3 gave both.
EMBED_STD = 0.3


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine; per-class scale (around 1) and shift (around 0) instead."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.scale = nn.Embedding(num_classes, num_features)
        self.shift = nn.Embedding(num_classes, num_features)
        nn.init.normal_(self.scale.weight, 1.0, 0.02)  # the DCGAN's N(1, 0.02) for batch-norm scales
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.scale(y)[:, :, None, None] + self.shift(y)[:, :, None, None]


class ConditionalDCGANGenerator(nn.Module):
    """(z (N, latent_dim), class y (N,)) -> image (N, channels, resolution, resolution) in [-1, 1]."""

    def __init__(self, resolution: int = 64, channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 10, embed_dim: int = 50, depth: int = 0):
        super().__init__()
        base, k = resolution_plan(resolution)
        widths = _widths(width, k)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        ups = [partial(LatentProjection, latent_dim + embed_dim, widths[0], base)]
        ups += [partial(nn.ConvTranspose2d, cin, cout, 4, 2, 1, bias=False) for cin, cout in zip(widths, widths[1:])]
        for up in ups:  # each resolution: its up-convolution, then `depth` 3x3 ones
            conv = up()
            self.convs.append(conv)
            self.norms.append(ConditionalBatchNorm2d(conv.out_channels, num_classes))
            for _ in range(depth):  # (nets/dcgan.py); built in this order, a depth-0 net draws its weights as before
                self.convs.append(nn.Conv2d(conv.out_channels, conv.out_channels, 3, 1, 1, bias=False))
                self.norms.append(ConditionalBatchNorm2d(conv.out_channels, num_classes))
        self.to_image = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        init_dcgan_weights(self)
        nn.init.normal_(self.embed.weight, 0.0, EMBED_STD)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y)], dim=1)[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h), y))
        return torch.tanh(self.to_image(h))


class ProjectionDiscriminator(nn.Module):
    """(image, class) -> one real/fake logit per image; optionally AC-GAN class logits as well."""

    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 64, num_classes: int = 10,
                 spectral_norm: bool = False, norm: str = "batch", projection: bool = True,
                 aux_classifier: bool = False, depth: int = 0):
        super().__init__()
        layers, last_width, base = discriminator_trunk(resolution, channels, width, spectral_norm, norm, depth)
        self.features = nn.Sequential(*layers)
        self.psi = nn.Conv2d(last_width, 1, base, 1, 0, bias=False)
        self.embed = nn.Embedding(num_classes, last_width) if projection else None
        self.classifier = nn.Linear(last_width, num_classes) if aux_classifier else None
        self.num_classes = num_classes
        init_dcgan_weights(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral_norm:
            spectral_normalise(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor, with_classes: bool = False):
        h = self.features(x)
        logits = self.psi(h).flatten()
        pooled = h.sum(dim=(2, 3))  # sum pooling, as in the paper
        if self.embed is not None:
            logits = logits + (self.embed(y) * pooled).sum(dim=1)
        if not with_classes:
            return logits
        return logits, (self.classifier(pooled) if self.classifier is not None else None)
