"""VGG19 from a weights file the user names: the perceptual loss of SRGAN/ESRGAN, and Gatys' style features.

The layers follow torchvision's `vgg19().features` index for index, so its published ImageNet
state dict (`vgg19-dcbb9e9d.pth`, keys `features.N.weight`) loads as it is; nothing is
downloaded. `.pth` files are read with `weights_only=True` (no unpickling of code), and a
`.safetensors` file with the same keys works too.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import UserError
from ganforge.weights_file import read_state_dict

LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
CONV5_4 = 34  # index of conv5_4 in torchvision's features: ESRGAN compares features before its ReLU
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg19_features(last: int = CONV5_4) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, 1, 1), nn.ReLU(True)]
            cin = v
    return nn.Sequential(*layers[: last + 1])


def load_vgg19_features(weights_file: str | Path, option: str, last: int = CONV5_4) -> nn.Sequential:
    """torchvision's VGG19 features up to index `last`, with the weights of a local file, frozen in eval mode.

    Errors name `option`, the flag the file came from (e.g. --perceptual-weights).
    """
    path = Path(weights_file)
    if not path.is_file():
        raise UserError(f"{option}: {path} does not exist")
    state = read_state_dict(path, f"VGG19 weights ({option})")
    features = vgg19_features(last)
    wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    own = features.state_dict()
    if set(own) - set(wanted) or any(wanted[k].shape != own[k].shape for k in own):
        raise UserError(f"{option}: {path} does not hold torchvision VGG19 weights "
                        f"(keys features.0.weight ... features.{list(own)[-1]})")
    features.load_state_dict({k: wanted[k] for k in own})
    return features.requires_grad_(False).eval()


class ImageNetInput(nn.Module):
    """Images in [-1, 1] as the ImageNet-normalised input torchvision's VGG19 was trained on."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() + 1) / 2 - self.mean) / self.std


class PerceptualLoss(nn.Module):
    """L1 between VGG19 conv5_4 features (before ReLU) of two image batches in [-1, 1]; frozen."""

    def __init__(self, weights_file: str | Path):
        super().__init__()
        self.normalise = ImageNetInput()
        self.features = load_vgg19_features(weights_file, "--perceptual-weights")

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)  # a fixed feature extractor, whatever the trainer asks

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.features(self.normalise(fake)), self.features(self.normalise(real)).detach())
