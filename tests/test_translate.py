"""Unpaired translation (issue 12, CycleGAN): the image pool, the losses against hand computation, a translator
trained for a few steps run both ways, exact resume, torchrun, and bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ganforge.cli import main
from ganforge.config import TrainConfig
from ganforge.nets.translate import ImagePool
from ganforge.tasks.translate import TranslateTask

torch.set_num_threads(1)


def test_the_pool_fills_first_then_shows_an_old_image_half_of_the_time():
    torch.manual_seed(0)
    pool = ImagePool(4, 1, 2)
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(-1, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and int(pool.filled) == 4  # filling: new images shown and kept
    shown_old, seen = 0, {float(x) for x in range(4)}
    for step in range(200):
        new = torch.full((1, 1, 2, 2), 100.0 + step)
        before = pool.images.clone()
        out = pool.query(new)
        if torch.equal(out, new):
            assert torch.equal(pool.images, before)  # a new image shown is not kept
        else:
            shown_old += 1
            assert float(out[0, 0, 0, 0]) in seen  # an image that was in the pool, now replaced by the new one
            assert sorted(pool.images.flatten().unique().tolist()) != sorted(before.flatten().unique().tolist())
        seen.add(100.0 + step)
    assert 80 < shown_old < 120  # half of the time (binomial(200, 1/2): 100 +- 7)
    assert torch.equal(ImagePool(0, 1, 2).query(first), first)


def tiny_task(**options) -> TranslateTask:
    cfg = TrainConfig(task="translate", data="a", data_b="b", width=8, blocks=1, **options).validate()
    torch.manual_seed(0)
    a = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    b = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    task = TranslateTask(cfg, a, b)
    for net in task.nets.values():
        net.eval()  # spectral norm's power iteration would move D between the two computations
    return task


@pytest.mark.parametrize("cycle, identity", [(10.0, 0.5), (3.0, 0.0)])
def test_the_generator_loss_is_the_papers(cycle, identity):
    """CycleGAN's MSE(D(G(x)), 1) for both generators + λ cycle L1 + λ_id λ identity L1."""
    task = tiny_task(cycle_weight=cycle, identity_weight=identity)
    assert task.adversarial_objective.loss == "lsgan"  # the task's default
    batch = task.make_batch(torch.rand(3, 3, 16, 16) * 2 - 1, torch.Generator().manual_seed(1))
    generators, discriminators = task.nets["generator"], task.nets["discriminator"]
    fake = task.generate(generators, batch)
    assert ("idt_a" in fake) == (identity > 0)
    loss, stats = task.generator_loss(discriminators, batch, fake, 0)
    a, b = batch["a"], batch["b"]
    with torch.no_grad():
        adversarial = ((discriminators.b(fake["fake_b"]) - 1).pow(2).mean()
                       + (discriminators.a(fake["fake_a"]) - 1).pow(2).mean())
        expected = adversarial + cycle * ((generators.b2a(generators.a2b(a)) - a).abs().mean()
                                          + (generators.a2b(generators.b2a(b)) - b).abs().mean())
        if identity:
            expected += identity * cycle * ((generators.a2b(b) - b).abs().mean() + (generators.b2a(a) - a).abs().mean())
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    assert set(stats) == {"loss_g_adv", "cycle"} | ({"identity"} if identity else set())


