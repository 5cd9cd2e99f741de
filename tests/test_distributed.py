import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

STRIDE_WARNING = "Grad strides do not match bucket view strides"  # DDP's, for a gradient laid out unlike its weight


def test_two_process_torchrun_ends_with_identical_weights(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(Path(__file__).with_name("ddp_worker.py")),
           str(tmp_path / "run"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert STRIDE_WARNING not in proc.stderr  # the gradients of 1-channel weights reach DDP in the weights' layout
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # rank 0 alone wrote the run's files; both ranks trained (metrics record the global images per second)
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()
    assert "world_size: 2" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("extra", [[], ["--conditional", "--cond-d", "acgan"]])
def test_torchrun_runs_the_cli_module(tmp_path, extra):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "ganforge", "train", "--data", "digits",
           "--resolution", "8", "--width", "8", "--batch-size", "8", "--steps", "3", "--out", str(tmp_path / "run"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert STRIDE_WARNING not in proc.stderr  # the gradients of 1-channel weights reach DDP in the weights' layout
    assert (tmp_path / "run" / "model" / "generator.safetensors").exists()
