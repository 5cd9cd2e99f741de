"""How a high-resolution image becomes the low-resolution input a super-resolution model sees.

`bicubic` is the papers' protocol (MATLAB-style antialiased bicubic downsampling, then 8-bit
rounding, as if the small image had been saved as a PNG). `realistic` adds what real photos
went through, in the order Real-ESRGAN's first-order model uses: blur, downsampling, sensor
noise and JPEG compression, each with a random strength per image.
"""

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.imageio import float_to_uint8, uint8_to_float


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to the 256 levels of an 8-bit file."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic resize by 1/scale, rounded to 8 bits; the sides must be multiples of `scale`."""
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return quantize(lr)


def bicubic_upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline every SR result is compared with: MATLAB's imresize / PIL's BICUBIC upscale.

    The papers' "bicubic" is MATLAB's kernel, a = -0.5, which PIL's BICUBIC also uses (they
    differ only in how the outermost pixels are weighted). Plain `F.interpolate` uses a = -0.75,
    14 grey levels away from it on the held-out photos; PyTorch's antialiased path is a port of
    PIL's resampler and, when enlarging, gives PIL's BICUBIC to float rounding (the test compares
    them). The generator's own bicubic skip keeps the a = -0.75 kernel its weights were trained with.
    """
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of `x` with its own isotropic Gaussian (`sigma` has one entry per image), reflected at the
    border (repeated where the image is too small to reflect)."""
    radius = int(np.ceil(3 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None].to(x) ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # (N, 2r+1)
    n, c, h, w = x.shape
    padded = F.pad(x.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect" if min(h, w) > radius else "replicate")
    kernels = k.repeat_interleave(c, dim=0)
    rows = F.conv2d(padded, kernels[:, None, None, :], groups=n * c)
    return F.conv2d(rows, kernels[:, None, :, None], groups=n * c).reshape(n, c, h, w)


def jpeg(x: torch.Tensor, quality: list[int]) -> torch.Tensor:
    """Compress and decompress each image with Pillow at its own quality."""
    out = []
    for image, q in zip(float_to_uint8(x), quality):
        buffer = io.BytesIO()
        arr = image.numpy().transpose(1, 2, 0)
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buffer, format="JPEG", quality=int(q))
        decoded = np.asarray(Image.open(buffer))
        out.append(torch.from_numpy(decoded.reshape(arr.shape).transpose(2, 0, 1).copy()))
    return uint8_to_float(torch.stack(out)).to(x.device)


def realistic_downsample(hr: torch.Tensor, scale: int, rng: torch.Generator) -> torch.Tensor:
    """Blur (sigma 0.2-1.5 x scale/2), bicubic downsampling, Gaussian noise (0-8/255), JPEG (quality 40-95)."""
    n = hr.shape[0]
    sigma = (0.2 + 1.3 * torch.rand(n, generator=rng)) * scale / 2
    lr = bicubic_downsample(gaussian_blur(hr, sigma.to(hr.device)), scale)
    noise_std = torch.rand(n, 1, 1, 1, generator=rng) * (16 / 255)  # 8/255 of the [0, 1] range is 16/255 of [-1, 1]
    noise = torch.randn(lr.shape, generator=rng) * noise_std
    lr = (lr + noise.to(lr.device)).clamp(-1, 1)
    quality = torch.randint(40, 96, (n,), generator=rng).tolist()
    return jpeg(lr, quality)


def degrade(hr: torch.Tensor, scale: int, kind: str, rng: torch.Generator) -> torch.Tensor:
    if kind == "realistic":
        return realistic_downsample(hr, scale, rng)
    return bicubic_downsample(hr, scale)


def lr_hr_pair(photo: np.ndarray, scale: int, degradation: str = "bicubic", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(low-resolution input, ground truth) of a uint8 photo (C, H, W), both (1, C, h, w) in [-1, 1]."""
    h, w = (photo.shape[1] // scale) * scale, (photo.shape[2] // scale) * scale
    hr = uint8_to_float(torch.from_numpy(np.ascontiguousarray(photo[:, :h, :w])))[None]
    return degrade(hr, scale, degradation, torch.Generator().manual_seed(seed)), hr
