"""How good are unconditional digit generators, and what does a better one cost in wall time?

    python benchmarks/digits_quality.py score mnist5k runs/mnist --truncation 1 0.7 0.5
    python benchmarks/digits_quality.py sweep --work runs/quickstart-sweep \\
        --candidate "default=" --candidate "depth-0=--depth 0"   # "default=": today's defaults

`score` rates generators (shipped names (a conditional one makes 200 of each class), runs or model folders) on 2000 samples (seeds 0-1999)
with a domain classifier of mnist5k trained on 3000 of its digits (`split(mnist5k, 3000)`; 400
steps, cached), against the 2000 digits it never saw:
- confidence: the classifier's mean top-1 probability (real digits: the same on the 2000 unseen);
- entropy: the normalised entropy of the histogram of predicted classes (1: all ten equally often);
- FID in the classifier's penultimate features, against the 2000 unseen digits; the floor is the
  FID between 2000 of the classifier's training digits and the same 2000 unseen ones (real
  against real at the same sample sizes).

`sweep` runs `ganforge train --data mnist5k --out WORK/NAME ARGS` for each candidate exactly as a
user would (the default evaluations and sample grids included), records the wall time, then
scores the result; a candidate whose run exists is only scored. Run nothing else on the machine
while it times.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from ganforge.data import load_imageset, split
from ganforge.imageio import float_to_uint8
from ganforge.latent import balanced_labels, generate, latents
from ganforge.metrics import class_histogram_stats, fid
from ganforge.metrics.domain import domain_features
from ganforge.pipelines.sampling import load_generator

SAMPLES = 2000


def reference():
    """The classifier, the 2000 digits it never saw and 2000 it trained on."""
    train, unseen = split(load_imageset("mnist5k", 28), 3000)
    return domain_features(train), unseen.images, train.images[:SAMPLES]


def rate(classifier, images: torch.Tensor, unseen_features: torch.Tensor) -> dict[str, float]:
    probs = classifier.predict_proba(images)
    return {"confidence": float(probs.max(dim=1).values.mean()),
            "entropy": class_histogram_stats(probs, 10)["class_entropy"],
            "fid": fid(classifier.features(images), unseen_features)}


def row(name: str, scores: dict, extra: str = "") -> str:
    return f"| {name} | {extra}{scores['confidence']:.4f} | {scores['entropy']:.4f} | {scores['fid']:.2f} |"


def score(models: list[str], truncations: list[float]) -> None:
    classifier, unseen, seen = reference()
    unseen_features = classifier.features(unseen)
    print(f"\n{SAMPLES} samples per generator; classifier {classifier.name}\n")
    print("| generator | truncation | confidence | class entropy | domain FID |")
    print("| --- | ---: | ---: | ---: | ---: |")
    real = rate(classifier, unseen, unseen_features)
    real["fid"] = fid(classifier.features(seen), unseen_features)
    print(row("real digits (unseen by the classifier); FID: real vs real floor", real, "- | "))
    for where in models:
        generator, model = load_generator(where, "cpu")
        for t in truncations:
            z = latents(list(range(SAMPLES)), model["latent_dim"], t)
            images = float_to_uint8(generate(generator, z, balanced_labels(SAMPLES, model)))
            print(row(where, rate(classifier, images, unseen_features), f"{t:g} | "), flush=True)


def sweep(work: Path, candidates: list[str]) -> None:
    classifier, unseen, _ = reference()
    unseen_features = classifier.features(unseen)
    print("| candidate | arguments | wall time (min) | confidence | class entropy | domain FID |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for candidate in candidates:
        name, _, args = candidate.partition("=")
        out = work / name
        timing = out / "wall_time.json"
        if not timing.exists():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", "mnist5k", "--out", str(out),
                            *shlex.split(args)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            timing.write_text(json.dumps({"seconds": time.perf_counter() - start, "args": args}))
        minutes = json.loads(timing.read_text())["seconds"] / 60
        generator, model = load_generator(out, "cpu")
        images = float_to_uint8(generate(generator, latents(list(range(SAMPLES)), model["latent_dim"])))
        print(row(name, rate(classifier, images, unseen_features), f"`{args}` | {minutes:.1f} | "), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score")
    p.add_argument("models", nargs="+")
    p.add_argument("--truncation", type=float, nargs="+", default=[1.0])
    p = sub.add_parser("sweep")
    p.add_argument("--work", type=Path, default=Path("runs/quickstart-sweep"))
    p.add_argument("--candidate", action="append", required=True, help="NAME=ARGS for `ganforge train`")
    args = parser.parse_args()
    if args.command == "score":
        score(args.models, args.truncation)
    else:
        sweep(args.work, args.candidate)


if __name__ == "__main__":
    main()
