import os

os.environ["OMP_NUM_THREADS"] = "1"  # tiny test networks run fastest on one thread, and subprocesses inherit it

import numpy as np
import torch
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Embedded sets are cached once per test session, never in the user's home."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def image_folder(tmp_path):
    """A folder of small images in every mode the loader must handle, plus junk to skip."""
    root = tmp_path / "images"
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "deep").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(root / "cats" / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(root / "cats" / "grey.jpg")
    Image.fromarray(rng.integers(0, 255, (24, 24, 4), dtype=np.uint8), "RGBA").save(root / "dogs" / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)).convert("P").save(root / "dogs" / "deep" / "pal.bmp")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "dogs" / "photo.webp")
    (root / "cats" / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("not an image")
    return root


def small_train_args(out, *extra):
    """A run that takes about a second: 8x8 digits, tiny networks."""
    return ["train", "--data", "digits", "--resolution", "8", "--width", "8", "--batch-size", "16",
            "--out", str(out), "--log-every", "1", *extra]


@pytest.fixture
def small_args():
    return small_train_args


def disk_state(folder):
    """Sizes and modification times of everything under `folder`: what "nothing was written" compares."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def refused(capsys):
    """A check that the CLI refuses `args`: exit 2, one line on stderr holding `needle`, nothing under `folder` changed."""
    from ganforge.cli import main

    def check(args: list[str], needle: str, folder) -> None:
        before = disk_state(folder)
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert disk_state(folder) == before

    return check


def save_random_model(folder, config: dict, build) -> torch.nn.Module:
    """A model folder of `config` whose weights are seeded noise (a fresh network can be the identity, which code
    that skipped it would still reproduce); returns the network, in eval mode."""
    from ganforge.saved_model import save_model

    torch.manual_seed(0)
    net = build(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_model(folder, config, {"generator": net.state_dict()})
    return net.eval()


@pytest.fixture
def random_model():
    return save_random_model


@pytest.fixture(scope="session")
def style_model(tmp_path_factory):
    """A tiny fast style network (with noise inputs) of random weights, as a model folder."""
    from ganforge.nets.fast_style import build_fast_style_net

    folder = tmp_path_factory.mktemp("models") / "style"
    save_random_model(folder, {"task": "style", "width": 8, "blocks": 1, "output": "residual", "noise_channels": 2},
                      build_fast_style_net)
    return folder


@pytest.fixture(scope="session")
def translate_model(tmp_path_factory):
    """A tiny translator (both directions) of random weights, as a model folder."""
    from ganforge.nets.translate import build_cycle_generators

    folder = tmp_path_factory.mktemp("models") / "translate"
    save_random_model(folder, {"task": "translate", "width": 4, "blocks": 1}, build_cycle_generators)
    return folder


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """Three smooth-ish random photos of different sizes, for super-resolution and inpainting runs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(64, 80), (72, 72), (96, 64)]):
        noise = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC).save(root / f"p{i}.png")
    return root


torch.set_num_threads(1)
