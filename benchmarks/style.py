"""Style transfer and translation, judged in spaces that no method optimised.

Stylisation (`stylize`): three held-out embedded photos (chelsea, rocket, flower) x three styles
(scikit-image's gravel and brick textures, and `painterly`, a strongly coloured stroke image made
by `style_optimiser.painterly`), for optimisation with the built-in random features, optimisation
with a VGG19-shaped network (random weights: real VGG weights cannot be downloaded here; the
row shows what the shape costs and gives), and fast networks given by `--fast-model STYLE=RUN`.
- style distance: the sliced Wasserstein distance (Rabin et al. 2011; Karras et al. 2018's SWD)
  between the 7x7 RGB pixel patches of the result and of the style image, at three scales of a
  Gaussian pyramid (x1000, lower is closer). Pixels, not features: no method saw this space.
- content structure: SSIM of the Gaussian-blurred (sigma 2) luminance of the result against the photo's.
- deception rate (Sanakoyeu et al. 2018): a small CNN trained, per style, to tell 32x32 patches of
  the style image from patches of the training photos (the style's own texture left out); the
  share of the result's patches it calls "style". The photo itself scores the floor.
- seconds per image (one thread).

Translation (`translate`): CycleGAN between mnist5k digits (A: 2000 of the 4000 training digits)
and the other 2000 redrawn in a painted style (B: `paint_digits`, thick strokes of a random
saturated colour on a textured canvas), unpaired. On the 1000 held-out digits: the share of
G_AB(a) that a domain classifier (an RBF SVM on pixels, trained on the training A and B sets)
calls B, the share of G_AB(a) whose digit a reader trained on all 4000 training digits painted
reads as the original class, the share of G_BA(G_AB(a)) whose digit a reader trained on the 4000
training digits as they are reads right (the readers: `DigitReader`, a small CNN) (beside both readers' accuracy on intact held-out
digits), and the same the other way (the held-out digits painted, to A and back). The run is trained first if `--cyclegan-run` does not exist:

    ganforge train --task translate --data WORK/a --data-b WORK/b --patch-size 28 --width 32 --blocks 4 \\
        --batch-size 16 --steps 3000 --out RUN

    python benchmarks/style.py translate --work runs/translate-digits-data --cyclegan-run runs/translate-digits-v2
    python benchmarks/style.py styles        # runs/style-benchmark/{gravel,brick,painterly}.png, for fast networks:
    ganforge train --task style --style runs/style-benchmark/gravel.png --data photos --out runs/style-gravel ...
    python benchmarks/style.py stylize --size 256 --fast-model gravel=runs/style-gravel
"""

import argparse
import colorsys
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata
from skimage.filters import gaussian
from skimage.metrics import structural_similarity
from sklearn.svm import SVC

from ganforge.cli import main as ganforge
from ganforge.data import load_imageset, split
from ganforge.data.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, _embedded_path, extract_patches, load_photo
from ganforge.imageio import make_grid, save_image, uint8_to_float
from ganforge.nets.style import load_style_features, random_features
from ganforge.pipelines.fast_stylize import image_through_network, load_style_model
from ganforge.pipelines.stylize import style_size, stylize_image
from ganforge.pipelines.translation import load_translator

sys.path.insert(0, str(Path(__file__).parent))
from style_optimiser import painterly  # noqa: E402

CONTENT = ("chelsea.png", "rocket.jpg", "flower.jpg")
STYLE_TEXTURES = {"gravel": "gravel.png", "brick": "brick.png"}
STYLE_WORK = Path("runs/style-benchmark")


