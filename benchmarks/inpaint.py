"""Inpainting quality and cost: the classical fills against a trained model, on images it never saw.

Digits: the 1000 mnist5k digits that `configs/inpaint-digits.yaml` holds out, with a centre box
covering a quarter of the image and with free-form strokes. Hole PSNR/SSIM/L1 for biharmonic,
Telea, Navier-Stokes (with OpenCV installed) and the model, and the share of filled digits that
the mnist5k domain classifier (trained on the 4000 training digits) assigns to the original
class, beside its share on the intact digits.

Photos (with `--photos-model`): the four held-out embedded photos, each with four seeded masks of
LaMa's "thick" setting and four of boxes; the same hole scores, and a distribution distance that
no method optimised: FID and KID in the features of a contrastive domain network trained on crops
of the 14 training photos, between the 64x64 crops (stride 32) that are at least a quarter hole
in the filled photos and the same crops of the originals. With `--texture`, each photo model also
fills with `ganforge inpaint --texture` (its own row, and a column in the picture). Cost: seconds
per megapixel and peak resident memory of `ganforge inpaint` on a 4096x4096 photo with a 20% mask,
in a fresh process.

    python benchmarks/inpaint.py --digits-model runs/inpaint-digits
    python benchmarks/inpaint.py --digits-model inpaint-digits --photos-model runs/inpaint-photos --large
    python benchmarks/inpaint.py --skip-digits --photos-model inpaint-photos --texture --large
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.svm import SVC
from tqdm import tqdm

from ganforge.classical_inpaint import available_methods
from ganforge.data import load_imageset, split
from ganforge.data.masks import random_mask
from ganforge.data.imageset import ImageSet
from ganforge.data.photos import extract_patches, load_photos
from ganforge.imageio import make_grid, save_image, uint8_to_float
from ganforge.metrics.distribution import fid, kid
from ganforge.metrics.domain import domain_features, train_domain_features
from ganforge.metrics.inpaint import hole_scores
from ganforge.pipelines.inpaint_evaluation import fill_classically, fill_with_model
from ganforge.pipelines.inpainting import load_inpainter

PHOTO_MASKS = 4  # seeded masks per held-out photo and kind


def centre_box(h: int, w: int) -> np.ndarray:
    """A centred box covering a quarter of the image (half of each side)."""
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    return mask


def fill_all(images: list[np.ndarray], masks: list[np.ndarray], models: dict) -> dict[str, list[torch.Tensor]]:
    """Every classical method's and every model's ({name: (generator, config, texture)}) fills, (1, C, H, W) in [-1, 1]."""
    out = {name: [fill_with_model(generator, config, im, m, texture) for im, m in zip(images, masks)]
           for name, (generator, config, texture) in tqdm(models.items(), desc="models", unit="model")}
    for method in available_methods():
        out[method] = [fill_classically(method, im, m) for im, m in zip(images, masks)]
    return out


def score_table(title: str, images: list[np.ndarray], masks: list[np.ndarray], fills: dict, extra=None,
                extra_title: str = "class kept") -> None:
    """One row per method: mean hole scores, and `extra(fills)`, a formatted column or columns, when given."""
    print(f"\n{title}\n| method | hole PSNR (dB) | hole SSIM | hole L1 |{'' if extra is None else f' {extra_title} |'}")
    print("| --- | ---: | ---: | ---: |" + ("" if extra is None else " ---: |" * (extra_title.count("|") + 1)))
    originals = [uint8_to_float(torch.from_numpy(im))[None] for im in images]
    holes = [torch.from_numpy(m)[None, None].float() for m in masks]
    classical = available_methods()
    for method in [*classical, *[m for m in fills if m not in classical]]:
        rows = [hole_scores(f, o, h) for f, o, h in zip(fills[method], originals, holes)]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        kept = "" if extra is None else extra(fills[method])
        print(f"| {method} | {mean['psnr_hole']:.2f} | {mean['ssim_hole']:.4f} | {mean['l1_hole']:.4f} |{kept}")


def digits(model: str, picture: Path) -> None:
    models = {model: (*load_inpainter(model, "cpu"), False)}
    train, held = split(load_imageset("mnist5k", 28), 4000)
    classifier = domain_features(train)
    labels = held.labels

    def class_kept(images: torch.Tensor | list[torch.Tensor]) -> float:
        images = torch.cat(images) if isinstance(images, list) else images
        return float((classifier.predict_proba(images).argmax(dim=1) == labels).float().mean())

    images = list(held.images.numpy().copy())
    print(f"digits: {len(images)} held-out mnist5k digits; the classifier keeps "
          f"{100 * class_kept(uint8_to_float(held.images)):.1f}% of the intact ones in their class")
    rows = []
    for name, make in (("centre box, a quarter of the image", lambda i: centre_box(28, 28)),
                       ("free-form strokes (DeepFill v2), seed i", lambda i: random_mask("freeform", 28, 28,
                                                                                         np.random.default_rng(i)))):
        masks = [make(i) for i in range(len(images))]
        fills = fill_all(images, masks, models)
        score_table(f"digits, {name}", images, masks, fills, lambda f: f" {100 * class_kept(f):.1f}% |")
        if name.startswith("centre box"):
            print(box_ceiling(train, held, masks[0]))
        shown = range(8)
        rows += [torch.cat([uint8_to_float(torch.from_numpy(images[i]))[None] * (1 - torch.from_numpy(masks[i]).float()),
                            fills["biharmonic"][i], fills[model][i], uint8_to_float(torch.from_numpy(images[i]))[None]])
                 for i in shown]
    save_image(make_grid(torch.cat(rows), nrow=4), picture)
    print(f"\npicture (input with hole | biharmonic | model | original): {picture}")


def box_ceiling(train: ImageSet, held: ImageSet, box: np.ndarray) -> str:
    """How often the class can be told from what the box leaves: classifiers trained on box-masked digits.

    A fill is a guess made from the visible pixels, so the share of filled digits that keep
    their class can only exceed these by luck: they estimate what any inpainter can reach.
    """
    keep = torch.from_numpy(~box)

    def masked(images: torch.Tensor) -> torch.Tensor:
        return images * keep

    cnn = train_domain_features(masked(train.images), train.labels, steps=1500)
    cnn_share = float((cnn.predict_proba(masked(held.images)).argmax(dim=1) == held.labels).float().mean())

    def flat(images: torch.Tensor) -> np.ndarray:
        return masked(images).reshape(len(images), -1).float().numpy() / 255

    svc_share = float((SVC(C=5).fit(flat(train.images), train.labels).predict(flat(held.images)) == held.labels.numpy()).mean())
    return (f"the class from the pixels outside the box alone: {100 * cnn_share:.1f}% (the domain classifier's network "
            f"trained on box-masked digits), {100 * svc_share:.1f}% (an RBF support-vector machine on them)")


def hole_crops(images: list[torch.Tensor], masks: list[np.ndarray], size: int = 64) -> torch.Tensor:
    """The `size` crops (stride size/2) of each (1, C, H, W) image that are at least a quarter hole."""
    crops = []
    for image, mask in zip(images, masks):
        h, w = mask.shape
        crops += [image[0, :, y : y + size, x : x + size] for y in range(0, h - size + 1, size // 2)
                  for x in range(0, w - size + 1, size // 2) if mask[y : y + size, x : x + size].mean() >= 0.25]
    return torch.stack(crops)


def photos(names: list[str], picture: Path, texture: bool) -> None:
    """The photo rows for every model in `names` (and with `texture`, for each again with it); the picture shows the
    first one."""
    models = {name: (*load_inpainter(name, "cpu"), False) for name in names}
    if texture:
        models.update({f"{name} + texture": (*models[name][:2], True) for name in names})
    train, held = load_photos("photos", max_images=14)  # the set inpaint-photos trained on and the table was measured with
    crops = extract_patches(train, 64, max_patches=4000)
    features = domain_features(ImageSet(crops, torch.full((len(crops),), -1), source="training photo crops"))
    rows = []
    for kind in ("thick", "box"):
        images = [p for p in held for _ in range(PHOTO_MASKS)]
        masks = [random_mask(kind, *im.shape[1:], np.random.default_rng(i)) for i, im in enumerate(images)]
        fills = fill_all(images, masks, models)
        originals = hole_crops([uint8_to_float(torch.from_numpy(im))[None] for im in images], masks)
        real = features.features(originals)

        def distance(filled: list[torch.Tensor]) -> str:
            fake = features.features(hole_crops(filled, masks))
            return f" {fid(real, fake):.2f} | {1000 * kid(real, fake)['kid']:.2f} |"

        score_table(f"held-out photos, {kind} masks ({len(images)} fills; FID/KID on {len(originals)} crops, "
                    "KID x 1000)", images, masks, fills, distance, "FID | KID")
        shown = [names[0]] + ([f"{names[0]} + texture"] if texture else [])
        rows += [photo_row(images[i], masks[i], fills, shown, i) for i in range(0, len(images), PHOTO_MASKS)]
    save_image(make_grid(torch.cat(rows), nrow=len(shown) + 3), picture)
    print(f"\npicture (input with hole | biharmonic | {' | '.join(shown)} | original), centre crops: {picture}")


def photo_row(image: np.ndarray, mask: np.ndarray, fills: dict, models: list[str], i: int,
              size: int = 192) -> torch.Tensor:
    """input with hole | biharmonic | each of `models` | original, the centre `size` crop of image i, at 1:1."""
    h, w = mask.shape
    y, x = (h - size) // 2, (w - size) // 2
    original = uint8_to_float(torch.from_numpy(image))[None]
    hole = torch.from_numpy(mask)[None, None].float()
    shown = [original * (1 - hole) + hole, fills["biharmonic"][i], *(fills[m][i] for m in models), original]
    return torch.cat([t[:, :, y : y + size, x : x + size] for t in shown])


def large(model: str, texture: bool) -> None:
    """`ganforge inpaint` on a 4096x4096 photo with a 20% mask, in a fresh process: seconds and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        _, held = load_photos("photos")
        Image.fromarray(held[0].transpose(1, 2, 0)).resize((4096, 4096), Image.Resampling.BICUBIC).save(f"{tmp}/big.png")
        rng = np.random.default_rng(0)
        mask = np.zeros((4096, 4096), bool)
        while mask.mean() < 0.2:
            y, x = rng.integers(0, 4096 - 256, 2)
            mask[y : y + 256, x : x + 256] = True
        Image.fromarray(mask.astype(np.uint8) * 255).save(f"{tmp}/mask.png")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ganforge", "inpaint", f"{tmp}/big.png", "--mask", f"{tmp}/mask.png",
                        "--model", model, "--out", f"{tmp}/out.png", *(["--texture"] if texture else [])], check=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        print(f"\n4096x4096 photo, {100 * mask.mean():.0f}% mask{', --texture' if texture else ''}: {seconds:.1f} s "
              f"({seconds / 16.8:.2f} s per megapixel), peak RSS {peak:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits-model", default="inpaint-digits")
    parser.add_argument("--skip-digits", action="store_true", help="only the photo rows")
    parser.add_argument("--photos-model", action="append", default=[],
                        help="an inpainting model for colour photos, repeatable (photo rows are skipped without one)")
    parser.add_argument("--texture", action="store_true", help="also fill with each photo model and --texture")
    parser.add_argument("--large", action="store_true", help="also time a 4096x4096 photo (needs --photos-model)")
    parser.add_argument("--picture", default="docs/inpaint_digits.png")
    parser.add_argument("--photos-picture", default="docs/inpaint_photos.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    if not args.skip_digits:
        digits(args.digits_model, Path(args.picture))
    if args.photos_model:
        photos(args.photos_model, Path(args.photos_picture), args.texture)
        if args.large:
            large(args.photos_model[0], args.texture)


if __name__ == "__main__":
    main()
