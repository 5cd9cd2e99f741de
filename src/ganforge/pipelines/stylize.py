"""`ganforge stylize`: a photo, or every photo of a folder, painted in the style of one image (Gatys et al. 2016).

No network is trained: the result's pixels are optimised so that its feature maps keep the
content image's (content loss) while their Gram matrices take the style image's (style loss).

- Features: the built-in random network, or VGG19 from `--features FILE` (see `ganforge.nets.style`).
- Loss balance: each style layer's loss is divided by the mean square of its target Gram matrix,
  and the content loss by the mean square of its target features, so every term is a relative
  error whatever the scale of a network's responses. `STYLE_WEIGHT` and `TV_WEIGHT` were tuned
  by eye on the built-in network; for VGG19 they are a start, untuned (no real VGG19 weights
  were at hand). `--strength` multiplies the style and total-variation terms, so 0 leaves the
  content loss alone, whose minimum is the content image itself.
- Optimiser: L-BFGS with a strong-Wolfe line search, from the content image plus a little seeded
  noise; `--steps` counts loss evaluations (one forward and backward pass each). Per second of
  CPU it reaches lower losses than Adam (benchmarks/style_optimiser.py).
- Sizes: the result's longest side is `--size` (smaller images keep their size: enlarging adds
  no detail). The style image is resized so that its longest side is the result's, so its
  brush strokes keep their size relative to the picture.
- `--preserve-colour`: luminance-only transfer (Gatys et al. 2016b): the style's luminance,
  matched to the content's mean and spread, is transferred onto the content's luminance, and
  the content's chroma (YIQ's I and Q) is put back.
"""

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ganforge import __version__
from ganforge.device import pick_device
from ganforge.errors import UserError
from ganforge.imageio import UNREADABLE_IMAGE, float_to_uint8, to_8bit, uint8_to_float
from ganforge.nets.style import StyleFeatures, load_style_features
from ganforge.pipelines.image_files import checked_output, open_image, plain_mode, read_image, save_converted
from ganforge.style_losses import (RANGE_WEIGHT, TV_WEIGHT, content_loss, content_weight, gram_matrix, out_of_range,
                                   style_layer_weights, style_loss, total_variation)

log = logging.getLogger("ganforge")
DEFAULT_SIZE, DEFAULT_STEPS = 512, 100
COARSE_SIDE = 512  # larger results are stylised coarse to fine, from about this longest side
MIN_SIDE = 16  # the smallest side, of an input and of the result, that the features still see as an image
MAX_SIZE = 2048  # peak memory at 2048x2048, from 512 and 1024 px runs: ~6 GB built-in features, ~12 GB VGG19
INIT_NOISE = 0.05  # std of the seeded noise added to the content image to start from
# YIQ (NTSC): Y is the luminance; I and Q rows sum to 0, so the transform is the same on [-1, 1] as on [0, 1].
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def fit_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) scaled so that the longest side is at most `longest`; never enlarged."""
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def to_tensor(im: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """An RGB (or greyscale, replicated) PIL image resized to `size` (w, h), as (1, 3, H, W) in [-1, 1]."""
    rgb = to_8bit(plain_mode(im)).convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return uint8_to_float(torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1))[None].contiguous()


def read_style(path: Path) -> Image.Image:
    """The style image, checked to be readable and not tiny."""
    if not path.is_file():
        raise UserError(f"--style: {path} does not exist" if not path.exists() else f"--style: {path} is not a file")
    try:
        im = open_image(path)
    except UNREADABLE_IMAGE as e:
        raise UserError(f"--style: {path} is not a readable image ({e})") from None
    if min(im.size) < MIN_SIDE:
        raise UserError(f"--style: {path} is {im.size[0]}x{im.size[1]}; a style image needs at least "
                        f"{MIN_SIDE}x{MIN_SIDE} pixels")
    return im


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", RGB_TO_YIQ.to(x.device), x)


def yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(RGB_TO_YIQ).to(x.device), x)


def luminance_like(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style's luminance with the content's mean and standard deviation, as grey RGB (Gatys et al. 2016b)."""
    ys, yc = rgb_to_yiq(style)[:, :1], rgb_to_yiq(content)[:, :1]
    matched = (ys - ys.mean()) / ys.std().clamp_min(1e-6) * yc.std() + yc.mean()
    return matched.expand(-1, 3, -1, -1)


