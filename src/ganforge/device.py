"""Choosing the device and the numeric precision of a run."""

import contextlib
import functools
from pathlib import Path

import torch

from ganforge.errors import UserError


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


# /proc/cpuinfo's name for AMX bf16 tiles. AVX512-BF16 alone is not enough: on a Xeon with avx512_bf16 but no AMX,
# bf16 autocast measured 1.55x slower than fp32 on a 4x4 convolution and 1.35x slower on the DCGAN training step.
BF16_CPU_FLAGS = frozenset({"amx_bf16"})


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags listed on the `flags` lines of /proc/cpuinfo's text."""
    return frozenset(flag for line in cpuinfo.splitlines() if line.split(":", 1)[0].strip() == "flags"
                     for flag in line.split(":", 1)[1].split())


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux's /proc/cpuinfo); empty where there is no such file."""
    try:
        return parse_cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU's bf16 is faster than its fp32 (AMX): bf16 autocast was about 1.8x fp32 on such a CPU, slower
    than fp32 with AVX512-BF16 alone, and 20x slower on an AVX2-only one, where every bf16 operation is emulated."""
    return bool(cpu_flags() & BF16_CPU_FLAGS)


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: "auto" is bf16 on a bf16-capable GPU or a CPU with AMX, and fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision: fp16 needs a CUDA device; use bf16 or fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for forward passes; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
