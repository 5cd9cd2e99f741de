"""Inpainting networks: an encoder-decoder that fills holes, with Fourier convolutions in the middle.

The generator sees the image with its holes blanked and the mask, and predicts the whole image;
callers keep the known pixels and take only the hole from it. Its middle is LaMa's (Suvorov
et al. 2022): residual blocks of fast Fourier convolutions (Chi et al. 2020), where three
quarters of the channels go through a convolution in the frequency domain, so every output pixel
sees the whole image already in the first block. A hole larger than a plain network's receptive
field is then filled from context on its far side too, and the network works at sizes it never
trained on. `block="conv"` swaps in plain residual blocks, the baseline that FFC is measured against.

The discriminator is the SN-PatchGAN of DeepFill v2 (Yu et al. 2019): the patch critic of
super-resolution, with spectral norm, given the mask as a fourth channel so it knows where to look.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.classical_inpaint import smooth_fill
from ganforge.nets.sr import PatchDiscriminator

BLOCKS = ("ffc", "conv")
UPSAMPLES = ("transpose", "resize")  # resize: nearest x2 then a 3x3 convolution, free of the transposed one's checkerboard
GLOBAL_SHARE = 0.75  # LaMa's ratio of channels on the spectral path


def _norm_act(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(True))


class FourierUnit(nn.Module):
    """A 1x1 convolution on the real and imaginary parts of the image's 2-D Fourier transform.

    Each frequency mixes information from every pixel, so this layer has a global receptive field.
    The transform runs in float32 whatever the autocast precision: FFTs have no bf16 kernels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.norm_act = _norm_act(2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            spectrum = torch.fft.rfft2(x.float(), norm="ortho")
            mixed = self.norm_act(self.conv(torch.cat([spectrum.real, spectrum.imag], dim=1)))
            real, imag = mixed.chunk(2, dim=1)
            return torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """FFC's global-to-global path: squeeze to half the channels, Fourier unit (with a skip), expand."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, cout // 2, 1, bias=False), _norm_act(cout // 2))
        self.fourier = FourierUnit(cout // 2)
        self.expand = nn.Conv2d(cout // 2, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return self.expand(x + self.fourier(x))


class FFC(nn.Module):
    """Fast Fourier convolution on a (local, global) channel split: 3x3 convolutions between and
    within the local part, the spectral transform within the global part; batch norm and ReLU after."""

    def __init__(self, channels: int):
        super().__init__()
        self.global_channels = int(channels * GLOBAL_SHARE)
        cg, cl = self.global_channels, channels - self.global_channels

        def conv(cin, cout):
            return nn.Conv2d(cin, cout, 3, 1, 1, bias=False, padding_mode="reflect")

        self.local_to_local, self.global_to_local = conv(cl, cl), conv(cg, cl)
        self.local_to_global, self.global_to_global = conv(cl, cg), SpectralTransform(cg, cg)
        self.local_out, self.global_out = _norm_act(cl), _norm_act(cg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_l, x_g = x[:, : x.shape[1] - self.global_channels], x[:, x.shape[1] - self.global_channels :]
        y_l = self.local_out(self.local_to_local(x_l) + self.global_to_local(x_g))
        y_g = self.global_out(self.local_to_global(x_l) + self.global_to_global(x_g))
        return torch.cat([y_l, y_g], dim=1)


class ConvLayer(nn.Module):
    """A plain 3x3 convolution with batch norm and ReLU: the baseline FFC replaces."""

    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False, padding_mode="reflect"),
                                  _norm_act(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, layer: type[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(layer(channels), layer(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class InpaintGenerator(nn.Module):
    """(image (N, C, H, W) in [-1, 1], mask (N, 1, H, W), 1 = hole) -> the full image (N, C, H, W).

    Any H and W: the input is padded (reflected) to a multiple of 2**downsamples and cropped back.
    With `prefill`, the holes are first filled by `smooth_fill` and the network predicts a
    correction to that fill rather than the image from nothing: it starts from the right colours
    and spends its training on structure and texture (a photo model trained from zeros trailed
    biharmonic by 8.8 dB after 500 steps). `upsample="resize"` decodes with nearest-neighbour
    resizing and convolutions (Odena et al. 2016) instead of transposed convolutions, whose
    uneven overlap printed a checkerboard into flat fills under adversarial training.
    """

    def __init__(self, channels: int = 3, width: int = 32, downsamples: int = 3, blocks: int = 6, block: str = "ffc",
                 prefill: bool = False, upsample: str = "transpose"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
        self.prefill = prefill
        self.multiple = 2**downsamples
        layers: list[nn.Module] = [nn.Conv2d(channels + 1, width, 7, 1, 3, bias=False, padding_mode="reflect"),
                                   _norm_act(width)]
        c = width
        for _ in range(downsamples):
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), _norm_act(2 * c)]
            c *= 2
        layers += [ResidualBlock(c, FFC if block == "ffc" else ConvLayer) for _ in range(blocks)]
        for _ in range(downsamples):
            if upsample == "resize":
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, 1, 1, bias=False)]
            else:
                layers.append(nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=False))
            layers.append(_norm_act(c // 2))
            c //= 2
        layers += [nn.Conv2d(c, channels, 7, 1, 3, padding_mode="reflect"), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        start = smooth_fill(image, mask) if self.prefill else image * (1 - mask)
        x = torch.cat([start, mask], dim=1)
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
        out = self.main(x)[..., :h, :w]
        return (start + out).clamp(-1, 1) if self.prefill else out


def build_inpaint_generator(model: dict) -> InpaintGenerator:
    """The generator described by a saved inpainting model's config."""
    # Models saved before the smooth start and resize decoding lack those keys: zeros and transposed convolutions.
    return InpaintGenerator(model["channels"], model["width"], model["downsamples"], model["blocks"], model["net"],
                            model.get("prefill") == "smooth", model.get("upsample", "transpose"))


class InpaintDiscriminator(nn.Module):
    """(image, mask) -> a map of real/fake logits per patch (SN-PatchGAN)."""

    def __init__(self, channels: int = 3, width: int = 64):
        super().__init__()
        self.patches = PatchDiscriminator(channels + 1, width, spectral_norm=True)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.patches(torch.cat([image, mask.to(image.dtype)], dim=1))

    def features(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return self.patches.features(torch.cat([image, mask.to(image.dtype)], dim=1))
