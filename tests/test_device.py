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


@pytest.mark.parametrize("extra, speedup, expected", [
    ("", 3.0, torch.float32),  # no AVX512-BF16: emulated, whatever a probe would say
    ("amx_bf16 amx_tile avx512_bf16", 0.5, torch.bfloat16),  # AMX: fast, with no probe
    ("avx512_bf16", 1.48, torch.bfloat16),  # AVX512-BF16 alone: the probe decides (an AMD EPYC)...
    ("avx512_bf16", 0.74, torch.float32),  # ... (a Xeon)
    ("avx512_bf16", 1.1, torch.float32),  # within the margin, fp32
    ("avx512_fp16", 3.0, torch.float32)])
def test_auto_precision_on_the_cpu_follows_its_flags_then_the_probe(monkeypatch, extra, speedup, expected):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: parse_cpu_flags(CPUINFO.format(extra=extra)))
    monkeypatch.setattr(device_module, "remembered_bf16_speedup", lambda: speedup)
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("fp32", torch.device("cpu")) == torch.float32  # asked for, whatever the CPU has


def test_the_probe_is_the_ratio_of_the_best_times(monkeypatch):
    """fp32's best time over bf16's; the first of each (kernel building) is not counted."""
    times = {torch.float32: iter([0.01, 0.5, 0.4, 0.6]), torch.bfloat16: iter([0.01, 0.3, 0.2, 0.25])}
    monkeypatch.setattr(device_module, "time_convolutions", lambda dtype, inputs, weights: next(times[dtype]))
    assert device_module.measure_bf16_speedup(repeats=3) == pytest.approx(0.4 / 0.2)


def test_the_probe_runs_once_per_machine_and_leaves_the_rng_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    device_module.kept_bf16_speedup.cache_clear()
    state = torch.get_rng_state()
    with torch.inference_mode():  # the probe needs gradients, whatever mode its caller is in
        first = device_module.remembered_bf16_speedup()  # the real probe, on this machine
    assert torch.equal(torch.get_rng_state(), state)  # a seeded run draws the same numbers whether it probed or not
    assert first > 0
    kept = json.loads((tmp_path / "bf16-speedup.json").read_text())
    assert kept == {device_module.probe_key(): pytest.approx(first, abs=1e-3)}
    device_module.kept_bf16_speedup.cache_clear()
    monkeypatch.setattr(device_module, "measure_bf16_speedup", lambda: pytest.fail("probed again"))
    assert device_module.remembered_bf16_speedup() == kept[device_module.probe_key()]  # read back, not re-measured
    device_module.kept_bf16_speedup.cache_clear()


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


def test_runs_that_start_together_measure_once_and_agree(monkeypatch, tmp_path):
    """Two runs probing at once would slow each other and could keep different figures: they take turns."""
    import threading
    import time

    figures = iter([1.5, 0.9])

    def slow_probe():
        time.sleep(0.3)  # long enough for the other run to arrive while this one measures
        return next(figures)

    monkeypatch.setattr(device_module, "measure_bf16_speedup", slow_probe)
    path, results = tmp_path / "bf16-speedup.json", []
    runs = [threading.Thread(target=lambda: results.append(device_module.kept_bf16_speedup.__wrapped__(path, "cpu")))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert results == [1.5, 1.5]
    assert json.loads(path.read_text()) == {"cpu": 1.5}


def test_a_cache_that_cannot_be_written_is_said(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(device_module, "measure_bf16_speedup", lambda: 1.5)
    (tmp_path / "file").write_text("not a folder")
    with caplog.at_level("WARNING"):
        assert device_module.kept_bf16_speedup.__wrapped__(tmp_path / "file" / "bf16-speedup.json", "cpu") == 1.5
    assert "later runs will measure again and may choose otherwise" in caplog.text
