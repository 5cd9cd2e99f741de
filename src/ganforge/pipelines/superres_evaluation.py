"""Scoring super-resolution the way the SR papers do, with bicubic upscaling always beside the model.

Protocol: the high-resolution photo is cropped to a multiple of the scale and degraded into the
low-resolution input; the model's output is rounded to 8 bits; PSNR and SSIM are computed on
the BT.601 luma (Y) channel with `scale` pixels cut from each border.
"""

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ganforge.atomic import atomic_path
from ganforge.config import load_yaml
from ganforge.data.degrade import bicubic_upsample, lr_hr_pair
from ganforge.data.photos import load_photo, load_photos
from ganforge.errors import UserError
from ganforge.imageio import UNREADABLE_IMAGE, check_writable
from ganforge.metrics.superres import mean_scores, score
from ganforge.nets.sr import SelfEnsemble
from ganforge.tiling import upscale_tensor
from ganforge.pipelines.upscaling import load_upscaler, run_variants

log = logging.getLogger("ganforge")


def heldout_photos(where: str | Path, data: str | None) -> tuple[list[np.ndarray], str]:
    """The photos to score on: `data` (a folder, an image, or `photos`), else the run's held-out photos."""
    if data is not None:
        if Path(data).is_file():
            try:
                return [load_photo(Path(data))], data
            except UNREADABLE_IMAGE as e:
                raise UserError(f"--data: {data} is not a readable image ({e})") from None
        train, held = load_photos(data)
        return (held, f"held-out photos of {data}") if held else (train, data)
    config_path = Path(where) / "config.yaml"
    if not config_path.exists():
        raise UserError(f"--data: {where} is not a run directory; name the photos to score on")
    run = load_yaml(config_path)
    _, held = load_photos(run["data"], run.get("max_images"))
    if not held:
        raise UserError(f"--data: the run trained on all of {run['data']}; name held-out photos to score on")
    return held, f"held-out photos of {run['data']}"


def evaluate_superres(where: str | Path, data: str | None = None, out: str | Path | None = None, device: str = "auto",
                      tile: int = 256, self_ensemble: int = 1) -> dict:
    """PSNR/SSIM (Y) of bicubic and of each variant of a super-resolution run or model; the report is also JSON.

    `self_ensemble` > 1 scores each model averaged over that many flips/rotations (`SelfEnsemble`), as
    `ganforge upscale --self-ensemble` runs it."""
    variants = run_variants(where)
    upscalers = {name: load_upscaler(path, device=device) for name, path in variants.items()}
    upscalers = {name: (SelfEnsemble(generator, self_ensemble), config) for name, (generator, config) in upscalers.items()}
    first_generator, first_config = next(iter(upscalers.values()))
    scale, degradation = first_generator.scale, first_config.get("degradation", "bicubic")
    photos, source = heldout_photos(where, data)
    run_dir = Path(where) if (Path(where) / "config.yaml").exists() else None
    out = Path(out) if out else (run_dir / "evaluation.json" if run_dir else Path("evaluation.json"))
    check_writable(out, "--out")
    pairs = [lr_hr_pair(p, scale, degradation, seed=i) for i, p in enumerate(photos) if min(p.shape[1:]) >= 16 * scale]
    if not pairs:
        raise UserError(f"--data: no photo of {source} is at least {16 * scale} pixels on each side")
    if len(pairs) < len(photos):
        warnings.warn(f"{source}: skipped {len(photos) - len(pairs)} photo(s) smaller than {16 * scale} pixels on a side",
                      stacklevel=2)
    rows = {"bicubic": mean_scores([score(bicubic_upsample(lr, scale), hr, scale) for lr, hr in pairs])}
    seconds, megapixels = {}, sum(hr.shape[-1] * hr.shape[-2] for _, hr in pairs) / 1e6
    work = len(upscalers) * len(pairs)
    with tqdm(total=work, desc=f"evaluating x{scale}", unit="photo", dynamic_ncols=True, disable=work == 1) as bar:
        for name, (generator, _) in upscalers.items():
            bar.set_postfix_str(name)
            start, outputs = time.perf_counter(), []
            for lr, _ in pairs:
                outputs.append(upscale_tensor(generator, lr, tile))
                bar.update()
            seconds[name] = (time.perf_counter() - start) / megapixels
            rows[name] = mean_scores([score(sr, hr, scale) for sr, (_, hr) in zip(outputs, pairs)])
    report = {"run": str(where), "task": "superres", "scale": scale, "degradation": degradation, "photos": len(pairs),
              "reference": source, "protocol": f"Y channel (BT.601), {scale}-pixel border cut, 8-bit outputs",
              "self_ensemble": self_ensemble,
              "scores": rows, "seconds_per_output_megapixel": seconds}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


def format_superres_report(report: dict) -> str:
    ensemble = report.get("self_ensemble", 1)
    models = f", models self-ensembled over {ensemble} flips/rotations" if ensemble > 1 else ""
    lines = [f"x{report['scale']} super-resolution on {report['photos']} {report['reference']} ({report['degradation']} inputs{models})",
             f"protocol: {report['protocol']}", "", "| method | PSNR-Y (dB) | SSIM-Y | vs bicubic | sharpness (% of original) | s / output MP |",
             "| --- | --- | --- | --- | --- | --- |"]
    base = report["scores"]["bicubic"]["psnr_y"]
    for name, s in report["scores"].items():
        speed = report["seconds_per_output_megapixel"].get(name)
        lines.append(f"| {name} | {s['psnr_y']:.2f} | {s['ssim_y']:.4f} | {s['psnr_y'] - base:+.2f} dB | {s['sharpness']:.0f} | "
                     f"{'-' if speed is None else f'{speed:.2f}'} |")
    return "\n".join(lines)
