"""Class-conditional GANs: networks, losses, labelled data, `sample --class` and `augment`."""

import csv
import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.pipelines import synthetic_data as synthetic
from ganforge.cli import main
from ganforge.config import TrainConfig
from ganforge.losses import bce_discriminator_loss, bce_generator_loss
from ganforge.nets.conditional import ConditionalDCGANGenerator, ProjectionDiscriminator
from ganforge.pipelines.sampling import load_generator
from ganforge.tasks.conditional import ConditionalGenerationTask


def tiny_cfg(**kw):
    return TrainConfig(resolution=8, width=8, latent_dim=4, r1_gamma=0.0, ema_decay=0.0, conditional=True, **{"augment": "none", **kw})


def test_class_embedding_reaches_the_output():
    torch.manual_seed(0)
    g = ConditionalDCGANGenerator(resolution=8, channels=1, latent_dim=4, width=8, num_classes=3).eval()
    z = torch.randn(2, 4)
    zero, one = g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1]))
    assert zero.shape == (2, 1, 8, 8)
    assert (zero - one).abs().max() > 1e-3  # same z, other class: another image
    # Each of the two routes alone carries the class: the input embedding and the conditional batch norms.
    with torch.no_grad():
        g.embed.weight.zero_()
    assert (g(z, torch.tensor([0, 0])) - g(z, torch.tensor([1, 1]))).abs().max() > 1e-4


def test_projection_discriminator_matches_its_formula():
    torch.manual_seed(0)
    d = ProjectionDiscriminator(resolution=8, channels=1, width=8, num_classes=3).eval()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 2, 1, 2])
    h = d.features(x)
    by_hand = d.psi(h).flatten() + (d.embed.weight[y] * h.sum(dim=(2, 3))).sum(dim=1)
    assert torch.allclose(d(x, y), by_hand, atol=1e-6)
    assert not torch.allclose(d(x, y), d(x, (y + 1) % 3))  # the class changes the score
    logits, classes = d(x, y, with_classes=True)
    assert classes is None and torch.equal(logits, d(x, y))


def test_acgan_losses_by_hand():
    torch.manual_seed(0)
    task = ConditionalGenerationTask(tiny_cfg(cond_d="acgan", ac_weight=0.5), 1, 8, ["a", "b", "c"])
    d = task.nets["discriminator"].eval()
    assert d.embed is None and d.classifier is not None  # AC-GAN: no projection, an auxiliary classifier
    labels = torch.tensor([0, 1, 2, 1])
    batch = {"real": torch.rand(4, 1, 8, 8) * 2 - 1, "labels": labels, "z": torch.randn(4, 4)}
    fake = torch.rand(4, 1, 8, 8) * 2 - 1
    (real_logits, real_classes), (fake_logits, fake_classes) = d(batch["real"], labels, True), d(fake, labels, True)
    loss_d, stats = task.discriminator_loss(d, batch, fake, step=1)
    expected = bce_discriminator_loss(real_logits, fake_logits) + 0.5 * F.cross_entropy(real_classes, labels)
    assert torch.allclose(loss_d, expected, atol=1e-6) and "ac_real" in stats
    loss_g, _ = task.generator_loss(d, batch, fake, step=1)
    assert torch.allclose(loss_g, bce_generator_loss(fake_logits) + 0.5 * F.cross_entropy(fake_classes, labels), atol=1e-6)


def test_projection_task_uses_the_batch_classes():
    torch.manual_seed(0)
    task = ConditionalGenerationTask(tiny_cfg(loss="hinge"), 1, 8, ["a", "b"])
    d = task.nets["discriminator"].eval()
    labels = torch.tensor([0, 1, 1])
    batch = {"real": torch.rand(3, 1, 8, 8) * 2 - 1, "labels": labels, "z": torch.randn(3, 4)}
    fake = task.generate(task.nets["generator"], batch).detach()
    loss_d, _ = task.discriminator_loss(d, batch, fake, step=1)
    expected = F.relu(1 - d(batch["real"], labels)).mean() + F.relu(1 + d(fake, labels)).mean()
    assert torch.allclose(loss_d, expected, atol=1e-6)


def labelled_folder(root, classes=("cats", "dogs"), per_class=12):
    rng = np.random.default_rng(0)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 100, (8, 8), dtype=np.uint8) + 150 * i  # classes differ in brightness
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{j}.png")
    return root


