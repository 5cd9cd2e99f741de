"""Scoring an inpainting model beside the classical fills, on images it never trained on.

Every image gets one seeded mask of the model's training kind (image i uses seed i), so each
method fills exactly the same holes. The model fills them as `ganforge inpaint` does (window by
window, 8-bit output); the classical fills are those of `ganforge.classical_inpaint`. Scores are
the hole's PSNR, SSIM and L1 (`ganforge.metrics.inpaint`), per image, then averaged.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ganforge.atomic import atomic_path
from ganforge.classical_inpaint import available_methods, classical_fill
from ganforge.config import load_yaml
from ganforge.data import load_imageset, split
from ganforge.data.imageset import native_resolution
from ganforge.data.masks import random_mask
from ganforge.data.photos import load_photo, load_photos
from ganforge.errors import UserError
from ganforge.imageio import UNREADABLE_IMAGE, check_writable, uint8_to_float
from ganforge.metrics.inpaint import hole_scores
from ganforge.pipelines.inpainting import fill_pixels, load_inpainter


def heldout_images(where: str | Path, data: str | None, channels: int) -> tuple[list[np.ndarray], str]:
    """uint8 (C, H, W) images to score on: `data` (an embedded set, a folder or an image), else the run's held-out ones."""
    if data is None:
        config_path = Path(where) / "config.yaml"
        if not config_path.exists():
            raise UserError(f"--data: {where} is not a run directory; name the images to score on")
        run = load_yaml(config_path)
        data, max_images = run["data"], run.get("max_images")
    else:
        max_images = None
    if native_resolution(data):
        train, held = split(load_imageset(data, native_resolution(data), channels), max_images)
        chosen = held if len(held) else train
        return list(chosen.images.numpy().copy()), f"{'held-out ' if len(held) else ''}images of {data}"
    if Path(data).is_file():
        try:
            photos, source = [load_photo(Path(data))], data
        except UNREADABLE_IMAGE as e:
            raise UserError(f"--data: {data} is not a readable image ({e})") from None
    else:
        train, held = load_photos(data, max_images)
        photos, source = (held, f"held-out photos of {data}") if held else (train, data)
    if not photos:
        raise UserError(f"--data: the run trained on all of {data}; name held-out images to score on")
    return [np.asarray(Image.fromarray(p.transpose(1, 2, 0)).convert('L'))[None] if channels == 1 else p
            for p in photos], source


def fill_with_model(generator: torch.nn.Module, config: dict, image: np.ndarray, mask: np.ndarray,
                    texture: bool = False) -> torch.Tensor:
    """The model's fill of a uint8 (C, H, W) image, rounded to 8 bits like a saved output, in [-1, 1]."""
    return uint8_to_float(torch.from_numpy(fill_pixels(generator, config, image, mask, texture=texture)))[None]


def fill_classically(method: str, image: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """A classical fill (`classical_inpaint`) of a uint8 (C, H, W) image, in [-1, 1], beside `fill_with_model`'s."""
    filled = classical_fill(method, image.transpose(1, 2, 0), mask).transpose(2, 0, 1)
    return uint8_to_float(torch.from_numpy(np.ascontiguousarray(filled)))[None]


def evaluate_inpaint(where: str | Path, data: str | None = None, out: str | Path | None = None,
                     device: str = "auto") -> dict:
    """Hole PSNR/SSIM/L1 of the model and of each classical fill; the report is also written as JSON."""
    generator, config = load_inpainter(where, device)
    images, source = heldout_images(where, data, config["channels"])
    run_dir = Path(where) if (Path(where) / "config.yaml").exists() else None
    out = Path(out) if out else (run_dir / "evaluation.json" if run_dir else Path("evaluation.json"))
    check_writable(out, "--out")
    methods = ["model", *available_methods()]
    scores = {m: [] for m in methods}
    seconds = 0.0
    for i, image in enumerate(tqdm(images, desc="filling", unit="img", disable=len(images) < 4)):
        mask = random_mask(config["masks"], *image.shape[1:], np.random.default_rng(i))
        original, hole = uint8_to_float(torch.from_numpy(image))[None], torch.from_numpy(mask)[None, None].float()
        start = time.perf_counter()
        filled = {"model": fill_with_model(generator, config, image, mask)}
        seconds += time.perf_counter() - start
        filled.update({method: fill_classically(method, image, mask) for method in methods[1:]})
        for method, result in filled.items():
            scores[method].append(hole_scores(result, original, hole))
    megapixels = sum(image.shape[1] * image.shape[2] for image in images) / 1e6
    report = {"run": str(where), "task": "inpaint", "images": len(images), "reference": source,
              "masks": f"{config['masks']}, image i with seed i",
              "scores": {m: {k: float(np.mean([s[k] for s in rows])) for k in rows[0]} for m, rows in scores.items()},
              "model_seconds_per_megapixel": seconds / megapixels}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


def format_inpaint_report(report: dict) -> str:
    lines = [f"inpainting on {report['images']} {report['reference']} (masks: {report['masks']})",
             "scores inside the holes only", "", "| method | PSNR (dB) | SSIM | L1 |", "| --- | --- | --- | --- |"]
    for name, s in report["scores"].items():
        lines.append(f"| {name} | {s['psnr_hole']:.2f} | {s['ssim_hole']:.4f} | {s['l1_hole']:.4f} |")
    lines.append(f"\nmodel: {report['model_seconds_per_megapixel']:.2f} s per megapixel")
    return "\n".join(lines)
