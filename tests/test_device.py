"""Which precision `--precision auto` picks, by what the machine has."""

import json

import pytest
import torch

from ganforge import device as device_module
from ganforge.cli import main
from ganforge.device import parse_cpu_flags, pick_dtype

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f {extra}
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f {extra}
"""


def test_cpu_flags_are_read_from_the_flags_lines():
    assert parse_cpu_flags(CPUINFO.format(extra="avx512_bf16")) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
    assert parse_cpu_flags("model name\t: flags and more\n") == frozenset()  # only a line named flags


@pytest.mark.parametrize("extra, expected", [("", torch.float32), ("avx512_bf16", torch.float32),
                                             ("amx_bf16 amx_tile", torch.bfloat16), ("avx512_fp16", torch.float32)])
def test_auto_precision_on_the_cpu_follows_native_bf16(monkeypatch, extra, expected):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: parse_cpu_flags(CPUINFO.format(extra=extra)))
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("fp32", torch.device("cpu")) == torch.float32  # asked for, whatever the CPU has


def test_a_bf16_run_on_the_cpu_trains_and_records_its_precision(tmp_path, small_args):
    assert main(small_args(tmp_path / "run", "--steps", "2", "--precision", "bf16", "--eval-every", "0")) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss_g"])) for r in records if "loss_g" in r)
    assert "dtype: bfloat16" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_resumed_run_keeps_the_precision_auto_chose(tmp_path, small_args, monkeypatch):
    """Started where auto meant bf16, resumed where it would mean fp32: it stays bf16 (and the other way round)."""
    run = tmp_path / "run"
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert main(small_args(run, "--steps", "1", "--eval-every", "0")) == 0
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset())
    assert main(["train", "--out", str(run), "--steps", "2", "--resume", "--precision", "auto"]) == 0
    assert "dtype: bfloat16" in (run / "config.yaml").read_text()
