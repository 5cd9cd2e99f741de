"""The generator and discriminator written in the project brief (a Keras listing), in PyTorch.

G: Dense(128*7*7, ReLU) -> reshape 7x7x128 -> ConvT(128, k5, s1) BN ReLU -> ConvT(128, k5, s2) BN ReLU
   -> ConvT(128, k5, s2) BN ReLU -> ConvT(C, k5, s2, tanh): 7 -> 7 -> 14 -> 28 -> 56, so this G makes
   56x56 images (not 28x28: it has three stride-2 layers after the 7x7 map).
D: Conv(128, k5, s2) LeakyReLU(0.2) Dropout(0.3) -> Conv(128, k5, s2) LeakyReLU(0.2) Dropout(0.3)
   -> Flatten -> Dense(1): 56 -> 28 -> 14, then one logit.

Keras' "same" padding is reproduced by padding=2 (and output_padding=1 for stride-2 transposed
convolutions), which gives the same shapes. Keras initialisers are kept as PyTorch's defaults.
The brief compiles D's raw Dense(1) output with a probability BCE; ganforge reads it as a logit.
"""

import torch
from torch import nn

from ganforge.nets.dcgan import spectral_normalise

BRIEF_RESOLUTION = 56


class BriefGenerator(nn.Module):
    def __init__(self, channels: int = 3, latent_dim: int = 100):
        super().__init__()
        self.latent_dim = latent_dim
        self.dense = nn.Sequential(nn.Linear(latent_dim, 128 * 7 * 7), nn.ReLU(True))

        def up(stride: int) -> list[nn.Module]:
            return [
                nn.ConvTranspose2d(128, 128, 5, stride, 2, output_padding=stride - 1),
                nn.BatchNorm2d(128),
                nn.ReLU(True),
            ]

        self.convs = nn.Sequential(
            *up(1), *up(2), *up(2), nn.ConvTranspose2d(128, channels, 5, 2, 2, output_padding=1), nn.Tanh()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Keras reshapes to (7, 7, 128) channels-last; the layout inside is immaterial for a fresh net.
        return self.convs(self.dense(z).view(-1, 128, 7, 7))


class BriefDiscriminator(nn.Module):
    def __init__(self, channels: int = 3, spectral_norm: bool = False):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, 128, 5, 2, 2),
            nn.LeakyReLU(0.2, True),
            nn.Dropout(0.3),
            nn.Conv2d(128, 128, 5, 2, 2),
            nn.LeakyReLU(0.2, True),
            nn.Dropout(0.3),
            nn.Flatten(),
            nn.Linear(128 * (BRIEF_RESOLUTION // 4) ** 2, 1),
        )
        if spectral_norm:
            spectral_normalise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()
