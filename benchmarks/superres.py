"""Super-resolution quality and cost: bicubic vs the fidelity and GAN models, x2 and x4.

Scores the shipped models (or `--runs`) on the four held-out photos of the embedded `photos`
set, following the SR papers' protocol (Y channel, `scale` pixels cut from each border, 8-bit
outputs), and reports seconds per output megapixel on this machine. It also checks that tiled
output equals untiled output, measures the peak memory of a 4096x4096 x2 upscale, and writes
the side-by-side picture of the README (bicubic | fidelity | GAN | original).

    python benchmarks/superres.py                       # shipped models, with the 4096x4096 run
    python benchmarks/superres.py --skip-large          # without the 4096x4096 run
    python benchmarks/superres.py --runs runs/sr2 runs/sr4
    python benchmarks/superres.py --skip-large --self-ensemble 2 8   # the fidelity models also as EDSR+ (default: 2)

With the shipped models it also prints each held-out photo's gain over bicubic, x4 beside the x2
model run twice (as `ganforge upscale --scale 2` on its own output would).
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from ganforge.data.degrade import bicubic_upsample
from ganforge.data.photos import HELDOUT_PHOTOS, _embedded_path, load_photo
from ganforge.imageio import make_grid, save_image, uint8_to_float
from ganforge.data.degrade import lr_hr_pair
from ganforge.metrics.superres import score
from ganforge.nets.sr import ENSEMBLE_SIZES
from ganforge.pipelines.superres_evaluation import evaluate_superres, format_superres_report
from ganforge.tiling import upscale_tensor
from ganforge.pipelines.upscaling import load_upscaler, pick_model, run_variants


def tiling_check(folder: str, scale: int) -> float:
    """Max |tiled - untiled| on a held-out crop that fits one tile, and on the same crop cut into many tiles."""
    generator, _ = load_upscaler(folder, scale, "cpu")
    lr, _ = lr_hr_pair(load_photo(_embedded_path(*HELDOUT_PHOTOS[0])), scale)
    lr = lr[:, :, :96, :128]
    with torch.no_grad():
        whole = generator(lr).clamp(-1, 1)
    one_tile = (upscale_tensor(generator, lr, tile=256, dtype=torch.float32) - whole).abs().max().item()
    many_tiles = (upscale_tensor(generator, lr, tile=40, dtype=torch.float32) - whole).abs().max().item()
    return max(one_tile, many_tiles)


def side_by_side(models: dict[str, str], scale: int, out: Path, crop: int = 64) -> None:
    """bicubic | fidelity | GAN | original, on a crop of each held-out photo, shown at the output size."""
    generators = [load_upscaler(folder, scale, "cpu")[0] for folder in models.values()]
    rows = []
    for i, spec in enumerate(HELDOUT_PHOTOS[:3]):
        photo = load_photo(_embedded_path(*spec))
        h, w = photo.shape[1:]
        side = min(crop * scale, h, w) // scale * scale
        y, x = (h - side) // 2, (w - side) // 2
        lr, hr = lr_hr_pair(photo[:, y : y + side, x : x + side], scale, seed=i)
        row = [bicubic_upsample(lr, scale)[0]]
        row += [uint8_to_float(upscale_tensor(generator, lr)[0]) for generator in generators]
        rows += row + [hr[0]]
    save_image(make_grid(torch.stack(rows), nrow=len(models) + 2, padding=4), out)


def large_image_run(model: str, tile: int) -> tuple[float, float]:
    """Seconds and peak resident GiB of `ganforge upscale` on a 4096x4096 photo, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        photo = load_photo(_embedded_path(*HELDOUT_PHOTOS[1]))
        big = Image.fromarray(photo.transpose(1, 2, 0)).resize((4096, 4096), Image.Resampling.BICUBIC)
        big.save(Path(tmp) / "big.png")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ganforge", "upscale", str(Path(tmp) / "big.png"), "--model", model,
                        "--tile", str(tile), "--out", str(Path(tmp) / "big_x2.png")], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        assert Image.open(Path(tmp) / "big_x2.png").size == (8192, 8192)
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def variants_for(run: str | None, scale: int) -> dict[str, str]:
    """{variant: model folder}: a run's own, or the shipped models for `scale`."""
    if run is not None:
        return {name: str(path) for name, path in run_variants(run).items()}
    return {v: str(pick_model(None, scale, v)) for v in ("fidelity", "gan")}


