"""Kill drill: SIGKILL a training run at seeded random moments, resume it, and compare with a run never killed.

    python benchmarks/kill_drill.py                     # 20 kills of a 240-step 8x8 digits run
    python benchmarks/kill_drill.py --kills 4 --steps 30 --seed 1

Every trial starts a fresh run (`python -m ganforge train`, a checkpoint every 3 steps so that
writes are frequent), kills it with SIGKILL, resumes it with `--resume`, and checks that the
resumed run succeeds and that every tensor of checkpoints/last.safetensors and model/*.safetensors,
and every logged loss, equals the uninterrupted run's bit for bit (CPU).

Half the kills come at a random time between start and end (start-up included). The other half
come inside a write, every kind of write at least once when there are enough kills (the kind and
which occurrence of it drawn at random): such runs start through this script's `--child` mode, which wraps one
step of ganforge's writers (ganforge.atomic and the checkpoint/metrics writers) and sends itself
SIGKILL at the n-th time that step is reached, so production code carries no hook.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
# The moments inside writes: name -> (description, how many times a run reaches it).
WRITE_MOMENTS = {
    "checkpoint-torn": ("checkpoint half-written (temporary file)", lambda a: a.steps // a.every),
    "checkpoint-unrenamed": ("checkpoint written and synced, not renamed", lambda a: a.steps // a.every),
    "checkpoint-renamed": ("checkpoint renamed, folder not synced", lambda a: a.steps // a.every),
    "model-unswapped": ("model folder built, not swapped in", lambda a: a.steps // a.every - 1),
    "model-swapped": ("model folder swapped in, old one not deleted", lambda a: a.steps // a.every - 1),
    "metrics-torn": ("metrics.jsonl line half-written", lambda a: a.steps),
    "plot-unrenamed": ("losses.png written, not renamed", lambda a: a.steps // a.sample_every),
}


# --------------------------------------------------------------------------- the child: a run that kills itself
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def child(moment: str, nth: int, argv: list[str]) -> int:
    """Run `ganforge <argv>` with one writer step wrapped to SIGKILL this process the `nth` time it is reached."""
    import ganforge.atomic as atomic
    import ganforge.training.checkpoint as checkpoint
    import ganforge.training.trainer as trainer
    from ganforge.cli import main

    seen = [0]

    def reached() -> bool:
        seen[0] += 1
        return seen[0] == nth

    def wrap(module, name, when, before=False):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            hit = when(*args) and reached()
            if hit and before:
                die()
            result = real(*args, **kwargs)
            if hit:
                die()
            return result

        setattr(module, name, wrapper)

    if moment == "checkpoint-torn":
        def torn_save(tensors, filename, metadata=None):
            real_save(tensors, filename, metadata=metadata)
            if reached():
                os.truncate(filename, os.path.getsize(filename) // 2)
                die()
        real_save = checkpoint.save_file
        checkpoint.save_file = torn_save
    elif moment == "checkpoint-unrenamed":
        wrap(atomic, "fsync", lambda path: Path(path).name.startswith(".last."))
    elif moment == "checkpoint-renamed":
        wrap(atomic.os, "replace", lambda src, dst: Path(dst).name == "last.safetensors")
    elif moment in ("model-unswapped", "model-swapped"):
        wrap(atomic, "_exchange", lambda a, b: Path(b).name == "model", before=moment == "model-unswapped")
    elif moment == "metrics-torn":
        def torn_log(self, record):
            if reached():
                line = json.dumps(record) + "\n"
                with open(self.run_dir / "metrics.jsonl", "a") as f:
                    f.write(line[: len(line) // 2])
                die()
            real_log(self, record)
        real_log = trainer.Trainer._log
        trainer.Trainer._log = torn_log
    elif moment == "plot-unrenamed":
        wrap(atomic, "fsync", lambda path: Path(path).name.startswith(".losses."))
    else:
        raise SystemExit(f"unknown moment {moment}")
    return main(argv)


# --------------------------------------------------------------------------- the drill
def train_args(args, out: Path) -> list[str]:
    return ["train", "--data", "digits", "--resolution", "8", "--width", "8", "--batch-size", "16",
            "--steps", str(args.steps), "--checkpoint-every", str(args.every), "--sample-every", str(args.sample_every),
            "--log-every", "1", "--out", str(out)]


def run(cmd: list[str], kill_after: float | None = None) -> tuple[int, str, float]:
    """Run `cmd`; with `kill_after`, SIGKILL it after that many seconds. Returns (exit code, stderr, seconds)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        err.seek(0)
        return proc.returncode, err.read(), time.perf_counter() - t0