def test_discriminators_judge_their_own_domain():
    """D_A's loss involves only A images and G_BA's fakes; D_B's only B and G_AB's (pool off, so nothing is swapped)."""
    task = tiny_task(pool_size=0)
    batch = task.make_batch(torch.rand(3, 3, 16, 16) * 2 - 1, torch.Generator().manual_seed(1))
    fake = {k: v.detach() for k, v in task.generate(task.nets["generator"], batch).items()}
    d = task.nets["discriminator"]
    loss, stats = task.discriminator_loss(d, batch, fake, 1)  # step 1: no lazy R1
    with torch.no_grad():
        expected = sum(0.5 * (d(batch[x], x) - 1).pow(2).mean() + 0.5 * d(fake[f"fake_{x}"], x).pow(2).mean()
                       for x in "ab")
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert {"d_real_a", "d_fake_a", "d_real_b", "d_fake_b"} <= set(stats)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """Two small collections: dark blue-ish images (A) and bright orange-ish ones (B), of different sizes."""
    root = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(0)
    for name, base in (("a", [20, 40, 120]), ("b", [230, 140, 40])):
        (root / name).mkdir()
        for i, (h, w) in enumerate([(40, 48), (36, 36), (44, 40)]):
            pixels = np.clip(rng.normal(base, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def translate_args(domains, out, *extra):
    return ["train", "--task", "translate", "--data", str(domains / "a"), "--data-b", str(domains / "b"), "--out",
            str(out), "--patch-size", "16", "--batch-size", "4", "--width", "8", "--blocks", "1", *extra]


@pytest.fixture(scope="module")
def translate_run(tmp_path_factory, domains):
    out = tmp_path_factory.mktemp("runs") / "p2m"
    assert main(translate_args(domains, out, "--steps", "3")) == 0
    return out


def test_a_translator_trained_a_few_steps_runs_both_ways(tmp_path, translate_run, domains):
    config = json.loads((translate_run / "model" / "config.json").read_text())
    assert config["task"] == "translate" and config["data_b"] == str(domains / "b")
    weights = load_file(str(translate_run / "model" / "generator.safetensors"))
    assert any(k.startswith("a2b.") for k in weights) and any(k.startswith("b2a.") for k in weights)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).convert("RGBA").save(photo)
    outs = {}
    for direction in ("a2b", "b2a"):
        out = tmp_path / f"{direction}.png"
        assert main(["translate", str(translate_run), str(photo), "--direction", direction, "--out", str(out)]) == 0
        im = Image.open(out)
        assert im.size == (50, 30) and im.mode == "RGBA" and im.text["direction"] == direction
        outs[direction] = np.asarray(im)
    assert not np.array_equal(outs["a2b"], outs["b2a"])  # two different generators
    assert main(["translate", str(translate_run / "model"), str(domains / "b"), "--direction", "b2a",
                 "--out", str(tmp_path / "folder")]) == 0
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["0.png", "1.png", "2.png"]


def test_a_translator_sees_the_whole_image_at_once(translate_run):
    """Instance norm takes statistics over the image: inference must not tile, even past the fast networks' tile."""
    from ganforge.pipelines.fast_stylize import TILE, image_through_network
    from ganforge.pipelines.translation import load_translator
    from ganforge.imageio import uint8_to_float

    net, _ = load_translator(translate_run, "a2b")
    assert not net.tileable
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 255, (24, TILE + 40, 3), dtype=np.uint8))
    out = np.asarray(image_through_network(net, im, torch.device("cpu")))
    x = uint8_to_float(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))[None].float()
    with torch.no_grad():
        whole = ((net(x).clamp(-1, 1)[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    assert np.abs(out.astype(float) - whole).max() <= 1


def test_translate_resume_is_exact(tmp_path, domains):
    """The pools are buffers of D: a resumed run sees the same past fakes, and ends bit-identical."""
    assert main(translate_args(domains, tmp_path / "a", "--steps", "4", "--pool-size", "3")) == 0
    assert main(translate_args(domains, tmp_path / "b", "--steps", "2", "--pool-size", "3")) == 0
    assert main(translate_args(domains, tmp_path / "b", "--steps", "4", "--pool-size", "3", "--resume")) == 0
    a, b = (load_file(str(tmp_path / n / "checkpoints" / "last.safetensors")) for n in "ab")
    assert any("pool_a.images" in k for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_trains_a_translator(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "ganforge", "train", "--task", "translate",
           "--data", "digits", "--data-b", "digits", "--width", "8", "--blocks", "1", "--batch-size", "4",
           "--steps", "3", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "generator.safetensors").exists()


@pytest.mark.parametrize("case, needle", [
    ("model of another task", "mnist5k: a generation model, not a translator"),
    ("unknown direction", "--direction: 'a2c' is not one of a2b, b2a"),
    ("missing input", "{tmp}/none.png: no such file or folder"),
    ("no data-b", "--data-b: --task translate needs a second collection"),
    ("data-b for another task", "--data-b: only applies to --task translate, not --task generation"),
    ("data-b missing folder", "--data-b: {tmp}/none does not exist"),
    ("sizes differ", "--data-b: digits gives 8x8 images and --data mnist5k 28x28"),
    ("too large", "4100x4100 is more than a translator takes in one piece (16.8 megapixels)"),
    ("empty folder", "holds no image files"),
    ("adaptive augmentation", "--augment-target: not with --task translate"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, refused, case, needle, translate_run, domains):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(photo)
    Image.new("RGB", (4100, 4100)).save(tmp_path / "huge.png")
    (tmp_path / "empty").mkdir()
    out, run = tmp_path / "out.png", tmp_path / "run"
    args = {
        "model of another task": ["translate", "mnist5k", str(photo), "--out", str(out)],
        "unknown direction": ["translate", str(translate_run), str(photo), "--direction", "a2c", "--out", str(out)],
        "missing input": ["translate", str(translate_run), str(tmp_path / "none.png"), "--out", str(out)],
        "no data-b": ["train", "--task", "translate", "--steps", "1", "--out", str(run)],
        "data-b for another task": ["train", "--data-b", str(domains / "b"), "--steps", "1", "--out", str(run)],
        "data-b missing folder": ["train", "--task", "translate", "--data", str(domains / "a"), "--data-b",
                                  str(tmp_path / "none"), "--steps", "1", "--out", str(run)],
        "sizes differ": ["train", "--task", "translate", "--data", "mnist5k", "--data-b", "digits", "--steps", "1",
                         "--out", str(run)],
        "too large": ["translate", str(translate_run), str(tmp_path / "huge.png"), "--out", str(out)],
        "empty folder": ["translate", str(translate_run), str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
        "adaptive augmentation": translate_args(domains, run, "--augment", "color", "--augment-target", "0.6"),
    }[case]
    refused(args, needle.format(tmp=tmp_path), tmp_path)
