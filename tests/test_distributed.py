import json
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


def test_private_torchrun_sums_clipped_gradients_over_ranks_and_accounts_each_shard(tmp_path):
    """DP-SGD under torchrun: D is not wrapped in DDP (its private update sums the ranks' clipped gradients, rank
    0 adds the noise), the ranks end with identical weights, and the accountant counts each update at the rate
    at which every image joins it: the batch over its rank's shard (16 of 100)."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    options = json.dumps({"dp_epsilon": 8.0, "max_images": 200, "width": 4})
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(Path(__file__).with_name("ddp_worker.py")),
           str(tmp_path / "run"), str(tmp_path), options]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert STRIDE_WARNING not in proc.stderr
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    privacy = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["privacy"]
    sigma = privacy["noise_multiplier"]
    assert privacy["history"] == [[sigma, 16 / 100, 5]] and 7.9 < privacy["epsilon"] <= 8.0


def test_every_rank_computes_in_the_precision_rank_0_chose(tmp_path):
    """`--precision auto` may time a probe, and ranks sharing cores would skew it and could read it differently: only
    rank 0 chooses, and its choice holds on every rank."""
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import sys, torch\n"
        "from ganforge.training.distributed import init_distributed, main_process_dtype, shutdown\n"
        "info = init_distributed('cpu')\n"
        "def choose():\n"
        "    assert info.rank == 0, 'only rank 0 chooses (a probe timed by every rank at once would be skewed)'\n"
        "    return torch.bfloat16\n"
        "print(f'rank {info.rank}: {main_process_dtype(choose, info, torch.device(\"cpu\"))}', file=sys.stderr)\n"
        "shutdown(info)\n")
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(worker)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0: torch.bfloat16" in proc.stderr and "rank 1: torch.bfloat16" in proc.stderr


def test_a_skipped_d_step_under_torchrun_is_followed_by_r1_without_hanging_ddp(tmp_path):
    """A non-finite D loss skips the step after D's DDP forward; the next step's R1 penalty is backpropagated
    outside DDP and leaves the AC-GAN class head without a gradient. DDP must not be left mid-reduction by this."""
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import sys\n"
        "from ganforge import adversarial\n"
        "from ganforge.cli import main\n"
        "original = adversarial.AdversarialObjective.discriminator_loss\n"
        "def poisoned(self, critic, real, fake, step):\n"
        "    loss, stats = original(self, critic, real, fake, step)\n"
        "    return (loss * float('nan') if step == 3 else loss), stats\n"
        "adversarial.AdversarialObjective.discriminator_loss = poisoned\n"
        f"sys.exit(main(['train', '--data', 'digits', '--resolution', '8', '--width', '8', '--batch-size', '8',"
        f" '--steps', '6', '--conditional', '--cond-d', 'acgan', '--r1-every', '4', '--eval-every', '0',"
        f" '--log-every', '1', '--out', {str(tmp_path / 'run')!r}]))\n")
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(worker)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    after = {r["step"]: r for r in records if "skipped" in r}  # logged under the step count after the update
    assert after[4]["skipped"] == 1 and "r1" in after[5] and after[5]["skipped"] == after[6]["skipped"] == 0