# ---------------------------------------------------------------- translation
def paint_digits(digits: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 (N, 1, H, W) digits -> uint8 (N, 3, H, W): strokes twice as thick, of one saturated colour per digit
    (brush grain in it), on a canvas of a warm off-white with blotches and grain."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = digits.shape
    ink = F.max_pool2d(digits.float() / 255, 3, 1, 1)
    hues = torch.rand(n, generator=g)
    colour = torch.tensor([colorsys.hsv_to_rgb(float(x), 0.85, 0.9) for x in hues]).view(n, 3, 1, 1)
    brush = 0.8 + 0.2 * torch.rand(n, 1, h, w, generator=g)
    blotches = F.interpolate(torch.rand(n, 1, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear",
                             align_corners=False)
    canvas = (torch.tensor([0.93, 0.87, 0.72]).view(1, 3, 1, 1) * (0.85 + 0.15 * blotches)
              - 0.06 * torch.rand(n, 1, h, w, generator=g))
    out = canvas * (1 - ink) + colour * brush * ink
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def write_domains(work: Path, train_digits: torch.Tensor) -> None:
    """WORK/a: the even training digits as they are; WORK/b: the odd ones painted. Written once."""
    if (work / "b").is_dir():
        return
    for name, images in (("a", train_digits[0::2].expand(-1, 3, -1, -1)), ("b", paint_digits(train_digits[1::2], 1))):
        (work / name).mkdir(parents=True, exist_ok=True)
        for i, x in enumerate(images):
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(work / name / f"{i:04d}.png")


def svm(features: np.ndarray, labels: np.ndarray) -> SVC:
    return SVC(kernel="rbf", gamma="scale").fit(features, labels)


def flat(images: torch.Tensor) -> np.ndarray:
    return images.float().flatten(1).numpy()


class DigitReader(torch.nn.Module):
    """A small CNN that reads digits from RGB images in [-1, 1]: two 3x3 convolution pairs with pooling, then a linear layer.

    An RBF SVM on pixels read 95.3% of the intact plain digits but only 90.2% of the painted
    ones, whose random stroke colours put digits of one class far apart in pixel space; a
    convolutional reader learns shape whatever the colour, so the round-trip shares measure the
    translators rather than the reader.
    """

    def __init__(self):
        super().__init__()
        act = torch.nn.ReLU()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), act, torch.nn.Conv2d(32, 32, 3, padding=1), act, torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), act, torch.nn.Conv2d(64, 64, 3, padding=1), act, torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(64 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        return torch.cat([self(chunk).argmax(1) for chunk in x.split(500)]).numpy()


def train_reader(images: torch.Tensor, labels: torch.Tensor, epochs: int = 8, seed: int = 0) -> DigitReader:
    """A `DigitReader` trained with Adam on uint8 (N, 3, 28, 28) digits, shifted by up to 2 pixels each time."""
    torch.manual_seed(seed)
    x, reader = uint8_to_float(images).float(), DigitReader()
    opt = torch.optim.Adam(reader.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist()
            batch = torch.roll(x[idx], (dy, dx), dims=(2, 3))
            loss = F.cross_entropy(reader(batch), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return reader.eval()


def translate(work: Path, run: Path, steps: int, picture: Path) -> None:
    train, held = split(load_imageset("mnist5k", 28), 4000)
    write_domains(work, train.images)
    if not (run / "model").is_dir():
        assert ganforge(["train", "--task", "translate", "--data", str(work / "a"), "--data-b", str(work / "b"),
                         "--patch-size", "28", "--width", "32", "--blocks", "4", "--batch-size", "16", "--steps",
                         str(steps), "--out", str(run)]) == 0
    a2b, _ = load_translator(run, "a2b")
    b2a, _ = load_translator(run, "b2a")
    painted_train = paint_digits(train.images[1::2], 1)
    domain = svm(np.concatenate([flat(train.images[0::2].expand(-1, 3, -1, -1)), flat(painted_train)]),
                 np.r_[np.zeros(len(painted_train)), np.ones(len(painted_train))])
    # A digit reader per domain: on the training digits as they are, and on all of them painted.
    digit_a = train_reader(train.images.expand(-1, 3, -1, -1), train.labels)
    digit_b = train_reader(paint_digits(train.images, 3), train.labels)
    a = uint8_to_float(held.images.expand(-1, 3, -1, -1)).float()
    b = uint8_to_float(paint_digits(held.images, 2)).float()
    labels = held.labels.numpy()
    with torch.no_grad():
        fake_b, fake_a = a2b(a).clamp(-1, 1), b2a(b).clamp(-1, 1)
        rec_a, rec_b = b2a(fake_b).clamp(-1, 1), a2b(fake_a).clamp(-1, 1)

    def as_uint8(x: torch.Tensor) -> np.ndarray:
        return flat(((x + 1) * 127.5).round().clamp(0, 255))

    def share(classifier: SVC | DigitReader, x: torch.Tensor, wanted) -> str:
        quantised = as_uint8(x)  # what a saved PNG holds
        if isinstance(classifier, DigitReader):
            return f"{(classifier.predict(torch.from_numpy(quantised).view(x.shape) / 127.5 - 1) == wanted).mean():.1%}"
        return f"{(classifier.predict(quantised) == wanted).mean():.1%}"

    print(f"\nCycleGAN {run}, {len(labels)} held-out mnist5k digits. On the intact held-out digits: domain SVM "
          f"{share(domain, a, 0)} (A) and {share(domain, b, 1)} (B); digit readers {share(digit_a, a, labels)} (A) and "
          f"{share(digit_b, b, labels)} (B)\n")
    print("| direction | assigned to the target domain | digit read after the translation | digit read after the round trip |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| A -> B -> A | {share(domain, fake_b, 1)} | {share(digit_b, fake_b, labels)} | {share(digit_a, rec_a, labels)} |")
    print(f"| B -> A -> B | {share(domain, fake_a, 0)} | {share(digit_a, fake_a, labels)} | {share(digit_b, rec_b, labels)} |")
    pick = torch.arange(0, len(a), len(a) // 8)[:8]
    rows = torch.cat([a[pick], fake_b[pick], rec_a[pick], b[pick], fake_a[pick], rec_b[pick]])
    save_image(make_grid(F.interpolate(rows, scale_factor=3, mode="nearest"), nrow=8), picture)
    print(f"\nrows: A | A->B | A->B->A | B | B->A | B->A->B  ({picture})")


# ---------------------------------------------------------------- stylisation
def pyramid(x: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    out = [x]
    for _ in range(levels - 1):
        out.append(F.interpolate(out[-1], scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False))
    return out


def swd(x: torch.Tensor, y: torch.Tensor, patches: int = 4096, directions: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein distance between the 7x7 RGB patches of two images (1, 3, H, W), averaged over a 3-level
    pyramid, x1000."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for a, b in zip(pyramid(x), pyramid(y)):
        pa, pb = (F.unfold(t, 7).squeeze(0).T for t in (a, b))  # (L, 147)
        pa = pa[torch.randint(len(pa), (patches,), generator=g)]
        pb = pb[torch.randint(len(pb), (patches,), generator=g)]
        d = F.normalize(torch.randn(pa.shape[1], directions, generator=g), dim=0)
        total += ((pa @ d).sort(0).values - (pb @ d).sort(0).values).abs().mean().item()
    return 1000 * total / 3


def blurred_luma_ssim(result: np.ndarray, photo: np.ndarray) -> float:
    def luma(im: np.ndarray) -> np.ndarray:
        return gaussian(im.astype(np.float64) @ [0.299, 0.587, 0.114] / 255, sigma=2)
    return structural_similarity(luma(result), luma(photo), data_range=1.0)


class PatchClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c = 16
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 3, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(c, 2 * c, 3, 2, 1),
            torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(2 * c, 4 * c, 3, 2, 1), torch.nn.LeakyReLU(0.2),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4 * c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def crops(image: np.ndarray, size: int = 32) -> torch.Tensor:
    return uint8_to_float(extract_patches([image.transpose(2, 0, 1)], size, max_patches=2000)).float()


def train_patch_classifier(style: np.ndarray, photos: list[np.ndarray], seed: int = 0, steps: int = 400) -> PatchClassifier:
    torch.manual_seed(seed)
    pos = torch.cat([crops(style), crops(style[:, ::-1].copy())])
    neg = torch.cat([crops(p) for p in photos])
    net = PatchClassifier()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.cat([pos[torch.randint(len(pos), (32,), generator=g)], neg[torch.randint(len(neg), (32,), generator=g)]])
        y = torch.cat([torch.ones(32), torch.zeros(32)])
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def deception(net: PatchClassifier, image: np.ndarray) -> float:
    with torch.no_grad():
        return (net(crops(image)) > 0).float().mean().item()


def vgg_shaped_file(path: Path) -> Path:
    """A VGG19 weights file in torchvision's layout with seeded He-normal weights (no real weights can be downloaded)."""
    from safetensors.torch import save_file
    from ganforge.nets.vgg import vgg19_features
    torch.manual_seed(0)
    net = vgg19_features(len(vgg19_features(10**6)) - 1)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    save_file({f"features.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def style_images() -> dict[str, Image.Image]:
    out = {name: Image.open(_embedded_path("skimage", file)).convert("RGB") for name, file in STYLE_TEXTURES.items()}
    return {**out, "painterly": painterly()}


def stylize(size: int, steps: int, fast_models: list[tuple[str, str]], vgg_shaped: bool, work: Path,
            picture: Path) -> None:
    torch.set_num_threads(1)
    photos = {name: Image.open(_embedded_path(p, name)).convert("RGB") for p, name in HELDOUT_PHOTOS if name in CONTENT}
    styles = style_images()
    work.mkdir(parents=True, exist_ok=True)
    methods = {"optimisation, built-in": random_features()}
    if vgg_shaped:
        methods["optimisation, VGG19-shaped (random weights)"] = load_style_features(
            vgg_shaped_file(work / "vgg19-random.safetensors"))
    # The first 14, the embedded set when the README's table was measured, so that the table reproduces.
    training_photos = {file: load_photo(_embedded_path(p, file)).transpose(1, 2, 0) for p, file in TRAIN_PHOTOS[:14]}
    print(f"\nstylisation at {size} px, {steps} L-BFGS evaluations, one thread\n")
    print("| style | method | style SWD (lower closer) | content SSIM (blurred Y) | deception | s/image |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    grid = []
    for style_name, style in styles.items():
        # Judged at the scale it is applied at: stylize scales the style to the result's longest side.
        style_np = np.asarray(style.resize(style_size(style.size, size), Image.Resampling.LANCZOS))
        others = [im for file, im in training_photos.items() if file != STYLE_TEXTURES.get(style_name)]
        classifier = train_patch_classifier(style_np, others)
        runners = {name: (lambda im, f=f: stylize_image(f, im, style, size=size, steps=steps, progress=False))
                   for name, f in methods.items()}
        for run in (run for name, run in fast_models if name == style_name):
            net, _ = load_style_model(run)
            runners[f"fast ({run})"] = lambda im, net=net: image_through_network(
                net, im.resize(stylize_size(im.size, size), Image.Resampling.LANCZOS), torch.device("cpu"))
        rows = {"the photo itself": ([], [], [], [])}
        for photo_name, photo in photos.items():
            small = photo.resize(stylize_size(photo.size, size), Image.Resampling.LANCZOS)
            small_np = np.asarray(small)
            style_t = uint8_to_float(torch.from_numpy(style_np.copy()).permute(2, 0, 1))[None].float()
            photo_t = uint8_to_float(torch.from_numpy(small_np.copy()).permute(2, 0, 1))[None].float()
            rows["the photo itself"][0].append(swd(photo_t, style_t))
            rows["the photo itself"][1].append(1.0)
            rows["the photo itself"][2].append(deception(classifier, small_np))
            row = {"photo": photo_t[0], "style": style_t[0]}
            for name, run in runners.items():
                t0 = time.perf_counter()
                result = np.asarray(run(photo).convert("RGB"))
                seconds = time.perf_counter() - t0
                result_t = uint8_to_float(torch.from_numpy(result.copy()).permute(2, 0, 1))[None].float()
                scores = rows.setdefault(name, ([], [], [], []))
                scores[0].append(swd(result_t, style_t))
                scores[1].append(blurred_luma_ssim(result, small_np))
                scores[2].append(deception(classifier, result))
                scores[3].append(seconds)
                Image.fromarray(result).save(work / f"{style_name}-{photo_name.split('.')[0]}-{slug(name)}.png")
                if name == "optimisation, built-in" or (name.startswith("fast") and "fast" not in row):
                    row["optimisation" if name.startswith("optimisation") else "fast"] = result_t[0]
            cells = [row["photo"], row["style"], row["optimisation"], row.get("fast", torch.zeros_like(row["photo"]))]
            grid.append(torch.stack([square(x, 192) for x in cells]))
        for name, (distance, ssim, fooled, seconds) in rows.items():
            s = f"{np.mean(seconds):.2f}" if seconds else "-"
            print(f"| {style_name} | {name} | {np.mean(distance):.1f} | {np.mean(ssim):.3f} | {np.mean(fooled):.1%} | {s} |",
                  flush=True)
    save_image(make_grid(torch.cat(grid), nrow=4), picture)
    print(f"\nrows: photo | style | optimisation (built-in) | the first fast network given (grey: none)  ({picture})")


def square(x: torch.Tensor, side: int) -> torch.Tensor:
    """The centre square of (3, H, W), resized to `side`: grid cells that keep the image's proportions."""
    h, w = x.shape[-2:]
    m = min(h, w)
    crop = x[:, (h - m) // 2 : (h - m) // 2 + m, (w - m) // 2 : (w - m) // 2 + m]
    return F.interpolate(crop[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def stylize_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["translate", "stylize", "styles"],
                        help="styles: write the three style images to runs/style-benchmark/ (for training fast networks)")
    parser.add_argument("--work", type=Path, default=Path("runs/translate-digits-data"))
    parser.add_argument("--cyclegan-run", type=Path, default=Path("runs/translate-digits-v2"))
    parser.add_argument("--cyclegan-steps", type=int, default=3000)
    parser.add_argument("--size", type=int, default=256, help="stylisation: longest side of the results")
    parser.add_argument("--steps", type=int, default=100, help="stylisation: L-BFGS evaluations")
    parser.add_argument("--fast-model", action="append", default=[], metavar="STYLE=RUN",
                        help="a fast style network for one of the styles (gravel, brick, painterly)")
    parser.add_argument("--vgg-shaped", action="store_true",
                        help="stylisation: add optimisation with a VGG19-shaped network (random weights; ~7x slower)")
    parser.add_argument("--picture", type=Path)
    args = parser.parse_args()
    if args.part == "styles":
        STYLE_WORK.mkdir(parents=True, exist_ok=True)
        for name, im in style_images().items():
            im.save(STYLE_WORK / f"{name}.png")
            print(STYLE_WORK / f"{name}.png")
    elif args.part == "translate":
        translate(args.work, args.cyclegan_run, args.cyclegan_steps, args.picture or Path("docs/translate_digits.png"))
    else:
        fast = [tuple(item.split("=", 1)) for item in args.fast_model]
        stylize(args.size, args.steps, fast, args.vgg_shaped, STYLE_WORK, args.picture or Path("docs/stylize_benchmark.jpg"))


if __name__ == "__main__":
    main()