def per_photo_gains(tile: int) -> str:
    """PSNR-Y gain over bicubic of each held-out photo: x2, x4, and x4 as the x2 model applied twice."""
    x2, _ = load_upscaler(pick_model(None, 2, "fidelity"), device="cpu")
    x4, _ = load_upscaler(pick_model(None, 4, "fidelity"), device="cpu")

    def twice(lr: torch.Tensor) -> torch.Tensor:  # the 8-bit x2 output upscaled again
        return upscale_tensor(x2, uint8_to_float(upscale_tensor(x2, lr, tile)), tile)

    columns = {"x2": (2, lambda lr: upscale_tensor(x2, lr, tile)), "x4": (4, lambda lr: upscale_tensor(x4, lr, tile)),
               "x4 as x2 twice": (4, twice)}
    lines = ["| held-out photo | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    gains = {name: [] for name in columns}
    for i, spec in enumerate(HELDOUT_PHOTOS):
        photo = load_photo(_embedded_path(*spec))
        pairs = {scale: lr_hr_pair(photo, scale, seed=i) for scale in (2, 4)}
        bicubic = {scale: score(bicubic_upsample(lr, scale), hr, scale)["psnr_y"] for scale, (lr, hr) in pairs.items()}
        for name, (scale, upscale) in columns.items():
            lr, hr = pairs[scale]
            with torch.no_grad():
                gains[name].append(score(upscale(lr), hr, scale)["psnr_y"] - bicubic[scale])
        lines.append(f"| {spec[1]} | " + " | ".join(f"{g[-1]:+.2f} dB" for g in gains.values()) + " |")
    lines.append("| mean | " + " | ".join(f"{sum(g) / len(g):+.2f} dB" for g in gains.values()) + " |")
    return "\n".join(lines)


def score_variants(variants: dict[str, str], tile: int, ensembles: list[int]) -> dict:
    """One report with bicubic and every variant, each scored on the held-out photos, and the first variant (the
    fidelity model) again self-ensembled over each of `ensembles` flips/rotations."""
    report = None
    first = next(iter(variants))
    runs = [(name, folder, 1) for name, folder in variants.items()]
    runs += [(f"{first}, self-ensemble {n}", variants[first], n) for n in ensembles if n > 1]
    for name, folder, ensemble in runs:
        one = evaluate_superres(folder, "photos", out=Path(tempfile.gettempdir()) / "ganforge_sr_eval.json", tile=tile,
                                self_ensemble=ensemble)
        if report is None:
            report = {**one, "scores": {"bicubic": one["scores"]["bicubic"]}, "seconds_per_output_megapixel": {}}
        (model_scores,) = [v for k, v in one["scores"].items() if k != "bicubic"]
        report["scores"][name] = model_scores
        report["seconds_per_output_megapixel"][name] = next(iter(one["seconds_per_output_megapixel"].values()))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", help="super-resolution run directories (default: the shipped x2 and x4 models)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 4096x4096 x2 memory run")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--picture", default="docs/superres_x4_compare.png")
    parser.add_argument("--self-ensemble", type=int, nargs="*", default=[2], choices=ENSEMBLE_SIZES[1:], metavar="N",
                        help="also score the fidelity model self-ensembled over N flips/rotations (default: 2)")
    args = parser.parse_args()
    torch.manual_seed(0)
    x2_model = None
    for run, scale in ([(r, None) for r in args.runs] if args.runs else [(None, 2), (None, 4)]):
        variants = variants_for(run, scale)
        report = score_variants(variants, args.tile, args.self_ensemble)
        scale = report["scale"]
        print(format_superres_report(report))
        first = next(iter(variants.values()))
        print(f"\ntiled vs untiled, max abs difference: {tiling_check(first, scale):.2e}\n")
        if scale == 2:
            x2_model = first
        if scale == 4 and len(variants) == 2:
            side_by_side(variants, 4, Path(args.picture))
            print(f"side-by-side picture: {args.picture}\n")
    if not args.runs:
        print(per_photo_gains(args.tile) + "\n")
    if not args.skip_large and x2_model is not None:
        seconds, peak = large_image_run(x2_model, args.tile)
        print(f"4096x4096 photo x2 with `ganforge upscale` (tile {args.tile}): {seconds:.1f} s, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
