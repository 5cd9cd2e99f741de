"""End-to-end runs of `ganforge train / sample / interpolate` on tiny settings."""

import json
import subprocess
import sys

import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from ganforge.cli import main
from ganforge.latent import slerp


def checkpoint(run):
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def test_short_run_writes_everything(tmp_path, small_args):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "6", "--sample-every", "3", "--checkpoint-every", "4")) == 0
    for name in ("config.yaml", "metrics.jsonl", "losses.png", "samples/latest.png", "samples/step_0000003.png",
                 "checkpoints/last.safetensors", "model/config.json", "model/generator.safetensors"):
        assert (run / name).exists(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 0 and config["steps"] == 6 and config["environment"]["ganforge"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(records[-1])
    assert Image.open(run / "losses.png").size[0] > 500
    assert not list(run.rglob(".*.tmp*"))  # no temporary file left behind


def test_resume_is_exact(tmp_path, small_args):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(small_args(straight, "--steps", "8")) == 0
    assert main(small_args(split, "--steps", "4")) == 0
    assert main(small_args(split, "--steps", "8", "--resume")) == 0
    a, b = checkpoint(straight), checkpoint(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_same_seed_same_grid_and_samples(tmp_path, small_args):
    for name in ("a", "b"):
        assert main(small_args(tmp_path / name, "--steps", "3")) == 0
    grid = lambda name: Image.open(tmp_path / name / "samples" / "latest.png").tobytes()  # noqa: E731
    assert grid("a") == grid("b")
    assert main(["sample", str(tmp_path / "a"), "--n", "9", "--seed", "5", "--out", str(tmp_path / "s1.png")]) == 0
    assert main(["sample", str(tmp_path / "b" / "model"), "--n", "9", "--seed", "5", "--out", str(tmp_path / "s2.png")]) == 0
    assert Image.open(tmp_path / "s1.png").tobytes() == Image.open(tmp_path / "s2.png").tobytes()
    assert main(["sample", str(tmp_path / "a"), "--n", "9", "--seed", "6", "--out", str(tmp_path / "s3.png")]) == 0
    assert Image.open(tmp_path / "s1.png").tobytes() != Image.open(tmp_path / "s3.png").tobytes()


def test_sample_folder_and_interpolation(tmp_path, small_args):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "2")) == 0
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "pngs")]) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["seed000000.png", "seed000001.png", "seed000002.png"]
    assert main(["interpolate", str(run), "--seeds", "1,2,3", "--frames", "5", "--out", str(tmp_path / "walk.png")]) == 0
    assert Image.open(tmp_path / "walk.png").size == (2 + 5 * 10, 2 + 2 * 10)  # 8px images, 2px padding
    assert main(["interpolate", str(run), "--seeds", "1-2", "--frames", "4", "--out", str(tmp_path / "walk.gif")]) == 0
    assert Image.open(tmp_path / "walk.gif").n_frames == 6  # forth and back


def test_slerp_ends_and_norm():
    a, b = torch.randn(100), torch.randn(100)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert mid.norm() > 0.9 * min(a.norm(), b.norm())  # a straight line would shrink towards 0.7x


def test_shipped_model_samples_digits(tmp_path):
    assert main(["sample", "--model", "mnist5k", "--n", "16", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (2 + 4 * 30, 2 + 4 * 30)


def test_seed_architecture_trains(tmp_path):
    run = tmp_path / "seed"
    args = ["train", "--data", "digits", "--arch", "seed", "--batch-size", "8", "--steps", "2", "--out", str(run)]
    assert main(args) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["resolution"] == 56
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (2 + 2 * 58, 2 + 2 * 58)
    assert main([*args[:-4], "--steps", "3", "--out", str(run), "--resume"]) == 0  # its saved config resumes
    config = run / "config.yaml"  # as saved before widths depended on the resolution: width 64, the old default
    config.write_text(config.read_text().replace("width: null", "width: 64"))
    assert main([*args[:-4], "--steps", "4", "--out", str(run), "--resume"]) == 0


def test_a_checkpoint_of_another_network_is_one_line(tmp_path, refused, small_args, capsys):
    """A checkpoint that does not fit the network the run's config builds (another version wrote it) is refused."""
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "1", "--eval-every", "0")) == 0
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("width: 8", "width: 16"))
    capsys.readouterr()
    refused(["train", "--out", str(run), "--steps", "2", "--resume"], "is not the network this version builds", run)


