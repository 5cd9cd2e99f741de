"""Training from data larger than memory: peak memory and speed of the in-memory and streaming paths.

    python benchmarks/data_scale.py --work /tmp/data-scale                         # 64 px: 2k, 20k, 100k images
    python benchmarks/data_scale.py --work /tmp/data-scale --resolution 256 --sizes 2000 20000

For each size N the benchmark writes N generated PNG images (coloured ellipses on a gradient, seeded;
they need not be photos), then:
- `ganforge data prepare` with 1 worker and with 2 (seconds, and the speed-up of 2 over 1);
- `ganforge train` for `--steps` steps of the DCGAN at `--width` from the folder held in memory and
  from the prepared cache, each in a fresh process: peak resident memory (the child's ru_maxrss) and
  training images per second (the mean of metrics.jsonl's `img_per_s` after the first tenth of the
  steps). A folder whose decoded size exceeds `AUTO_CACHE_BYTES` is not held in memory at all
  (`train` caches it itself), so its "in memory" row says so.

Run nothing else on the machine meanwhile.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ganforge.data.training_set import AUTO_CACHE_BYTES


def draw(args: tuple[Path, int, int]) -> None:
    """One seeded image: a colour gradient with three ellipses, saved as PNG."""
    path, seed, side = args
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side)[None, :, None] * rng.random(3) + rng.random(3) * 0.3
    im = Image.fromarray((np.broadcast_to(ramp, (side, side, 3)) * 255).clip(0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, side * 3 // 4, 2)
        w, h = rng.integers(side // 8, side // 2, 2)
        pen.ellipse((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    im.save(path)


def make_images(folder: Path, n: int, side: int) -> None:
    """N images in `folder` (kept between runs)."""
    done = folder / ".complete"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(draw, [(folder / f"{i:06d}.png", i, side) for i in range(n)], chunksize=256))
    done.touch()


def run_child(args: list[str]) -> tuple[float, float]:
    """Run `python -m ganforge ARGS`; its wall seconds and peak resident MB."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a pipe nobody reads fills and stops the child
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ganforge", *args], stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"ganforge {' '.join(args)} failed: {log.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def train_speed(run: Path, steps: int) -> float:
    rates = [json.loads(line)["img_per_s"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"img_per_s"' in line and json.loads(line)["step"] > steps // 10]
    return sum(rates) / len(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--width", type=int, default=32)
    args = ap.parse_args()
    res = args.resolution
    print(f"{res} px, DCGAN width {args.width}, batch 64, {args.steps} steps, {os.cpu_count()} cores\n")
    print("| images | prepare 1 worker (s) | prepare 2 workers (s) | speed-up | path | peak MB | train images/s |")
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for n in args.sizes:
        source = args.work / f"images-{n}-{res}"
        make_images(source, n, res)
        prepared = {}
        for workers in (1, 2):
            cache = args.work / f"cache-{n}-{res}-w{workers}"
            if cache.exists():
                subprocess.run(["rm", "-rf", str(cache)], check=True)
            prepared[workers], _ = run_child(["data", "prepare", str(source), "--resolution", str(res), "--out",
                                              str(cache), "--workers", str(workers)])
        common = ["train", "--resolution", str(res), "--width", str(args.width), "--steps", str(args.steps),
                  "--eval-every", "0", "--sample-every", str(10 * args.steps), "--checkpoint-every", str(10 * args.steps)]
        too_large = n * 3 * res * res > AUTO_CACHE_BYTES
        for path, data in (("in memory" + (" (cached by train: too large)" if too_large else ""), source),
                           ("streaming from the cache", args.work / f"cache-{n}-{res}-w2")):
            run = args.work / f"run-{n}-{res}-{'memory' if data == source else 'stream'}"
            subprocess.run(["rm", "-rf", str(run)], check=True)
            _, peak = run_child([*common, "--data", str(data), "--out", str(run)])
            print(f"| {n} | {prepared[1]:.1f} | {prepared[2]:.1f} | {prepared[1] / prepared[2]:.2f}x | {path} | "
                  f"{peak:.0f} | {train_speed(run, args.steps):.1f} |", flush=True)


if __name__ == "__main__":
    main()
