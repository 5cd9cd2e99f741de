"""What differential privacy costs and what it buys, on mnist5k with a fixed held-out split.

    OMP_NUM_THREADS=1 python benchmarks/privacy.py --work runs/privacy-bench --grids runs/privacy-bench/grids

Runs of the same recipe, four on the same 500 training digits (`--max-images 500`: a fixed seeded
choice; the other 4500 are the held-out non-members), each `ganforge train` as a user types it,
3000 steps of (expected) batch 64, about 380 passes over the images, so that a D can overfit them:
- no DP: the defaults (batch norm in D, lazy R1), with the in-training checks off;
- epsilon inf: DP-SGD's Poisson sampling and per-image clipping (C = 1) without noise (no guarantee):
  what the private mode's D (group norm, no R1, clipped updates) costs without any noise;
- epsilon 8 and epsilon 1 at delta 1e-5: the noise Opacus's accountant sets for the planned steps;
- epsilon 8 on 4000 training digits (1000 held out): a sampling rate 8 times smaller, so far less noise
  for the same budget.

Each is scored on 2000 samples (seeds 0-1999) by benchmarks/digits_quality.py's domain classifier
(domain FID against the 2000 digits it never saw, and its mean top-1 confidence; the first row is
real digits, the floor), and by `ganforge evaluate --metrics memorization,membership`: the
memorisation z-score (Meehan et al.'s data-copying test; strongly negative: copying) and LOGAN's
white-box membership attack (the ROC AUC of the run's D scoring its training digits against the
held-out ones; 0.5: no leak, give or take the standard error an AUC has when there is none), and
LOGAN's own top-half accuracy on equally many of each. A run that exists in --work is only scored.
A 10 x 10 grid of each run's first 100 samples is written to GRIDS/FOLDER.png.
"""

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

from digits_quality import SAMPLES, rate, reference

from ganforge.imageio import float_to_uint8, make_grid, save_image, uint8_to_float
from ganforge.latent import balanced_labels, generate, latents
from ganforge.metrics import fid
from ganforge.pipelines.evaluation import evaluate
from ganforge.pipelines.sampling import load_generator

COMMON = "--data mnist5k --max-images 500 --steps 3000 --eval-every 0 --seed 0 --depth 0"  # a later --max-images wins;
# depth 0: the networks the README's privacy tables were measured with, before depth (1, then 2) became the default at 28 px
CONFIGS = {  # row: (run folder, options)
    "no DP": ("no-DP", ""),
    "epsilon inf (clipping only)": ("epsilon-inf", "--dp-epsilon inf"),
    "epsilon 8": ("epsilon-8", "--dp-epsilon 8 --dp-delta 1e-5"),
    "epsilon 1": ("epsilon-1", "--dp-epsilon 1 --dp-delta 1e-5"),
    "epsilon 8, 4000 training digits": ("epsilon-8-4000", "--dp-epsilon 8 --dp-delta 1e-5 --max-images 4000"),
}
GRID = 100  # samples in each run's grid


def train(out: Path, args: str) -> None:
    """`ganforge train` as a user runs it, unless the run exists; its log is WORK/NAME.log."""
    if (out / "model" / "config.json").exists():
        return
    command = [sys.executable, "-m", "ganforge", "train", *shlex.split(COMMON), *shlex.split(args), "--out", str(out)]
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)


def null_auc_standard_error(members: int, nonmembers: int) -> float:
    """The standard error of the AUC of two samples of one distribution (Hanley and McNeil 1982, AUC = 0.5)."""
    return math.sqrt((members + nonmembers + 1) / (12 * members * nonmembers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/privacy-bench"))
    parser.add_argument("--grids", type=Path, default=None, help="where the sample grids go (default: WORK/grids)")
    args = parser.parse_args()
    work, grids = args.work, args.grids or args.work / "grids"
    work.mkdir(parents=True, exist_ok=True)
    classifier, unseen, seen = reference()
    unseen_features = classifier.features(unseen)
    real = rate(classifier, unseen, unseen_features)
    real["fid"] = fid(classifier.features(seen), unseen_features)
    print(f"common options: {COMMON}; {SAMPLES} samples per run\n")
    print("| run | epsilon spent (delta 1e-5) | noise multiplier | domain FID | confidence | memorisation z | "
          "LOGAN AUC | AUC with no leak | LOGAN top-half acc. |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| real digits (floor) | - | - | {real['fid']:.2f} | {real['confidence']:.4f} | - | - | - | - |", flush=True)
    for name, (folder, options) in CONFIGS.items():
        out = work / folder
        train(out, options)
        generator, model = load_generator(out, "cpu")
        images = float_to_uint8(generate(generator, latents(list(range(SAMPLES)), model["latent_dim"]),
                                         balanced_labels(SAMPLES, model)))
        save_image(make_grid(uint8_to_float(images[:GRID]), nrow=10), grids / f"{out.name}.png")
        scores = rate(classifier, images, unseen_features)
        report = evaluate(out, metrics=["memorization", "membership"], n=SAMPLES)
        privacy, member = model.get("privacy"), report["membership"]
        spent = "-" if privacy is None else f"{privacy['epsilon']:.3f}"
        noise = "-" if privacy is None else f"{privacy['noise_multiplier']:.3f}"
        no_leak = f"0.5 +- {null_auc_standard_error(member['members'], member['nonmembers']):.3f}"
        print(f"| {name} | {spent} | {noise} | {scores['fid']:.2f} | {scores['confidence']:.4f} | "
              f"{report['memorization']['copying_z']:.2f} | {member['auc']:.4f} | {no_leak} | "
              f"{member['logan_accuracy']:.4f} |", flush=True)
        (out / "benchmark.json").write_text(json.dumps({"scores": scores, "evaluation": report}, indent=2))
    print("\nAUC with no leak: 0.5 +- one standard error of the AUC of two samples of one distribution, at the "
          "run's numbers of members and non-members")


if __name__ == "__main__":
    main()
