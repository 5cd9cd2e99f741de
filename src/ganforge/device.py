"""Choosing the device and the numeric precision of a run."""

import contextlib
import functools
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.atomic import atomic_path
from ganforge.data.embedded import cache_dir
from ganforge.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: runs that start together may each measure, and the last to write is kept
    fcntl = None

log = logging.getLogger(__name__)


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """CUDA, then MPS, then CPU for "auto"; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: {name!r} is not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {name} asked for, but this machine has no usable CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device: {name} asked for, but MPS is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device: {name} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


# Where the CPU's flags settle it, they do: with AMX tiles bf16 autocast was about 1.8x fp32, and without AVX512-BF16
# every bf16 operation is emulated (about 20x slower). AVX512-BF16 without AMX goes either way: on a Xeon the DCGAN
# step was 1.35x slower in bf16 (a 4x4 convolution 1.55x), on an AMD EPYC 1.6x faster. There a probe decides.
AMX_BF16_FLAG = "amx_bf16"
AVX512_BF16_FLAG = "avx512_bf16"
# The probe's speedup above which auto picks bf16: a margin, so that a noisy probe on a CPU where the two are about
# as fast keeps fp32, the precision whose results every other machine can reproduce.
BF16_MIN_SPEEDUP = 1.2
# The autocast dtype of each --precision but auto.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpuinfo_values(cpuinfo: str, field: str) -> list[str]:
    """The values of every line named `field` in /proc/cpuinfo's text (one per processor)."""
    return [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.split(":", 1)[0].strip() == field]


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags listed on the `flags` lines of /proc/cpuinfo's text."""
    return frozenset(flag for value in cpuinfo_values(cpuinfo, "flags") for flag in value.split())


@functools.cache
def cpuinfo_text() -> str:
    """Linux's /proc/cpuinfo; empty where there is no such file."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags."""
    return parse_cpu_flags(cpuinfo_text())


def cpu_has_native_bf16() -> bool:
    """Whether bf16 autocast is faster than fp32 on this CPU: by its flags where they settle it, else by the probe."""
    flags = cpu_flags()
    if AMX_BF16_FLAG in flags:
        return True
    if AVX512_BF16_FLAG not in flags:
        return False
    return remembered_bf16_speedup() >= BF16_MIN_SPEEDUP


def probe_key() -> str:
    """What the probe's answer depends on: the CPU (its name and flags), PyTorch's kernels and the thread count."""
    names = set(cpuinfo_values(cpuinfo_text(), "model name"))
    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:12]
    return f"{' / '.join(sorted(names)) or 'unknown CPU'} (flags {flags}), torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def remembered_bf16_speedup() -> float:
    """The probe's speedup for this machine, measured once and kept in the cache folder (`kept_bf16_speedup`)."""
    return kept_bf16_speedup(cache_dir() / "bf16-speedup.json", probe_key())


@functools.cache
def kept_bf16_speedup(path: Path, key: str) -> float:
    """The speedup kept in `path` under `key`, measured and written there first if it is not: every later run picks
    the same precision, so that a seed gives the same result on this machine run after run. Delete the file to
    measure again (on a busy machine the probe can be wrong: contention slows bf16 more than fp32).

    Runs that start together take turns under a lock on the file: the first measures alone, the others read what it
    kept, and none writes over another's figure.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a") if fcntl is not None else None
    except OSError:
        lock = None
    with lock or contextlib.nullcontext():
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        known = known if isinstance(known, dict) else {}
        if isinstance(known.get(key), (int, float)):
            return float(known[key])
        known[key] = round(measure_bf16_speedup(), 3)
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(known, indent=1) + "\n")
            log.info("--precision auto: bf16 convolutions ran %.2fx as fast as fp32 on this CPU (kept in %s)",
                     known[key], path)
        except OSError as e:
            log.warning("--precision auto: bf16 convolutions ran %.2fx as fast as fp32 on this CPU, but %s cannot "
                        "be written (%s): later runs will measure again and may choose otherwise; pass --precision "
                        "to fix it", known[key], path, e.strerror or e)
    return float(known[key])


def time_convolutions(dtype: torch.dtype, inputs: list[torch.Tensor], weights: list[torch.Tensor]) -> float:
    """Seconds for a convolution and a transposed one, forward and backward, under `dtype` autocast."""
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        out = F.conv2d(inputs[0], weights[0], stride=2, padding=1).float().sum()
        out = out + F.conv_transpose2d(inputs[1], weights[1], stride=2, padding=1).float().sum()
    out.backward()
    return time.perf_counter() - t0


@torch.inference_mode(False)
@torch.enable_grad()
def measure_bf16_speedup(repeats: int = 7) -> float:
    """fp32's time over bf16's on two layers of a DCGAN's size (a 4x4 stride-2 convolution and its transpose, 64 and
    128 channels, batch 16), in turns, best of `repeats` each. About half a second; the global RNG is not touched,
    and it runs whatever grad mode the caller is in."""
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(16, 64, 32, 32, generator=gen), torch.randn(16, 128, 16, 16, generator=gen)]
    weights = [torch.randn(128, 64, 4, 4, generator=gen) * 0.03, torch.randn(128, 64, 4, 4, generator=gen) * 0.03]
    inputs = [x.contiguous(memory_format=torch.channels_last).requires_grad_() for x in inputs]
    weights = [w.requires_grad_() for w in weights]
    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    for attempt in range(repeats + 1):  # the first of each builds its kernels, and is not counted
        for dtype in best:
            seconds = time_convolutions(dtype, inputs, weights)
            if attempt:
                best[dtype] = min(best[dtype], seconds)
    return best[torch.float32] / best[torch.bfloat16]


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: "auto" is bf16 on a bf16-capable GPU or a CPU where bf16 is faster, and fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision: fp16 needs a CUDA device; use bf16 or fp32")
    return PRECISION_DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for forward passes; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
