"""Training speed and peak memory: ganforge's step beside the pytorch/examples DCGAN step.

Each configuration runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own.
The reference is the loop of pytorch/examples dcgan/main.py: nz 100, ngf = ndf = 64, a sigmoid D
with BCELoss, Adam(2e-4, betas 0.5/0.999), G's output reused for the G step. ganforge runs the
same architecture (`--arch dcgan`, width 64, latent 100) at the same batch.

    python benchmarks/train_speed.py                 # 64x64, batch 64, on this machine's device
    python benchmarks/train_speed.py --steps 10 --warmup 2
    python benchmarks/train_speed.py --compile        # adds torch.compile rows
    python benchmarks/train_speed.py --bf16           # adds bf16 rows where auto chose fp32

Each row also gives the achieved GFLOP/s: the floating-point operations of one step, counted by
`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, forward and
backward; a multiply-add is 2; for the default, a step without its R1 penalty, which comes every
16th step), times steps per second, so the default's figure is a slight underestimate; and the last lines give the machine's
convolution peak: the best GFLOP/s of large 3x3 convolutions, forward and backward, in the same
setting, in fp32 and, where auto chose bf16 or --bf16 is given, in bf16. The distance between a row and the peak of
its precision is what faster kernels could still win.

`--precision auto` is what each ganforge row runs unless it says otherwise; the rows' labels name what it chose on
this machine, and the other precision's rows follow (fp32 always, bf16 with --bf16).
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ganforge.device import autocast, pick_dtype

R1_EVERY = 16  # ganforge's default lazy R1 interval (--r1-every)


# --------------------------------------------------------------------------- the reference step
class RefGenerator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class RefDiscriminator(nn.Module):
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def reference_step_fn(batch: int, resolution: int, device: torch.device):
    netG, netD = RefGenerator().to(device), RefDiscriminator().to(device)
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1

    def step(_i):
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        label = torch.full((batch,), 1.0, device=device)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        noise = torch.randn(batch, 100, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        optD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        optG.step()

    return step


# --------------------------------------------------------------------------- ganforge's step
def ganforge_step_fn(arch: str, precision: str, batch: int, resolution: int, device: torch.device, options: dict):
    from ganforge.config import TrainConfig
    from ganforge.tasks.generation import GenerationTask
    from ganforge.training.distributed import DistInfo
    from ganforge.training.trainer import Trainer

    channels = 3
    cfg = TrainConfig(arch=arch, resolution=resolution, channels=channels, batch_size=batch, precision=precision, grid_size=4,
                      steps=1, **{"width": 64, **options})
    task = GenerationTask(cfg, channels, resolution)
    images = torch.randint(0, 256, (batch * 4, channels, resolution, resolution), dtype=torch.uint8)
    trainer = Trainer(cfg, task, images, "/nonexistent", device, pick_dtype(precision, device), DistInfo())
    return trainer.train_step


def measure(spec: dict) -> dict:
    device = torch.device(spec["device"])
    if spec["impl"] == "reference":
        step = reference_step_fn(spec["batch"], spec["resolution"], device)
    else:
        step = ganforge_step_fn(spec["arch"], spec["precision"], spec["batch"], spec["resolution"], device, spec["options"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    counted = spec["warmup"] + (spec["warmup"] % R1_EVERY == 0)  # a step without the lazy R1 penalty
    t0 = time.perf_counter()
    for i in range(counted):  # for --compile, this is where the compilation is paid, once per run
        step(i)
    sync()
    warmup_s = time.perf_counter() - t0
    # One more warm-up step, counted; eagerly, since the counter sees only the operators that run one by one.
    with FlopCounterMode(display=False) as counter, torch.compiler.set_stance("force_eager"):
        step(counted)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(spec["steps"]):
        step(counted + 1 + i)
    sync()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"img_per_s": spec["batch"] * spec["steps"] / seconds, "peak_mb": peak / 2**20, "warmup_s": warmup_s,
            "gflop_per_s": counter.get_total_flops() * spec["steps"] / seconds / 1e9}


def convolution_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """The best GFLOP/s of 3x3 convolutions (forward and backward) at widths 128-512, channels_last, under `dtype`
    autocast (fp32: none)."""
    best = 0.0
    for width, side in ((128, 32), (256, 16), (512, 8)):
        conv = nn.Conv2d(width, width, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)
        x = torch.randn(64, width, side, side, device=device).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        with FlopCounterMode(display=False) as counter, autocast(device, dtype):
            conv(x).float().sum().backward()
        for _ in range(repeats):
            t0 = time.perf_counter()
            with autocast(device, dtype):
                conv(x).float().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = max(best, counter.get_total_flops() / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        spec = json.loads(sys.argv[2])
        device = torch.device(spec["device"])
        result = ({"gflop_per_s": convolution_peak(device, pick_dtype(spec["precision"], device))}
                  if spec["impl"] == "peak" else measure(spec))
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true", help="add bf16-autocast rows where auto chose fp32 (slow on CPUs without "
                    "AVX512-BF16)")
    ap.add_argument("--compile", action="store_true", help="add --compile rows (torch.compile; its compilation is in the "
                    "warm-up column)")
    args = ap.parse_args()
    common = {"batch": args.batch, "steps": args.steps, "warmup": args.warmup, "device": args.device}
    plain = {"r1_gamma": 0.0, "ema_decay": 0.0, "augment": "none"}  # the reference's algorithm: no R1, EMA or DiffAugment
    auto = str(pick_dtype("auto", torch.device(args.device))).removeprefix("torch.")
    dcgan = {"impl": "ganforge", "resolution": 64, "arch": "dcgan"}
    rows = [
        ("pytorch/examples DCGAN (reference)", {"impl": "reference", "resolution": 64, "arch": "dcgan", "precision": "fp32"}),
        (f"ganforge plain DCGAN (--r1-gamma 0 --ema-decay 0 --augment none), auto: {auto}", {**dcgan, "precision": "auto", "options": plain}),
        (f"ganforge default (+ lazy R1 + EMA + colour DiffAugment), auto: {auto}", {**dcgan, "precision": "auto", "options": {}}),
        (f"ganforge --arch seed, plain (56x56), auto: {auto}", {"impl": "ganforge", "resolution": 56, "arch": "seed", "precision": "auto", "options": plain}),
    ]
    # The precisions auto did not choose, where the CPU could run them: fp32 always, bf16 when asked for.
    for precision in ["fp32"] * (auto != "float32") + ["bf16"] * (args.bf16 and auto != "bfloat16"):
        rows.append((f"ganforge plain DCGAN --precision {precision}", {**dcgan, "precision": precision, "options": plain}))
        rows.append((f"ganforge default --precision {precision}", {**dcgan, "precision": precision, "options": {}}))
    if args.compile:
        rows.append(("ganforge plain DCGAN --compile", {**dcgan, "precision": "auto", "options": {**plain, "compile": True}}))
        rows.append(("ganforge default --compile", {**dcgan, "precision": "auto", "options": {"compile": True}}))
    print(f"device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(f"| {'configuration':50} | {'images/s':>9} | {'vs reference':>12} | {'peak MB':>8} | {'GFLOP/s':>8} | {'warm-up s':>9} |")
    print(f"|{'-' * 52}|{'-' * 11}|{'-' * 14}|{'-' * 10}|{'-' * 10}|{'-' * 11}|")
    reference = None
    for name, spec in rows:
        r = child({**common, **spec})
        if "error" in r:
            print(f"| {name:50} | failed: {r['error']}")
            continue
        reference = reference or r["img_per_s"]
        print(f"| {name:50} | {r['img_per_s']:9.1f} | {r['img_per_s'] / reference:11.2f}x | {r['peak_mb']:8.0f} | "
              f"{r['gflop_per_s']:8.1f} | {r['warmup_s']:9.1f} |", flush=True)
    print()
    for precision in ["fp32"] + ["bf16"] * (args.bf16 or auto == "bfloat16"):
        peak = child({**common, "impl": "peak", "precision": precision})
        print(f"convolution peak of this machine (3x3, forward + backward, {precision}, channels_last): "
              f"{peak.get('gflop_per_s', float('nan')):.1f} GFLOP/s")


def child(spec: dict) -> dict:
    """Run one measurement in a fresh process (its own peak memory); its result, or {"error": its last line}."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