class StyleObjective:
    """The loss of an image (1, 3, H, W) for one content and one style image: see the module's note on its balance."""

    def __init__(self, features: StyleFeatures, content: torch.Tensor, style: torch.Tensor, strength: float = 1.0):
        self.features, self.strength = features, strength
        with torch.no_grad():
            style_maps, content_maps = features(style), features(content)
            self.grams = {layer: gram_matrix(style_maps[layer]) for layer in features.style_layers}
            self.targets = {layer: content_maps[layer] for layer in features.content_layers}
            self.style_weights = style_layer_weights(self.grams, features.style_layers, strength)
            self.content_weight = content_weight(self.targets).item()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        return (self.content_weight * content_loss(maps, self.targets) + style_loss(maps, self.grams, self.style_weights)
                + self.strength * TV_WEIGHT * total_variation(x) + RANGE_WEIGHT * out_of_range(x))


def stylize_tensor(features: StyleFeatures, content: torch.Tensor, style: torch.Tensor, strength: float = 1.0,
                   steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """`content` (1, 3, H, W) in [-1, 1] in the style of `style` (1, 3, h, w): a (1, 3, H, W) image in [-1, 1].

    Coarse to fine (Gatys et al. 2017): above COARSE_SIDE the image is first stylised at half the
    size (and so on down), and each finer level starts from the level below, enlarged, with
    content and style at its own scale; each level takes `steps` evaluations. The features' reach
    is fixed in pixels, so at the finest level of a large image alone the style's structures
    would come out small; the coarse levels lay them out large. Strength 0 returns the content
    as it is (the optimum of the content loss alone).
    """
    if strength == 0:
        return content.clone()
    levels = pyramid_sizes(tuple(content.shape[-2:]))
    # Drawn at the coarsest level's size, where it is used: a resized draw would have a smaller spread.
    noise = torch.randn((1, 3, *levels[0]), generator=torch.Generator().manual_seed(seed)).to(content.device)
    x = None
    for i, size in enumerate(levels):
        scaled_content = resized(content, size)
        scale = size[0] / content.shape[-2]
        scaled_style = resized(style, (max(1, round(style.shape[-2] * scale)), max(1, round(style.shape[-1] * scale))))
        # The coarsest level starts from the photo and a little noise; every finer one from the level below, enlarged.
        start = scaled_content + INIT_NOISE * noise if x is None else resized(x, size)
        desc = "stylizing" if len(levels) == 1 else f"stylizing {size[1]}x{size[0]} ({i + 1}/{len(levels)})"
        x = optimise(StyleObjective(features, scaled_content, scaled_style, strength), start, steps, desc, progress)
    return x


def pyramid_sizes(size: tuple[int, int]) -> list[tuple[int, int]]:
    """(H, W) of each level, coarse to fine: halved until the longest side is at most COARSE_SIDE."""
    sizes = [size]
    while max(sizes[-1]) > COARSE_SIDE and min(sizes[-1]) >= 2 * MIN_SIDE:
        sizes.append((round(sizes[-1][0] / 2), round(sizes[-1][1] / 2)))
    return sizes[::-1]


def resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) resized to `size` (antialiased bicubic), or itself at its own size."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


def optimise(objective: StyleObjective, start: torch.Tensor, steps: int, desc: str, progress: bool) -> torch.Tensor:
    """`steps` L-BFGS loss evaluations of `objective` from `start`; the result clamped to [-1, 1]."""
    x = start.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([x], lr=1, max_iter=steps, max_eval=steps, history_size=20, tolerance_grad=0,
                                  tolerance_change=0, line_search_fn="strong_wolfe")
    bar = tqdm(total=steps, desc=desc, unit="step", leave=False, disable=not progress)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = objective(x)
        loss.backward()
        bar.update()
        return loss

    optimiser.step(closure)
    bar.close()
    return x.detach().clamp(-1, 1)


def content_image(im: Image.Image) -> Image.Image:
    """An image to stylize in a plain mode, refused in one line when smaller than MIN_SIDE on a side."""
    im = plain_mode(im)
    if min(im.size) < MIN_SIDE:
        raise UserError(f"{im.size[0]}x{im.size[1]} is too small to stylize (at least {MIN_SIDE}x{MIN_SIDE})")
    return im


