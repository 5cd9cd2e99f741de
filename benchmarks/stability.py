"""Which stabilisers help? Each loss/regulariser combination trained for the same CPU time on mnist5k.

Every run trains on the same 4000 images (`--max-images 4000`) and is evaluated against the 1000
held-out ones with the same domain feature network (a classifier trained on the 4000), so the
numbers in one table compare. The real-vs-real floor is the 4000 training images against the
1000 held-out ones. A second table trains on 500 images, with and without DiffAugment, against
the 4500 held-out ones; `--curve` evaluates those runs at several steps, a learning curve each.

    python benchmarks/stability.py                 # 2 minutes per run (5 for small data): about 30 minutes on 2 cores
    python benchmarks/stability.py --minutes 0.5   # a quick look
    python benchmarks/stability.py --skip-main --curve 2000,4000,6000 \
        --only "500 images, bce + R1 + EMA;500 images, bce + R1 + EMA + DiffAugment color"
"""

import argparse
import logging
import tempfile
from pathlib import Path

from ganforge.config import TrainConfig
from ganforge.pipelines.evaluation import evaluate
from ganforge.training.checkpoint import checkpoint_meta
from ganforge.training.run import train

PLAIN = {"loss": "bce", "r1_gamma": 0.0, "ema_decay": 0.0, "width": 64, "depth": 0, "augment": "none"}  # every option the defaults might set, spelled out
COMBINATIONS = {
    "bce (the brief's plain DCGAN)": {},
    "bce + EMA": {"ema_decay": 0.999},
    "bce + R1 + EMA": {"r1_gamma": 0.2, "ema_decay": 0.999},
    "hinge + SN": {"loss": "hinge", "spectral_norm": True},
    "hinge + SN + EMA": {"loss": "hinge", "spectral_norm": True, "ema_decay": 0.999},
    "lsgan + EMA": {"loss": "lsgan", "ema_decay": 0.999},
    "wgan-gp (n_critic 5) + EMA": {"loss": "wgan-gp", "n_critic": 5, "lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "ema_decay": 0.999},
    "bce + EMA + TTUR (lr_d 4e-4, lr_g 1e-4)": {"lr_d": 4e-4, "lr_g": 1e-4, "ema_decay": 0.999},
}
SMALL_DATA = {
    "500 images, bce": {},
    "500 images, bce + DiffAugment": {"augment": "color,translation,cutout"},
    "500 images, bce + R1 + EMA": {"r1_gamma": 0.2, "ema_decay": 0.999},
    "500 images, bce + R1 + EMA + DiffAugment": {"r1_gamma": 0.2, "ema_decay": 0.999, "augment": "color,translation,cutout"},
    "500 images, bce + R1 + EMA + DiffAugment translation": {"r1_gamma": 0.2, "ema_decay": 0.999, "augment": "translation"},
    "500 images, bce + R1 + EMA + adaptive DiffAugment": {"r1_gamma": 0.2, "ema_decay": 0.999, "augment": "color,translation,cutout",
                                                          "augment_target": 0.6},
    "500 images, bce + R1 + EMA + DiffAugment p 0.5": {"r1_gamma": 0.2, "ema_decay": 0.999, "augment": "color,translation,cutout",
                                                       "augment_p": 0.5},
    "500 images, bce + R1 + EMA + DiffAugment p 0.3": {"r1_gamma": 0.2, "ema_decay": 0.999, "augment": "color,translation,cutout",
                                                       "augment_p": 0.3},
    "500 images, bce + R1 + EMA + DiffAugment color": {"r1_gamma": 0.2, "ema_decay": 0.999, "augment": "color"},
}
COLUMNS = ("fid", "kid", "precision", "recall", "density", "coverage")


def run_one(name: str, options: dict, root: Path, minutes: float | None, max_images: int, seed: int,
            steps: int | None = None) -> dict:
    """Train for `minutes` of CPU time or, with `steps`, for exactly that many steps; then evaluate."""
    return run_curve(name, options, root, minutes, max_images, seed, [steps] if steps else [None])[0]


def run_curve(name: str, options: dict, root: Path, minutes: float | None, max_images: int, seed: int,
              checkpoints: list[int | None]) -> list[dict]:
    """One run, evaluated each time it reaches a step of `checkpoints` (resuming exactly in between),
    so a row per point of its learning curve; a `None` point means "for `minutes`". A run already
    in `root` (from `--keep`) is continued, so a curve can be extended later."""
    out = root / name.replace(" ", "_").replace("/", "-")
    rows = []
    started = (out / "checkpoints" / "last.safetensors").exists()
    for i, steps in enumerate(checkpoints):
        cfg = TrainConfig(data="mnist5k", out=str(out), max_images=max_images, steps=steps or 10**6,
                          max_minutes=None if steps else minutes, eval_every=0, sample_every=10**6,
                          checkpoint_every=10**6, log_every=50, seed=seed, **{**PLAIN, **options})
        train(cfg, resume=started or i > 0, given={"steps": steps} if steps else {})
        report = evaluate(out, metrics=["fid", "kid", "pr", "dc"], n=1000, seed=seed)
        done = checkpoint_meta(out / "checkpoints" / "last.safetensors")["step"]
        rows.append({"name": name, "steps": done, **report})
        if len(checkpoints) > 1:
            print_table(f"{name}: so far", rows)  # long curves show their progress
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}\nextractor: {rows[0]['extractor']}; reference: {rows[0]['reference']}; 1000 generated images")
    print(f"| {'configuration':42} | {'steps':>6} | " + " | ".join(f"{c:>9}" for c in COLUMNS) + " |")
    print(f"|{'-' * 44}|{'-' * 8}|" + "|".join("-" * 11 for _ in COLUMNS) + "|")
    for r in rows:
        print(f"| {r['name']:42} | {r['steps']:>6} | " + " | ".join(f"{r[c]:9.4f}" for c in COLUMNS) + " |")
    floor = rows[0].get("fid_floor_train_vs_heldout")
    if floor is not None:
        print(f"| {'real vs real floor (train vs held-out)':42} | {'':>6} | {floor:9.4f} | " + " | ".join(" " * 9 for _ in COLUMNS[1:]) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="training budget of each run")
    ap.add_argument("--small-minutes", type=float, default=5.0, help="training budget of each small-data run")
    ap.add_argument("--small-steps", type=int, help="train each small-data run for this many steps instead of minutes")
    ap.add_argument("--curve", help="comma-separated steps: evaluate each small-data run at each (a learning curve)")
    ap.add_argument("--keep", help="keep the runs in this folder (default: a temporary one); runs already there are continued")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="';'-separated configuration names to run (default: all)")
    ap.add_argument("--skip-small-data", action="store_true")
    ap.add_argument("--skip-main", action="store_true", help="only the small-data table")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only.split(";")) if args.only else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        if not args.skip_main:
            rows = [run_one(n, o, root, args.minutes, 4000, args.seed) for n, o in COMBINATIONS.items() if not only or n in only]
            print_table(f"mnist5k, {args.minutes:g} CPU minutes per run, trained on 4000 images, seed {args.seed}", rows)
        if not args.skip_small_data:
            points = [int(s) for s in args.curve.split(",")] if args.curve else [args.small_steps]
            small = [row for n, o in SMALL_DATA.items() if not only or n in only
                     for row in run_curve(n, o, root, args.small_minutes, 500, args.seed, points)]
            budget = (f"each run evaluated at steps {args.curve}" if args.curve else
                      f"{args.small_steps} steps per run" if args.small_steps else f"{args.small_minutes:g} CPU minutes per run")
            print_table(f"small data: 500 images of mnist5k, {budget}, seed {args.seed}", small)


if __name__ == "__main__":
    main()