def test_interrupted_run_checkpoints_and_resumes(tmp_path):
    """SIGINT mid-run: the step under way finishes, a checkpoint is written, exit code 130."""
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ganforge", "train", "--data", "digits", "--resolution", "16", "--width", "16",
           "--steps", "100000", "--checkpoint-every", "100000", "--sample-every", "100000", "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    step = int(json.loads(load_file_meta(run)["meta"])["step"])
    assert step > 0
    assert main(["train", "--out", str(run), "--resume", "--steps", str(step + 2)]) == 0
    assert int(json.loads(load_file_meta(run)["meta"])["step"]) == step + 2


def load_file_meta(run):
    from safetensors import safe_open

    with safe_open(str(run / "checkpoints" / "last.safetensors"), "pt") as f:
        return f.metadata()


def test_max_images_and_max_minutes(tmp_path, small_args):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "100000", "--max-images", "100", "--max-minutes", "0.02")) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["environment"]["images"] == 100
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 0 < steps[-1] < 100000  # stopped by the clock, with a checkpoint
    assert (run / "checkpoints" / "last.safetensors").exists()


def test_split_is_disjoint_and_fixed():
    from ganforge.data import load_imageset, split

    data = load_imageset("digits", 8)
    train_a, held_a = split(data, 1500)
    train_b, _ = split(data, 1500)
    assert len(train_a) == 1500 and len(held_a) == 297
    assert torch.equal(train_a.images, train_b.images)
    rows = {bytes(x.numpy()) for x in train_a.images}
    assert sum(bytes(x.numpy()) in rows for x in held_a.images) < 5  # digits has a few duplicate images


def test_small_images_default_to_a_narrower_deeper_net():
    """At 32 px or less, width 32, depth 2 and 3500 steps unless given (the quickstart's measured recipe); width 64,
    depth 0 (the paper's DCGAN) and 5000 steps above."""
    from ganforge.config import TrainConfig
    from ganforge.training.run import generation_defaults

    cases = [({"data": "mnist5k"}, (28, 32, 2, 3500)), ({"data": "mnist5k", "resolution": 64}, (64, 64, 0, None)),
             ({"data": "mnist5k", "resolution": 32}, (32, 32, 2, 3500)),
             ({"data": "mnist5k", "width": 48}, (28, 48, 2, 3500)), ({"data": "mnist5k", "epochs": 3.0}, (28, 32, 2, None)),
             ({"data": "mnist5k", "steps": 10}, (28, 32, 2, 10)), ({"data": "mnist5k", "depth": 0}, (28, 32, 0, 3500)),
             ({"data": "mnist5k", "resolution": 64, "depth": 2}, (64, 64, 2, None)),
             ({"data": "mnist5k", "arch": "seed"}, (56, None, None, None))]  # the brief's nets are fixed
    for options, expected in cases:
        cfg = TrainConfig(**options)
        generation_defaults(cfg)
        assert (cfg.resolution, cfg.width, cfg.depth, cfg.steps) == expected, options
    assert TrainConfig(task="superres").width == 64  # other tasks keep their width
    assert TrainConfig(task="superres").depth is None  # and have no depth


def test_run_saved_before_depth_existed_resumes_with_the_papers_dcgan(tmp_path, small_args):
    """A config.yaml without `depth` (written before the option) is depth 0: the network its checkpoint holds."""
    out = tmp_path / "run"
    assert main(small_args(out, "--steps", "2", "--depth", "0")) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["depth"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(small_args(out, "--steps", "3", "--resume")) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["depth"] == 0
    assert "depth" not in json.loads((out / "model" / "config.json").read_text())  # as old models, which load


def test_compiled_run_matches_eager_and_resumes_exactly(tmp_path, small_args):
    """--compile changes how the step runs, not what it computes; a compiled run resumes bit for bit.

    In fp32, whatever auto would pick here: fused bf16 kernels round at bf16's precision, not float32's."""
    from torch._dynamo.utils import counters

    eager, straight, split = tmp_path / "eager", tmp_path / "straight", tmp_path / "split"
    assert main(small_args(eager, "--steps", "4", "--precision", "fp32")) == 0
    counters.clear()
    assert main(small_args(straight, "--steps", "4", "--compile", "--precision", "fp32")) == 0
    assert counters["stats"]["unique_graphs"] > 0  # the networks really ran compiled
    assert main(small_args(split, "--steps", "2", "--compile", "--precision", "fp32")) == 0
    assert main(small_args(split, "--steps", "4", "--resume")) == 0
    assert yaml.safe_load((split / "config.yaml").read_text())["compile"] is True
    a, b, e = checkpoint(straight), checkpoint(split), checkpoint(eager)
    assert a.keys() == b.keys() == e.keys()  # in-place compilation keeps the weights' names
    for key in a:
        assert torch.equal(a[key], b[key]), key
        if a[key].is_floating_point():  # fused kernels round differently, by float32 noise only
            assert torch.allclose(a[key], e[key], rtol=1e-3, atol=1e-4), key
