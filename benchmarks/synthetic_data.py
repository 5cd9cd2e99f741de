"""Does generated data help a classifier? Classification Accuracy Score and low-data augmentation on mnist5k.

Every row trains the same small CNN for the same number of steps and tests it on the same 1000
held-out real images of mnist5k: the ones `split(data, 4000)` leaves out, which the shipped
`mnist5k-conditional` generator never saw (its recipe trains with --max-images 4000).

- real-trained: the 4000 real training images.
- CAS (Ravuri & Vinyals 2019): only 10,000 generated images (1000 per class).
- 10% real: the 400 images `split(data, 400)` picks (a subset of the 4000).
- 10% real + generated: half of each batch from those 400, half from the 10,000 generated ones.
  The shipped generator was trained on all 4000 labelled images, so this row borrows labels the
  low-data classifier does not have; `--low-data-model RUN` adds the honest row, a generator
  trained on the same 400 images only.
- 10% real + classic augmentation: random shifts (up to 2 px) and rotations (up to 10 degrees).

Each figure is the mean and standard deviation over seeds (classifier initialisation, batch
order and, for generated data, the generator's seeds).

    python benchmarks/synthetic_data.py                                   # shipped model, 3 seeds
    ganforge train --config configs/mnist5k-conditional.yaml --max-images 400 --steps 3000 --out runs/cmnist400
    python benchmarks/synthetic_data.py --low-data-model runs/cmnist400   # plus a GAN trained on the 400 only
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.data import load_imageset, split
from ganforge.imageio import float_to_uint8, uint8_to_float
from ganforge.latent import generate, latents
from ganforge.pipelines.sampling import load_generator
from ganforge.saved_model import resolve_model


class SmallCNN(nn.Module):
    """Two convolutions and two dense layers: about 0.1 M parameters, fast on one CPU thread."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def shift_rotate(x: torch.Tensor, gen: torch.Generator, max_shift_px: float = 2.0, max_degrees: float = 10.0) -> torch.Tensor:
    """Classic augmentation: a random rotation and shift per image (zeros, i.e. black, outside)."""
    n, _, h, _ = x.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift_px / h)  # affine_grid spans [-1, 1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample x + 1 (background 0) and shift back, so the border fills with the black background (-1).
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train_classifier(sources: list[tuple[torch.Tensor, torch.Tensor]], seed: int, steps: int, batch_size: int = 64,
                     classic: bool = False) -> SmallCNN:
    """Train on batches drawn equally from each (images in [-1, 1], labels) source."""
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    per_source = batch_size // len(sources)
    model.train()
    for _ in range(steps):
        xs, ys = [], []
        for images, labels in sources:
            idx = torch.randint(len(images), (per_source,), generator=gen)
            xs.append(images[idx])
            ys.append(labels[idx])
        x, y = torch.cat(xs), torch.cat(ys)
        if classic:
            x = shift_rotate(x, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: SmallCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(dim=1) == labels).float().mean())


def generated_set(where: str, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` images of every class, with `ganforge augment`'s seed rule from base seed 10^8 * (seed + 1)."""
    generator, model = load_generator(where, "cpu")
    base = 10**8 * (seed + 1)  # apart from the seeds `augment` and `sample` use by default
    images, labels = [], []
    for c in range(model["num_classes"]):
        seeds = [base + 1_000_000 * c + j for j in range(per_class)]
        fake = generate(generator, latents(seeds, model["latent_dim"]), torch.full((per_class,), c))
        images.append(uint8_to_float(float_to_uint8(fake)))  # rounded to 8 bits, as `augment`'s PNGs are
        labels.append(torch.full((per_class,), c))
    return torch.cat(images), torch.cat(labels)


def check_model(where: str, max_images: int) -> None:
    model = json.loads((resolve_model(where) / "config.json").read_text())
    if model.get("data") != "mnist5k" or model.get("max_images") != max_images:
        print(f"warning: {where} was trained on {model.get('data')} with max_images {model.get('max_images')}, "
              f"not mnist5k with {max_images}: the test images may not be unseen")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist5k-conditional", help="conditional generator trained on the 4000 (run, folder or shipped name)")
    p.add_argument("--low-data-model", help="conditional generator trained on the 400 only (--max-images 400)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=1500, help="classifier training steps of 64 images, the same for every row")
    p.add_argument("--generated", type=int, default=10_000, help="generated images (split equally over the classes)")
    args = p.parse_args()
    torch.set_num_threads(1)

    data = load_imageset("mnist5k", 28)
    train, test = split(data, 4000)
    small, _ = split(data, 400)  # the same seeded shuffle: the first 400 of the 4000
    check_model(args.model, 4000)
    if args.low_data_model:
        check_model(args.low_data_model, 400)
    as_float = lambda d: (uint8_to_float(d.images), d.labels)  # noqa: E731
    real, few, test_x, test_y = as_float(train), as_float(small), uint8_to_float(test.images), test.labels
    per_class = args.generated // 10
    print(f"train {len(train)} real, 10%: {len(small)} real, test {len(test)} held-out real; "
          f"{args.steps} classifier steps of 64; {args.generated} generated images; seeds 0-{args.seeds - 1}")

    rows: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        fake = generated_set(args.model, per_class, seed)
        runs = {
            "real-trained (4000 real)": ([real], False),
            "CAS: trained on 10,000 generated only": ([fake], False),
            "10% real (400)": ([few], False),
            "10% real + 10,000 generated (generator saw all 4000 labels)": ([few, fake], False),
            "10% real + classic augmentation (shifts, rotations)": ([few], True),
        }
        if args.low_data_model:
            runs["10% real + 10,000 generated (generator trained on the 400 only)"] = ([few, generated_set(args.low_data_model, per_class, seed)], False)
        for name, (sources, classic) in runs.items():
            acc = accuracy(train_classifier(sources, seed, args.steps, classic=classic), test_x, test_y)
            rows.setdefault(name, []).append(acc)
            print(f"  seed {seed}  {name}: {100 * acc:.2f}%  ({time.perf_counter() - t0:.0f} s)", flush=True)

    real_mean = torch.tensor(rows["real-trained (4000 real)"]).mean()
    print(f"\n| training data (test: {len(test)} held-out real images) | accuracy, mean ± std over {args.seeds} seeds | vs real-trained |")
    print("| --- | ---: | ---: |")
    for name, accs in rows.items():
        a = torch.tensor(accs) * 100
        std = float(a.std()) if len(a) > 1 else 0.0
        print(f"| {name} | {float(a.mean()):.2f} ± {std:.2f} % | {float(a.mean()) / (100 * float(real_mean)):.3f} |")
    cas = torch.tensor(rows["CAS: trained on 10,000 generated only"]).mean() / real_mean
    print(f"\nCAS / real-trained accuracy: {float(cas):.3f} (target: at least 0.90); {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