def left_behind(out: Path) -> str:
    """What the killed run left that a resume must cope with."""
    if not (out / "config.yaml").exists():
        return "no config.yaml yet"
    found = [p.name for folder in (out, out / "checkpoints", out / "samples") if folder.is_dir()
             for p in folder.iterdir() if p.name.startswith(".")]
    metrics = out / "metrics.jsonl"
    if metrics.exists() and metrics.read_bytes() and not metrics.read_bytes().endswith(b"\n"):
        found.append("torn metrics line")
    if not (out / "checkpoints" / "last.safetensors").exists():
        found.append("no checkpoint yet")
    return ", ".join(found) or "nothing torn"


def tensors(out: Path) -> dict[str, torch.Tensor]:
    files = [out / "checkpoints" / "last.safetensors", *sorted((out / "model").glob("*.safetensors"))]
    return {f"{f.parent.name}/{f.name}:{k}": v for f in files for k, v in load_file(str(f)).items()}


def losses(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in records if "event" not in r]


def same(a: Path, b: Path) -> str:
    try:
        ta, tb = tensors(a), tensors(b)
    except Exception as e:  # noqa: BLE001 - reported in the table, not raised
        return f"unreadable: {e}"
    if ta.keys() != tb.keys():
        return "different tensors"
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    if differ:
        return f"{len(differ)} tensors differ ({differ[0]})"
    if losses(a) != losses(b):
        return "logged losses differ"
    return "yes"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--every", type=int, default=3, help="--checkpoint-every of the drilled run")
    ap.add_argument("--sample-every", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--keep", help="folder for the runs (default: a temporary one, deleted after)")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # tiny networks run fastest on one thread (and the runs inherit it)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        straight = root / "straight"
        code, err, seconds = run([sys.executable, "-m", "ganforge", *train_args(args, straight)])
        if code != 0:
            raise SystemExit(f"the uninterrupted run failed:\n{err}")
        print(f"uninterrupted run: {args.steps} steps in {seconds:.1f} s; {args.kills} kills, seed {args.seed}")
        rng = random.Random(args.seed)
        writes = list(WRITE_MOMENTS) * (args.kills // 2 // len(WRITE_MOMENTS))
        writes += rng.sample(list(WRITE_MOMENTS), args.kills // 2 - len(writes))
        kinds = ["time"] * (args.kills - len(writes)) + writes
        rng.shuffle(kinds)
        print(f"| {'#':>2} | {'moment of the kill':52} | {'left behind':44} | resumed | bit-identical |")
        print(f"|{'-' * 4}|{'-' * 54}|{'-' * 46}|{'-' * 9}|{'-' * 15}|")
        good = missed = 0
        for i, kind in enumerate(kinds, 1):
            out = root / f"kill{i:02d}"
            if kind == "time":
                duration = seconds
                for attempt in range(3):  # run times vary with the machine's load: one that finished first is drawn again
                    if attempt:
                        shutil.rmtree(out)
                    at = rng.uniform(0.05, 0.9) * duration
                    code, err, duration = run([sys.executable, "-m", "ganforge", *train_args(args, out)], kill_after=at)
                    if code == -signal.SIGKILL:
                        break
                moment = f"at {at:.2f} s (a whole run: {seconds:.1f} s)"
            else:
                nth = rng.randint(1, WRITE_MOMENTS[kind][1](args))
                moment = f"{WRITE_MOMENTS[kind][0]}, #{nth}"
                code, err, _ = run([sys.executable, __file__, "--child", kind, str(nth), *train_args(args, out)])
            killed = code == -signal.SIGKILL
            if not killed:
                moment, missed = moment + f" (not killed: exit {code})", missed + 1  # reported, and not counted as good
            state = left_behind(out)
            code, err, _ = run([sys.executable, "-m", "ganforge", *train_args(args, out), "--resume"])
            resumed = "yes" if code == 0 and "Traceback" not in err else f"no ({err.strip().splitlines()[-1] if err.strip() else code})"
            identical = same(straight, out) if code == 0 else "-"
            good += resumed == "yes" and identical == "yes" and killed
            print(f"| {i:2} | {moment:52} | {state[:44]:44} | {resumed:7} | {identical:13} |", flush=True)
        print(f"{good}/{args.kills} runs killed, resumed and finished bit-identical to the uninterrupted run"
              + (f" ({missed} not killed: they finished first)" if missed else ""))
        if good != args.kills:
            raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        raise SystemExit(child(sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
    main()