def style_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) scaled, up or down, so that the longest side is `longest`."""
    scale = longest / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def stylize_image(features: StyleFeatures, im: Image.Image, style: Image.Image, size: int = DEFAULT_SIZE,
                  strength: float = 1.0, preserve_colour: bool = False, steps: int = DEFAULT_STEPS, seed: int = 0,
                  device: torch.device = torch.device("cpu"), progress: bool = True) -> Image.Image:
    """One PIL image in the style of another: RGB, at most `size` on its longest side; an alpha channel is kept."""
    im = content_image(im)
    work = fit_size(im.size, size)
    if min(work) < MIN_SIDE:
        raise UserError(f"{im.size[0]}x{im.size[1]} would be {work[0]}x{work[1]} at --size {size}, narrower than "
                        f"{MIN_SIDE} pixels; raise --size")
    styled = style_size(style.size, max(work))
    if min(styled) < MIN_SIDE:
        raise UserError(f"--style: a {style.size[0]}x{style.size[1]} style image would be {styled[0]}x{styled[1]} "
                        f"beside a {work[0]}x{work[1]} result, narrower than {MIN_SIDE} pixels")
    content = to_tensor(im, work).to(device)
    style_tensor = to_tensor(style, styled).to(device)
    if preserve_colour:
        grey = rgb_to_yiq(content)[:, :1].expand(-1, 3, -1, -1)
        x = stylize_tensor(features, grey, luminance_like(style_tensor, content), strength, steps, seed, progress)
        yiq = torch.cat([rgb_to_yiq(x)[:, :1], rgb_to_yiq(content)[:, 1:]], dim=1)
        x = yiq_to_rgb(yiq).clamp(-1, 1)
    else:
        x = stylize_tensor(features, content, style_tensor, strength, steps, seed, progress)
    result = Image.fromarray(float_to_uint8(x)[0].permute(1, 2, 0).numpy())
    if im.mode in ("RGBA", "LA"):
        result.putalpha(im.getchannel("A").resize(work, Image.Resampling.BICUBIC))
    return result


def check_options(size: int, strength: float, steps: int) -> None:
    if not MIN_SIDE <= size <= MAX_SIZE:
        raise UserError(f"--size: must be between {MIN_SIDE} and {MAX_SIZE} pixels, got {size}")
    if not (math.isfinite(strength) and strength >= 0):
        raise UserError(f"--strength: must be 0 or more, got {strength}")
    if steps < 1:
        raise UserError(f"--steps: must be at least 1, got {steps}")


def stylize(source: str | Path, style: str | Path, out: str | Path | None = None, size: int = DEFAULT_SIZE,
            strength: float = 1.0, preserve_colour: bool = False, steps: int = DEFAULT_STEPS, seed: int = 0,
            features: str | Path | None = None, overwrite: bool = False, device: str = "auto") -> Path:
    """Stylize one image, or every image under a folder (mirrored into `out` as PNGs, see `output_paths`); returns `out`.

    Every check that can fail runs before any pixel is optimised, and nothing is written on failure.
    A folder run skips unreadable or too-small files, and outputs that exist already (so an
    interrupted run can be repeated), and reports them at the end.
    """
    source, style = Path(source), Path(style)
    check_options(size, strength, steps)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    style_im = read_style(style)
    out = checked_output(source, out, "_styled", overwrite)
    content = read_image(source) if source.is_file() else None
    torch_device = pick_device(device)
    net = load_style_features(features).to(torch_device)
    log.info("stylize: %s features, style %s, strength %g, %d steps, seed %d%s", net.name, style, strength, steps, seed,
             ", colours kept" if preserve_colour else "")
    text = {"Software": f"ganforge {__version__}", "features": net.name, "style": str(style), "strength": f"{strength:g}",
            "steps": str(steps), "seed": str(seed), "size": str(size), "preserve-colour": str(preserve_colour).lower()}

    def convert(im: Image.Image) -> Image.Image:
        return stylize_image(net, im, style_im, size, strength, preserve_colour, steps, seed, torch_device)

    return save_converted(source, content, out, convert, overwrite, "stylized", text)
