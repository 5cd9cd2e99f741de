"""Which optimiser lowers `ganforge stylize`'s loss fastest on the CPU: L-BFGS or Adam, per second.

Each run stylises held-out embedded photos (rocket, flower) at `--size` with the built-in
features and a generated painterly style image (`painterly`), records the best loss reached
after each number of evaluations and the seconds it took, and prints a table. Every method
minimises the same `StyleObjective` from the same seeded start; the last column scores the
saved (clamped) image with it. `lbfgs-clamp` scores the clamped pixels instead of penalising
those out of range (`out_of_range`), the alternative that `stylize` does not take.

    OMP_NUM_THREADS=1 python benchmarks/style_optimiser.py --size 512 --steps 300
"""

import argparse
import time

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from ganforge.data.photos import HELDOUT_PHOTOS, _embedded_path
from ganforge.nets.style import random_features
from ganforge.pipelines.stylize import INIT_NOISE, StyleObjective, fit_size, style_size, to_tensor

CHECKPOINTS = (25, 50, 100, 200, 300, 400)


def painterly(size: int = 384, seed: int = 0) -> Image.Image:
    """A strongly coloured, painterly image: thousands of short thick strokes of a warm and cool palette that swirl
    around a centre, in bands of colour."""
    rng = np.random.default_rng(seed)
    palette = np.array([(24, 40, 110), (40, 90, 170), (250, 200, 40), (240, 120, 20), (20, 120, 120), (230, 230, 200),
                        (180, 30, 40)])
    im = Image.new("RGB", (size, size), (30, 50, 120))
    draw = ImageDraw.Draw(im)
    cx, cy = size * 0.4, size * 0.35
    for _ in range(6000 * size * size // 384**2):
        x, y = rng.uniform(0, size, 2)
        angle = np.arctan2(y - cy, x - cx) + np.pi / 2 + 0.6 * np.sin(x / 40)
        length = rng.uniform(6, 16)
        band = int((np.hypot(x - cx, y - cy) / 28 + rng.integers(0, 2)) % len(palette))
        colour = tuple(int(c) for c in np.clip(palette[band] + rng.normal(0, 18, 3), 0, 255))
        draw.line([(x, y), (x + np.cos(angle) * length, y + np.sin(angle) * length)], fill=colour,
                  width=int(rng.integers(3, 6)))
    return im.filter(ImageFilter.SMOOTH)


def run(objective: StyleObjective, start: torch.Tensor, method: str, steps: int) -> tuple[dict[int, tuple], torch.Tensor]:
    """{evaluations: (seconds, best loss so far)} at CHECKPOINTS, and the final image."""
    x = start.clone().requires_grad_(True)
    record, best, count, t0 = {}, [float("inf")], [0], time.perf_counter()

    def evaluate() -> torch.Tensor:
        loss = objective(x.clamp(-1, 1) if method.endswith("-clamp") else x)
        loss.backward()
        count[0] += 1
        best[0] = min(best[0], loss.item())
        if count[0] in CHECKPOINTS:
            record[count[0]] = (time.perf_counter() - t0, best[0])
        return loss

    if method.startswith("lbfgs"):
        opt = torch.optim.LBFGS([x], lr=1, max_iter=steps, max_eval=steps, history_size=20, tolerance_grad=0,
                                tolerance_change=0, line_search_fn="strong_wolfe")
        opt.step(lambda: (opt.zero_grad(), evaluate())[1])
    else:
        opt = torch.optim.Adam([x], lr=float(method.removeprefix("adam")))
        for _ in range(steps):
            opt.zero_grad()
            evaluate()
            opt.step()
    return record, x.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--methods", default="lbfgs,lbfgs-clamp,adam0.03,adam0.1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    features, style_im = random_features(), painterly()
    print(f"| photo | method | {' | '.join(f'loss@{n} (s)' for n in CHECKPOINTS if n <= args.steps)} | saved image's loss |")
    print("| --- | --- |" + " ---: |" * (sum(n <= args.steps for n in CHECKPOINTS) + 1))
    for package, name in [p for p in HELDOUT_PHOTOS if p[1] in ("rocket.jpg", "flower.jpg")]:
        photo = Image.open(_embedded_path(package, name))
        content = to_tensor(photo, fit_size(photo.size, args.size))
        style = to_tensor(style_im, style_size(style_im.size, max(content.shape[-2:])))
        objective = StyleObjective(features, content, style)
        start = content + INIT_NOISE * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))
        for method in args.methods.split(","):
            record, x = run(objective, start, method, args.steps)
            cells = " | ".join(f"{loss:.4f} ({seconds:.0f})" for seconds, loss in record.values())
            with torch.no_grad():
                saved = objective(x.clamp(-1, 1)).item()
            print(f"| {name} {content.shape[-1]}x{content.shape[-2]} | {method} | {cells} | {saved:.4f} |", flush=True)


if __name__ == "__main__":
    main()