def test_folder_classes_survive_save_and_load(tmp_path, small_args):
    data, run = labelled_folder(tmp_path / "pets"), tmp_path / "run"
    assert main(["train", "--data", str(data), "--resolution", "8", "--width", "8", "--batch-size", "8", "--steps", "2",
                 "--conditional", "--out", str(run)]) == 0
    _, config = load_generator(run, "cpu")
    assert config["class_names"] == ["cats", "dogs"] and config["num_classes"] == 2
    by_name, by_index = tmp_path / "dogs.png", tmp_path / "one.png"
    assert main(["sample", str(run), "--class", "dogs", "--n", "4", "--out", str(by_name)]) == 0
    assert main(["sample", str(run), "--class", "1", "--n", "4", "--out", str(by_index)]) == 0
    assert Image.open(by_name).tobytes() == Image.open(by_index).tobytes()
    assert main(["sample", str(run), "--class", "cats", "--n", "4", "--out", str(tmp_path / "cats.png")]) == 0
    assert Image.open(by_name).tobytes() != Image.open(tmp_path / "cats.png").tobytes()


def test_train_sample_augment_round_trip(tmp_path, small_args):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "3", "--conditional", "--sample-every", "3")) == 0
    # the training grid has a row per class: 10 rows of ceil(64 / 10) = 7 images of 8 px
    assert Image.open(run / "samples" / "latest.png").size == (2 + 7 * 10, 2 + 10 * 10)
    assert main(["sample", str(run), "--n", "20", "--out", str(tmp_path / "rows.png")]) == 0
    assert Image.open(tmp_path / "rows.png").size == (2 + 2 * 10, 2 + 10 * 10)
    assert main(["sample", str(run), "--class", "7", "--n", "9", "--out", str(tmp_path / "sevens.png")]) == 0
    assert Image.open(tmp_path / "sevens.png").size == (2 + 3 * 10, 2 + 3 * 10)
    assert main(["interpolate", str(run), "--class", "3", "--seeds", "1,2", "--frames", "4", "--out", str(tmp_path / "w.png")]) == 0

    out = tmp_path / "synthetic"
    assert main(["augment", str(run), "--per-class", "3", "--seed", "5", "--out", str(out)]) == 0
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted([r["file"] for r in rows] + ["augment.json", "manifest.csv"])  # exactly the listed files
    assert len(rows) == 30 and {r["label"] for r in rows} == {str(c) for c in range(10)}
    for r in rows:
        assert r["file"].split("/")[0] == r["class_name"] == r["label"]  # digits: class c is named "c"
        assert Image.open(out / r["file"]).size == (8, 8)
    assert {int(r["seed"]) for r in rows if r["label"] == "2"} == {5 + 2_000_000, 5 + 2_000_001, 5 + 2_000_002}
    record = json.loads((out / "augment.json").read_text())
    weights = (run / "model" / "generator.safetensors").read_bytes()
    assert record["generator_sha256"] == hashlib.sha256(weights).hexdigest() and record["seed"] == 5
    assert not list(tmp_path.glob(".synthetic*"))  # the hidden build folder is gone
    # the same seed gives the same images
    again = tmp_path / "again"
    assert main(["augment", str(run), "--per-class", "3", "--seed", "5", "--out", str(again)]) == 0
    assert (again / rows[0]["file"]).read_bytes() == (out / rows[0]["file"]).read_bytes()
    # truncated latents: other images, and the record says so
    truncated = tmp_path / "truncated"
    assert main(["augment", str(run), "--per-class", "3", "--seed", "5", "--truncation", "0.5", "--out", str(truncated)]) == 0
    assert json.loads((truncated / "augment.json").read_text())["truncation"] == 0.5 and record["truncation"] == 1.0
    assert (truncated / rows[0]["file"]).read_bytes() != (out / rows[0]["file"]).read_bytes()


