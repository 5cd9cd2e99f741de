"""The fast style network (issue 12, part B): tiling without seams, training on the one trainer with no
discriminator, exact resume, and `ganforge stylize --model` on files and folders."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skdata

from ganforge.cli import main
from ganforge.nets.fast_style import FastStyleNet, build_fast_style_net, style_noise, with_noise
from ganforge.pipelines import fast_stylize
from ganforge.pipelines.fast_stylize import image_through_network
from ganforge.nets.style import RANDOM_NAME
from ganforge.tasks.style import file_digest
from ganforge.tiling import upscale_tensor

torch.set_num_threads(1)


def random_net(noise_channels: int = 0) -> FastStyleNet:
    """Random weights everywhere (the residual blocks start at zero in training), so every layer's reach counts."""
    torch.manual_seed(0)
    net = FastStyleNet(width=16, blocks=2, noise_channels=noise_channels).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("size", [(70, 101), (64, 64), (33, 130)])
@pytest.mark.parametrize("noise_channels", [0, 3])
def test_tiled_output_equals_untiled(size, noise_channels):
    net = random_net(noise_channels)
    x = torch.rand(1, 3 + noise_channels, *size) * 2 - 1
    with torch.no_grad():
        whole = net(x).clamp(-1, 1)
    tiled = upscale_tensor(net, x, tile=32, dtype=torch.float32)
    assert whole.shape == (1, 3, *size)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_the_noise_reaches_the_output_and_is_fixed_at_inference(monkeypatch):
    """Another noise field gives another image; `stylize --model` reads one fixed field, cut into tiles with the photo."""
    net = random_net(noise_channels=3)
    photo = torch.rand(1, 3, 40, 52) * 2 - 1
    with torch.no_grad():
        a, b = (net(with_noise(photo, style_noise(photo, 3, torch.Generator().manual_seed(s)))) for s in (0, 1))
    assert not torch.allclose(a, b, atol=1e-2)
    im = Image.fromarray(((photo[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
    whole = np.asarray(image_through_network(net, im, "cpu"))
    monkeypatch.setattr(fast_stylize, "TILE", 16)
    assert np.array_equal(np.asarray(image_through_network(net, im, "cpu")), whole)


def test_the_margin_is_needed():
    """With too little context the tiles differ: the equality above is not an accident of a flat network."""
    net = random_net()
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        whole = net(x).clamp(-1, 1)
    net.receptive_radius = 3
    assert not torch.allclose(upscale_tensor(net, x, tile=32, dtype=torch.float32), whole, atol=1e-3)


def test_a_new_style_network_starts_as_the_identity():
    """The photo comes through untouched at step 0, as the optimisation starts from the photo; models saved
    before `output: residual` build as they were (a tanh head, not the identity)."""
    x = torch.rand(2, 3, 22, 30) * 2 - 1
    new = build_fast_style_net({"width": 8, "blocks": 1, "output": "residual", "noise_channels": 3})
    old = build_fast_style_net({"width": 8, "blocks": 1})
    with torch.no_grad():
        assert torch.equal(new(with_noise(x, torch.randn(2, 3, 22, 30))), x)
        x = with_noise(x, torch.randn(2, 3, 22, 30))  # the photo, then noise
        assert not torch.allclose(old(x[:, :3]), x[:, :3], atol=0.1)
        for p in new.parameters():
            p.normal_(0, 0.1)
        moved = new(x)
    assert not torch.allclose(moved, x[:, :3], atol=1e-3)


@pytest.fixture(scope="module")
def style_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("style") / "gravel.png"
    Image.fromarray(skdata.gravel()).resize((48, 48)).save(path)
    return path


def style_args(data, style, out, *extra):
    return ["train", "--task", "style", "--style", str(style), "--data", str(data), "--out", str(out),
            "--patch-size", "32", "--batch-size", "4", "--width", "16", *extra]


@pytest.fixture(scope="module")
def style_run(tmp_path_factory, photo_folder, style_image):
    out = tmp_path_factory.mktemp("runs") / "style"
    assert main(style_args(photo_folder, style_image, out, "--steps", "3")) == 0
    return out


def test_training_exports_a_model_that_says_what_it_learned(style_run, style_image):
    config = json.loads((style_run / "model" / "config.json").read_text())
    assert {k: config[k] for k in ("task", "style", "style_sha256", "features", "steps", "noise_channels")} == {
        "task": "style", "style": "gravel.png", "style_sha256": file_digest(style_image), "features": RANDOM_NAME,
        "steps": 3, "noise_channels": 3}
    checkpoint = load_file(str(style_run / "checkpoints" / "last.safetensors"))
    assert not any(k.startswith(("net.discriminator", "optim.discriminator")) for k in checkpoint)  # no D at all
    records = [json.loads(line) for line in (style_run / "metrics.jsonl").read_text().splitlines()]
    assert {"content", "style", "tv"} <= set(records[-1]) and "loss_d" not in records[-1]


def test_style_resume_is_exact(tmp_path, photo_folder, style_image):
    assert main(style_args(photo_folder, style_image, tmp_path / "a", "--steps", "4")) == 0
    assert main(style_args(photo_folder, style_image, tmp_path / "b", "--steps", "2")) == 0
    assert main(style_args(photo_folder, style_image, tmp_path / "b", "--steps", "4", "--resume")) == 0
    a, b = (load_file(str(tmp_path / n / "checkpoints" / "last.safetensors")) for n in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_style_network_can_start_from_one_of_another_style(tmp_path, style_run, photo_folder):
    other = tmp_path / "brick.png"
    Image.fromarray(skdata.brick()).resize((48, 48)).convert("RGB").save(other)
    out = tmp_path / "brick-run"
    assert main(style_args(photo_folder, other, out, "--steps", "1", "--strength", "2", "--seed", "1",
                           "--init-generator", str(style_run))) == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["style"] == "brick.png" and config["strength"] == 2.0
    start, after = (load_file(str(p / "model" / "generator.safetensors")) for p in (style_run, out))
    # One step at the default lr from the other style's weights: close to them, unlike a fresh initialisation of seed 1.
    assert max((start[k] - after[k]).abs().max().item() for k in start) < 0.05
    assert main(style_args(photo_folder, other, tmp_path / "fresh", "--steps", "1", "--seed", "1")) == 0
    fresh = load_file(str(tmp_path / "fresh" / "model" / "generator.safetensors"))
    assert max((start[k] - fresh[k]).abs().max().item() for k in start) > 0.5


def test_stylize_with_a_model_on_a_file_and_a_folder(tmp_path, style_run):
    photo = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).resize((50, 37)).save(photo)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(skdata.rocket()).resize((40, 30)).convert("RGBA").save(folder / "sub" / "rocket.png")
    Image.fromarray(skdata.chelsea()).resize((30, 20)).save(folder / "cat.jpg")
    assert main(["stylize", str(photo), "--model", str(style_run), "--out", str(tmp_path / "out.png")]) == 0
    im = Image.open(tmp_path / "out.png")
    assert im.size == (50, 37) and im.mode == "RGB"
    assert im.text["features"] == RANDOM_NAME and im.text["style"] == "gravel.png" and im.text["model"] == str(style_run)
    assert main(["stylize", str(folder), "--model", str(style_run / "model"), "--out", str(tmp_path / "styled")]) == 0
    out = tmp_path / "styled"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["cat.png", "sub/rocket.png"]
    assert Image.open(out / "sub" / "rocket.png").mode == "RGBA"
    assert np.asarray(Image.open(out / "cat.png")).shape == (20, 30, 3)


@pytest.mark.parametrize("case, needle", [
    ("model of another task", "is a superres model, not a fast style network"),
    ("style with model", "--style: the fast network of --model learned its style"),
    ("steps with model", "--steps: the fast network of --model learned its style"),
    ("neither style nor model", "--style: name a style image (or --model"),
    ("train without style", "--style: --task style needs a style image"),
    ("style for another task", "--style: only applies to --task style, not --task superres"),
    ("adversarial option for style", "--loss: only applies to --task generation or inpaint or superres or translate, not --task style"),
    ("missing style image", "--style: {tmp}/none.png does not exist"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, refused, case, needle, style_run, style_image,
                                                 photo_folder):
    photo = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).resize((40, 30)).save(photo)
    out, run = tmp_path / "out.png", tmp_path / "run"
    args = {
        "model of another task": ["stylize", str(photo), "--model", "superres-x2", "--out", str(out)],
        "style with model": ["stylize", str(photo), "--model", str(style_run), "--style", str(style_image), "--out",
                             str(out)],
        "steps with model": ["stylize", str(photo), "--model", str(style_run), "--steps", "5", "--out", str(out)],
        "neither style nor model": ["stylize", str(photo), "--out", str(out)],
        "train without style": ["train", "--task", "style", "--steps", "1", "--out", str(run)],
        "style for another task": ["train", "--task", "superres", "--style", str(style_image), "--steps", "1", "--out",
                                   str(run)],
        "adversarial option for style": style_args(photo_folder, style_image, run, "--loss", "hinge", "--steps", "1"),
        "missing style image": style_args(photo_folder, tmp_path / "none.png", run, "--steps", "1"),
    }[case]
    refused(args, needle.format(tmp=tmp_path), tmp_path)


def test_a_nonfinite_step_with_no_discriminator_is_skipped_whole(tmp_path, style_image):
    """The trainer's undo keeps what exists with no D: G's weights, Adam state and EMA are left as they were."""
    from ganforge.config import TrainConfig
    from ganforge.data.photos import load_photo
    from ganforge.nets.style import random_features
    from ganforge.tasks.style import StyleTask
    from ganforge.training.checkpoint import save_checkpoint
    from ganforge.training.distributed import DistInfo
    from ganforge.training.trainer import Trainer

    cfg = TrainConfig(task="style", style=str(style_image), data="photos", patch_size=16, batch_size=2, width=8,
                      steps=5).validate()
    torch.manual_seed(0)
    patches = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    task = StyleTask(cfg, patches, torch.from_numpy(load_photo(style_image).copy()), random_features())
    trainer = Trainer(cfg, task, patches, tmp_path, torch.device("cpu"), torch.float32, DistInfo())
    assert trainer.discriminator is None and set(trainer.optimizers) == {"generator"}
    for step in range(2):
        trainer.train_step(step)

    def everything() -> dict[str, torch.Tensor]:
        save_checkpoint(tmp_path / "probe.safetensors", trainer.checkpointed_nets, trainer.optimizers, {})
        return load_file(str(tmp_path / "probe.safetensors"))

    before, loss = everything(), task.generator_loss
    task.generator_loss = lambda *a: (lambda value, stats: (value * float("nan"), stats))(*loss(*a))
    assert trainer.train_step(2)["skipped"] == 1
    after = everything()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    task.generator_loss = loss
    assert trainer.train_step(2)["skipped"] == 0  # a good step does change them
    assert not all(torch.equal(before[k], v) for k, v in everything().items())