def test_augment_filter_keeps_only_the_intended_class(tmp_path, small_args, monkeypatch):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "2", "--conditional")) == 0
    asked = {}
    original_generate = synthetic.generate

    def generate(generator, z, labels):
        asked["labels"] = labels
        return original_generate(generator, z, labels)

    def predict_proba(images):  # a classifier that gets every second image wrong
        labels = asked["labels"].clone()
        labels[1::2] = (labels[1::2] + 1) % 10
        return F.one_hot(labels, 10).float()

    fake = SimpleNamespace(name="fake-classifier", predict_proba=predict_proba)
    monkeypatch.setattr(synthetic, "generate", generate)
    monkeypatch.setattr(synthetic, "_classifier", lambda where, model, features: fake)
    out = tmp_path / "filtered"
    assert main(["augment", str(run), "--per-class", "4", "--filter", "--out", str(out)]) == 0
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    for c in range(10):  # only the "right" ones: the first four even offsets of each class's seeds
        assert sorted(int(r["seed"]) for r in rows if r["label"] == str(c)) == [1_000_000 * c + j for j in (0, 2, 4, 6)]
    record = json.loads((out / "augment.json").read_text())
    assert record["filter"]["classifier"] == "fake-classifier"
    assert record["filter"]["acceptance"] == 0.5  # every second image was judged wrong
    assert all(s["kept"] == 4 and s["passed"] * 2 == s["drawn"] for s in record["filter"]["per_class"].values())
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert on_disk == sorted(r["file"] for r in rows)


def test_resume_is_exact_for_a_conditional_run(tmp_path, small_args):
    from safetensors.torch import load_file

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(small_args(straight, "--steps", "6", "--conditional", "--cond-d", "acgan")) == 0
    assert main(small_args(split, "--steps", "3", "--conditional", "--cond-d", "acgan")) == 0
    assert main(small_args(split, "--steps", "6", "--resume")) == 0
    a, b = (load_file(str(run / "checkpoints" / "last.safetensors")) for run in (straight, split))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_conditional_model(tmp_path):
    _, config = load_generator("mnist5k-conditional", "cpu")
    assert config["class_names"] == [str(i) for i in range(10)] and config["max_images"] == 4000
    assert main(["sample", "--model", "mnist5k-conditional", "--class", "7", "--n", "4", "--out", str(tmp_path / "7.png")]) == 0
    assert Image.open(tmp_path / "7.png").size == (2 + 2 * 30, 2 + 2 * 30)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sample", "--model", "mnist5k", "--class", "7"], "--class: mnist5k is an unconditional model"),
        (["sample", "--model", "mnist5k-conditional", "--class", "12"], "has no class '12'"),
        (["sample", "--model", "mnist5k-conditional", "--class", "seven"], "has no class 'seven'"),
        (["interpolate", "--model", "mnist5k-conditional"], "name the class to walk in"),
        (["augment", "--model", "mnist5k", "--per-class", "2", "--out", "x"], "unconditional model cannot make labelled data"),
        (["augment", "--model", "mnist5k-conditional", "--per-class", "0", "--out", "x"], "--per-class"),
        (["augment", "--model", "mnist5k-conditional", "--per-class", "2", "--out", "x", "--features", "f"], "only used with --filter"),
        (["train", "--data", "digits", "--conditional", "--arch", "seed"], "--arch dcgan"),
    ],
)
def test_conditional_user_errors(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_labelled_folder_errors(capsys, tmp_path):
    one = labelled_folder(tmp_path / "one", classes=("cats",))
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(flat / "a.png")
    mixed = labelled_folder(tmp_path / "mixed")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "loose.png")
    for data, needle in ((one, "one class ('cats')"), (flat, "has no labels"), (mixed, "1 image(s)")):
        assert main(["train", "--data", str(data), "--resolution", "8", "--conditional", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "run" / "config.yaml").exists()


def test_augment_refuses_a_non_empty_folder(capsys, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["augment", "--model", "mnist5k-conditional", "--per-class", "1", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--loss", "hinge", "--spectral-norm"],
        ["--loss", "lsgan"],
        ["--loss", "wgan-gp", "--n-critic", "2"],
        ["--r1-gamma", "1", "--r1-every", "1", "--ema-decay", "0.9", "--augment", "color,translation,cutout"],
        ["--cond-d", "acgan", "--loss", "wgan-gp", "--r1-gamma", "1", "--r1-every", "1"],
        ["--cond-d", "acgan", "--spectral-norm", "--loss", "hinge"],
    ],
)
def test_every_loss_and_stabiliser_trains_conditionally(tmp_path, small_args, extra):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "2", "--conditional", *extra)) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) for r in records)
