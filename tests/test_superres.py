"""Super-resolution: networks, degradations, tiling, the two-phase run, `upscale` and its evaluation."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.cli import main
from ganforge.data.degrade import bicubic_downsample, bicubic_upsample, degrade, gaussian_blur, quantize
from ganforge.data.photos import extract_patches, load_photos
from ganforge.errors import UserError
from ganforge.nets.sr import PatchDiscriminator, SelfEnsemble, SRGenerator, deepened
from ganforge.tasks.superres import random_dihedral
from ganforge.tiling import upscale_tensor


def trained_like(generator: SRGenerator, seed: int = 0) -> SRGenerator:
    """Random non-zero weights everywhere (a fresh generator's tail is zero, so it would be plain bicubic)."""
    torch.manual_seed(seed)
    for p in generator.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    return generator.eval()


@pytest.mark.parametrize("scale", [2, 4])
def test_generator_shapes_and_bicubic_start(scale):
    g = SRGenerator(scale, 3, width=8, blocks=2)
    x = torch.rand(2, 3, 10, 14) * 2 - 1
    y = g(x)
    assert y.shape == (2, 3, 10 * scale, 14 * scale)
    # Untrained, it is exactly bicubic: training only has to learn the detail.
    assert torch.allclose(y, F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False))
    assert PatchDiscriminator(3, 8)(y).shape[0] == 2


def test_unsupported_scale_is_a_user_error():
    with pytest.raises(Exception, match="--scale: 3"):
        SRGenerator(3)


@pytest.mark.parametrize("scale", [2, 4])
def test_receptive_radius_bounds_the_influence_of_a_pixel(scale):
    g = trained_like(SRGenerator(scale, 3, width=8, blocks=2))
    x = torch.rand(1, 3, 40, 40) * 2 - 1
    bumped = x.clone()
    bumped[:, :, 20, 20] += 1
    with torch.no_grad():
        changed = (g(bumped) - g(x)).abs().amax(dim=1)[0] > 0
    ys, xs = torch.nonzero(changed, as_tuple=True)
    reach = max((ys.float() / scale - 20).abs().max(), (xs.float() / scale - 20).abs().max())
    assert 0 < reach <= g.receptive_radius


@pytest.mark.parametrize("scale,size,tile", [(2, (37, 53), 16), (4, (21, 30), 8), (2, (20, 24), 64)])
def test_tiled_equals_untiled(scale, size, tile):
    g = trained_like(SRGenerator(scale, 3, width=8, blocks=2))
    x = torch.rand(1, 3, *size) * 2 - 1
    with torch.no_grad():
        whole = g(x).clamp(-1, 1)
    tiled = upscale_tensor(g, x, tile=tile, dtype=torch.float32)
    assert (tiled - whole).abs().max() < 1e-4
    as_uint8 = upscale_tensor(g, x, tile=tile)
    assert as_uint8.dtype == torch.uint8 and as_uint8.shape == whole.shape


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th symmetry of the square, written independently of SelfEnsemble's with numpy."""
    a = np.rot90(x.numpy(), k % 4, axes=(-2, -1))
    return torch.from_numpy(np.ascontiguousarray(a[..., ::-1] if k >= 4 else a))


def test_self_ensemble_averages_the_turned_back_outputs_and_is_as_symmetric_as_its_group():
    g = trained_like(SRGenerator(2, 3, width=8, blocks=2))
    x = torch.rand(1, 3, 12, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(SelfEnsemble(g, 1)(x), g(x))
        mirrored = g(x.flip(-1)).flip(-1)
        assert torch.allclose(SelfEnsemble(g, 2)(x), (g(x) + mirrored) / 2, atol=1e-6)
        assert not torch.allclose(mirrored, g(x), atol=1e-3)  # the generator alone is not symmetric
        full = SelfEnsemble(g, 8)
        for k in range(8):  # the average over the whole group commutes with every symmetry (each one turned back right)
            assert torch.allclose(full(dihedral(x, k)), dihedral(full(x), k), atol=1e-5), k
        half = SelfEnsemble(g, 4)  # the photo, its mirror and both upside down: symmetric under those, not quarter turns
        assert torch.allclose(half(x.flip(-2)), half(x).flip(-2), atol=1e-5)
        assert not torch.allclose(half(x.transpose(-1, -2)), half(x).transpose(-1, -2), atol=1e-3)
    with pytest.raises(UserError, match="--self-ensemble: must be one of 1, 2, 4, 8, got 3"):
        SelfEnsemble(g, 3)


@pytest.mark.parametrize("scale,tile", [(2, 16), (4, 8)])
def test_self_ensemble_tiles_without_seams(scale, tile):
    g = SelfEnsemble(trained_like(SRGenerator(scale, 3, width=8, blocks=2)), 8)
    x = torch.rand(1, 3, 21, 30) * 2 - 1
    with torch.no_grad():
        whole = g(x).clamp(-1, 1)
    assert (upscale_tensor(g, x, tile=tile, dtype=torch.float32) - whole).abs().max() < 1e-4


def test_degradations():
    hr = torch.rand(3, 3, 32, 32) * 2 - 1
    lr = bicubic_downsample(hr, 4)
    assert lr.shape == (3, 3, 8, 8) and torch.equal(lr, quantize(lr))
    constant = torch.full((2, 3, 16, 16), 0.25)
    assert torch.allclose(gaussian_blur(constant, torch.tensor([0.5, 2.0])), constant, atol=1e-6)
    a = degrade(hr, 2, "realistic", torch.Generator().manual_seed(1))
    b = degrade(hr, 2, "realistic", torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a, bicubic_downsample(hr, 2))


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_baseline_is_pil_bicubic(scale):
    """The baseline called bicubic is MATLAB's/PIL's (a = -0.5), not PyTorch's default a = -0.75 upscale."""
    lr = torch.rand(1, 3, 13, 22, generator=torch.Generator().manual_seed(scale)) * 2 - 0.5  # some values beyond [-1, 1]
    up = bicubic_upsample(lr, scale)
    assert up.shape == (1, 3, 13 * scale, 22 * scale)
    for c in range(3):
        pil = Image.fromarray(lr[0, c].numpy()).resize((22 * scale, 13 * scale), Image.Resampling.BICUBIC)
        expected = torch.from_numpy(np.array(pil)).clamp(-1, 1)
        assert (up[0, c] - expected).abs().max() < 1e-5  # a = -0.75 is 0.1-0.2 away here


def test_dihedral_keeps_pixels():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = random_dihedral(x, torch.Generator().manual_seed(0))
    for a, b in zip(x, y):
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)


def test_patches_and_embedded_photos():
    train, held = load_photos("photos")
    assert len(train) >= 10 and len(held) == 4 and all(p.shape[0] == 3 and p.dtype == np.uint8 for p in train + held)
    assert len(train) == 18 and not any(np.array_equal(t, h) for t in train for h in held if t.shape == h.shape)
    few, held_few = load_photos("photos", max_images=3)  # --max-images: the first 3 training photos
    assert all(np.array_equal(f, t) for f, t in zip(few, train[:3], strict=False)) and len(few) == 3
    # The first 14 are the set the inpaint-photos recipe (max_images: 14) and the first SR models trained on.
    first14 = [t.shape for t in load_photos("photos", max_images=14)[0]]
    assert first14[0] == (3, 512, 512) and first14[-1] == (3, 427, 640) and len(first14) == 14
    assert all(np.array_equal(a, b) for a, b in zip(held_few, held, strict=True))  # held-out photos stay held out
    patches = extract_patches(train[:2], 96, max_patches=50)
    assert patches.shape[1:] == (3, 96, 96) and 2 <= len(patches) <= 50
    with pytest.raises(Exception, match="--patch-size"), pytest.warns(UserWarning, match="smaller than"):
        extract_patches([np.zeros((3, 20, 20), np.uint8)], 32)


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory, photo_folder):
    run = tmp_path_factory.mktemp("sr") / "run"
    args = ["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--max-images", "2",
            "--width", "8", "--blocks", "1", "--patch-size", "32", "--batch-size", "4", "--steps", "6",
            "--fidelity-steps", "3", "--checkpoint-every", "100", "--sample-every", "3", "--eval-every", "3",
            "--out", str(run)]
    assert main(args) == 0
    return run


def test_two_phase_run_keeps_both_models(sr_run):
    fidelity = json.loads((sr_run / "model-fidelity" / "config.json").read_text())
    gan = json.loads((sr_run / "model" / "config.json").read_text())
    assert (fidelity["variant"], fidelity["steps"], gan["variant"], gan["steps"]) == ("fidelity", 3, "gan", 6)
    records = [json.loads(line) for line in (sr_run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "event" not in r]
    assert all("loss_d" not in r for r in train_records if r["step"] <= 3)  # phase 1: L1 only, no D
    assert all("loss_d" in r and "l1" in r for r in train_records if r["step"] > 3)
    evals = [r for r in records if r.get("event") == "eval"]
    assert len(evals) == 2 and all(r["psnr_y_bicubic"] > 10 for r in evals)  # scored on the held-out photo
    assert Image.open(sr_run / "samples" / "latest.png").size[0] > 3 * 32


@pytest.mark.parametrize("pixel_loss", ["l1", "l2"])
def test_pixel_loss_is_the_mean_absolute_or_squared_error(pixel_loss):
    from ganforge.config import TrainConfig
    from ganforge.tasks.superres import SuperResTask

    cfg = TrainConfig.from_dict({"task": "superres", "scale": 2, "width": 8, "blocks": 1, "pixel_loss": pixel_loss})
    task = SuperResTask(cfg, torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), fidelity_steps=10)
    fake, real = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).unbind(0)
    loss, stats = task.generator_loss(None, {"real": real[None]}, fake[None], step=0)
    error = fake.numpy().astype(np.float64) - real.numpy()
    expected = np.abs(error).mean() if pixel_loss == "l1" else (error**2).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-6) and list(stats) == [pixel_loss]


def test_superres_resume_is_exact(tmp_path, photo_folder):
    base = ["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--width", "8", "--blocks", "1",
            "--patch-size", "32", "--batch-size", "4", "--fidelity-steps", "2", "--eval-every", "0"]
    assert main([*base, "--steps", "5", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--steps", "3", "--out", str(tmp_path / "b")]) == 0
    assert main([*base, "--steps", "5", "--out", str(tmp_path / "b"), "--resume"]) == 0
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / n / "checkpoints" / "last.safetensors")) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_learning_rate_follows_a_half_cosine_and_an_interrupted_run_resumes_exactly(tmp_path, photo_folder, monkeypatch):
    from safetensors.torch import load_file

    from ganforge.training.trainer import Trainer, learning_rate_factor

    assert [learning_rate_factor("cosine", s, 8) for s in (0, 2, 4, 6)] == pytest.approx(
        [1, 0.5 + 0.5 * np.sqrt(0.5), 0.5, 0.5 - 0.5 * np.sqrt(0.5)])
    assert learning_rate_factor("none", 5, 8) == 1
    base = ["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--width", "8", "--blocks", "1",
            "--patch-size", "32", "--batch-size", "4", "--fidelity-steps", "6", "--eval-every", "0", "--steps", "6",
            "--lr", "0.001", "--lr-decay", "cosine", "--checkpoint-every", "2"]
    rates, real_step = [], Trainer.train_step

    def recording_step(self, step):
        figures = real_step(self, step)
        rates.append(self.opt_g.param_groups[0]["lr"])
        return figures

    monkeypatch.setattr(Trainer, "train_step", recording_step)
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert rates == pytest.approx([0.001 * learning_rate_factor("cosine", s, 6) for s in range(6)])

    def killed_at_step_3(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(Trainer, "train_step", killed_at_step_3)
    assert main([*base, "--out", str(tmp_path / "b")]) != 0
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main([*base, "--out", str(tmp_path / "b"), "--resume"]) == 0  # from the checkpoint of step 2
    a, b = (load_file(str(tmp_path / n / "checkpoints" / "last.safetensors")) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_upscale_modes_and_exif(tmp_path, sr_run):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cases = {
        "rgb.png": (Image.fromarray(rgb), "RGB", (60, 40)),
        "grey.png": (Image.fromarray(rgb[..., 0]), "L", (60, 40)),
        "alpha.png": (Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)]), "RGBA"), "RGBA", (60, 40)),
        "deep.png": (Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), "L", (60, 40)),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(rgb).save(tmp_path / "turned.jpg", exif=exif)
    for name, (im, *_rest) in cases.items():
        im.save(tmp_path / name)
    for name, (_, mode, size) in cases.items():
        out = tmp_path / f"out_{name}"
        assert main(["upscale", str(tmp_path / name), "--model", str(sr_run), "--out", str(out)]) == 0
        result = Image.open(out)
        assert (result.mode, result.size) == (mode, size), name
    assert main(["upscale", str(tmp_path / "rgb.png"), "--model", str(sr_run), "--variant", "gan", "--tile", "16",
                 "--out", str(tmp_path / "gan.png")]) == 0
    assert main(["upscale", str(tmp_path / "turned.jpg"), "--model", str(sr_run), "--out", str(tmp_path / "t.png")]) == 0
    assert Image.open(tmp_path / "t.png").size == (40, 60)  # EXIF orientation applied before upscaling
    alpha = np.asarray(Image.open(tmp_path / "out_alpha.png"))[..., 3]
    assert abs(int(alpha.mean()) - 128) <= 1
    assert main(["upscale", str(tmp_path / "rgb.png"), "--model", str(sr_run), "--self-ensemble", "8",
                 "--out", str(tmp_path / "ensemble.png")]) == 0
    plain, ensemble = (np.asarray(Image.open(tmp_path / n), dtype=float) for n in ("out_rgb.png", "ensemble.png"))
    assert 0 < np.abs(ensemble - plain).mean() < 8  # the same model, averaged over its 8 orientations


def test_upscale_folder_skips_bad_files(tmp_path, sr_run, photo_folder):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.open(photo_folder / "p0.png").save(src / "sub" / "a.png")
    Image.open(photo_folder / "p1.png").save(src / "b.jpg")
    (src / "broken.png").write_bytes(b"no image here")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(src / "tiny.png")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="skipped 2 file"):
        assert main(["upscale", str(src), "--model", str(sr_run), "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["b.png", "sub/a.png"]
    assert Image.open(out / "sub" / "a.png").size == (160, 128)
    before = (out / "b.png").stat().st_mtime_ns
    with pytest.warns(UserWarning, match="skipped 2 file"):  # a repeat keeps what exists, and reports again
        assert main(["upscale", str(src), "--model", str(sr_run), "--out", str(out)]) == 0
    assert (out / "b.png").stat().st_mtime_ns == before


def test_upscale_folder_keeps_inputs_that_differ_only_in_suffix(tmp_path, sr_run, caplog):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    sizes = {"a.jpg": (20, 16), "a.png": (24, 16), "a.jpg.png": (28, 16), "b.png": (32, 16)}  # told apart by width
    for name, size in sizes.items():
        Image.fromarray(np.full((size[1], size[0], 3), 100, np.uint8)).save(src / name)
    with caplog.at_level("INFO", logger="ganforge"):
        assert main(["upscale", str(src), "--model", str(sr_run), "--out", str(out)]) == 0
    # a.jpg and a.png keep their suffix; a.jpg.png's own a.jpg.png is then taken, so it keeps its suffix too.
    expected = {"a.jpg.png": "a.jpg", "a.png.png": "a.png", "a.jpg.png.png": "a.jpg.png", "b.png": "b.png"}
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for output, source in expected.items():
        assert Image.open(out / output).size == (2 * sizes[source][0], 2 * sizes[source][1]), output
    assert "3 input(s) differ from another only in suffix" in caplog.text and "a.jpg -> a.jpg.png" in caplog.text
    assert "already existed" not in caplog.text


def test_progress_bars_count_tiles_and_photos(tmp_path, sr_run, photo_folder, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(np.full((24, 40, 3), 100, np.uint8)).save(image)
    assert main(["upscale", str(image), "--model", str(sr_run), "--tile", "16", "--out", str(tmp_path / "a.png")]) == 0
    assert "| 6/6 [" in capsys.readouterr().err  # 3 x 2 tiles of 16 pixels
    assert main(["upscale", str(image), "--model", str(sr_run), "--out", str(tmp_path / "b.png")]) == 0
    assert "upscaling" not in capsys.readouterr().err  # one tile: no bar
    assert main(["evaluate", str(sr_run), "--data", str(photo_folder), "--out", str(tmp_path / "e.json")]) == 0
    assert "| 6/6 [" in capsys.readouterr().err  # 2 models x 3 photos


@pytest.mark.parametrize("extra,needle", [
    (["--scale", "4"], "--scale: the model in"),
    (["--out", "NOTADIR/x.png"], "--out: cannot create"),
    (["--variant", "gan", "--model", "FIDELITY"], "--variant: "),
])
def test_upscale_errors(tmp_path, sr_run, capsys, extra, needle):
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    (tmp_path / "NOTADIR").write_text("a file, not a folder")
    extra = [{"FIDELITY": str(sr_run / "model-fidelity"), "NOTADIR/x.png": str(tmp_path / "NOTADIR" / "x.png")}.get(e, e)
             for e in extra]
    args = ["upscale", str(image), *extra]
    if "--model" not in extra:
        args += ["--model", str(sr_run)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_upscale_refuses_a_self_ensemble_that_is_not_a_group(tmp_path, sr_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(tmp_path / "in.png"), "--model", str(sr_run), "--self-ensemble", "3"])
    assert exit_.value.code == 2
    assert "argument --self-ensemble: invalid choice: 3" in capsys.readouterr().err.strip().splitlines()[-1]


def test_models_of_one_task_are_refused_by_another(tmp_path, sr_run, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert main(["upscale", str(image), "--model", "mnist5k"]) == 2
    assert "not a super-resolution one" in capsys.readouterr().err
    assert main(["sample", str(sr_run), "--out", str(tmp_path / "s.png")]) == 2
    assert "ganforge upscale" in capsys.readouterr().err


def test_upscale_refuses_bad_inputs(tmp_path, sr_run, capsys):
    (tmp_path / "junk.png").write_bytes(b"junk")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "exists.png").write_bytes(b"keep me")
    for args, needle in ((["junk.png"], "junk.png: not a readable image"), (["tiny.png"], "too small"),
                         (["missing.png"], "no such file"), (["ok.png", "--out", "exists.png"], "--overwrite")):
        args = [str(tmp_path / a) if a.endswith(".png") else a for a in args]
        assert main(["upscale", *args, "--model", str(sr_run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert (tmp_path / "exists.png").read_bytes() == b"keep me"


def test_evaluate_superres_reports_bicubic_and_both_models(sr_run, photo_folder, capsys):
    assert main(["evaluate", str(sr_run)]) == 0  # the run's held-out photo
    report = json.loads((sr_run / "evaluation.json").read_text())
    assert set(report["scores"]) == {"bicubic", "fidelity", "gan"} and report["photos"] == 1
    assert "| bicubic |" in capsys.readouterr().out
    assert main(["evaluate", str(sr_run / "model-fidelity"), "--data", str(photo_folder),
                 "--out", str(sr_run / "e2.json")]) == 0
    report = json.loads((sr_run / "e2.json").read_text())
    assert report["photos"] == 3 and set(report["scores"]) == {"bicubic", "fidelity"}
    assert report["scores"]["fidelity"]["psnr_y"] > 15


def vgg19_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG19 state dict (random weights, plus a classifier to be ignored)."""
    from ganforge.nets.vgg import vgg19_features

    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    return {**state, "classifier.0.weight": torch.zeros(4, 4)}


def test_perceptual_loss_loads_torchvision_layout(tmp_path):
    from safetensors.torch import save_file

    from ganforge.nets.vgg import PerceptualLoss

    torch.save(vgg19_state(), tmp_path / "vgg19.pth")
    save_file(vgg19_state(), str(tmp_path / "vgg19.safetensors"))
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = PerceptualLoss(tmp_path / "vgg19.pth"), PerceptualLoss(tmp_path / "vgg19.safetensors")
    assert a(x, x).item() == 0 and a(x, y).item() > 0
    assert torch.allclose(a(x, y), b(x, y))
    assert not any(p.requires_grad for p in a.parameters()) and not a.train().training
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    for name, needle in (("wrong.pth", "does not hold torchvision VGG19"), ("junk.pth", "cannot read"), ("none.pth", "does not exist")):
        with pytest.raises(Exception, match=needle):
            PerceptualLoss(tmp_path / name)


def test_adversarial_phase_with_perceptual_loss(tmp_path, photo_folder):
    torch.save(vgg19_state(), tmp_path / "vgg19.pth")
    run = tmp_path / "run"
    assert main(["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--width", "8", "--blocks", "1",
                 "--patch-size", "32", "--batch-size", "2", "--steps", "3", "--fidelity-steps", "1", "--eval-every", "0",
                 "--perceptual-weights", str(tmp_path / "vgg19.pth"), "--log-every", "1", "--out", str(run)]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "perceptual" in records[-1] and "perceptual" not in records[0]


def test_resume_may_move_the_end_of_the_fidelity_phase_only_before_it(tmp_path, photo_folder, capsys):
    run = tmp_path / "run"
    base = ["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--width", "8", "--blocks", "1",
            "--patch-size", "32", "--batch-size", "2", "--eval-every", "0", "--out", str(run)]
    assert main([*base, "--steps", "2", "--fidelity-steps", "3"]) == 0
    assert main([*base, "--steps", "4", "--fidelity-steps", "4", "--resume"]) == 0  # moved while inside the phase
    assert main([*base, "--steps", "6", "--fidelity-steps", "5", "--resume"]) == 0  # at its end, before any D step
    assert json.loads((run / "model-fidelity" / "config.json").read_text())["steps"] == 5
    assert main([*base, "--steps", "7", "--fidelity-steps", "7", "--resume"]) == 2
    assert "--fidelity-steps: the run is at step 6" in capsys.readouterr().err


def test_init_generator_fine_tunes_a_saved_model(tmp_path, sr_run, photo_folder, capsys):
    from safetensors.torch import load_file

    run = tmp_path / "tuned"
    args = ["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--width", "8", "--blocks", "1",
            "--patch-size", "32", "--batch-size", "2", "--steps", "1", "--fidelity-steps", "0", "--eval-every", "0",
            "--lr", "1e-9", "--ema-decay", "0", "--out"]
    assert main([*args, str(run), "--init-generator", str(sr_run / "model-fidelity")]) == 0
    start, tuned = (load_file(str(p / "generator.safetensors")) for p in (sr_run / "model-fidelity", run / "model"))
    assert all(torch.allclose(start[k], tuned[k], atol=1e-6) for k in start)
    assert main([*args, str(tmp_path / "bad"), "--init-generator", "superres-x4"]) == 2
    err = capsys.readouterr().err
    assert "--init-generator: superres-x4 has another architecture" in err and "scale 4 vs 2" in err


@pytest.mark.parametrize("scale", [2, 4])
def test_a_deepened_generator_computes_what_the_shallow_one_did_and_then_learns(scale):
    shallow = trained_like(SRGenerator(scale, 3, 8, 2))
    torch.manual_seed(1)
    deep = SRGenerator(scale, 3, 8, 5)
    deep.load_state_dict(deepened(shallow.state_dict(), deep.state_dict(), 2))
    x = torch.rand(2, 3, 11, 9) * 2 - 1
    assert torch.equal(deep(x), shallow(x))
    assert torch.equal(deep.body[5].weight, shallow.body[2].weight)  # the body's last convolution, moved
    # the new blocks are identities that can learn: their first convolutions as built, gradients reach both
    assert deep.body[3].body[0].weight.abs().sum() > 0 and deep.body[3].body[2].weight.abs().sum() == 0
    deep(x).square().mean().backward()
    assert deep.body[3].body[2].weight.grad.abs().sum() > 0


def test_init_generator_deepens_a_model_with_fewer_blocks_and_refuses_more(tmp_path, sr_run, photo_folder, capsys):
    from safetensors.torch import load_file

    args = ["train", "--task", "superres", "--scale", "2", "--data", str(photo_folder), "--width", "8",
            "--patch-size", "32", "--batch-size", "2", "--steps", "1", "--fidelity-steps", "0", "--eval-every", "0",
            "--lr", "1e-9", "--ema-decay", "0", "--init-generator", str(sr_run / "model-fidelity"), "--out"]
    assert main([*args, str(tmp_path / "deep"), "--blocks", "3"]) == 0
    start, deep = (load_file(str(p / "generator.safetensors")) for p in (sr_run / "model-fidelity", tmp_path / "deep" / "model"))
    assert torch.allclose(start["body.1.weight"], deep["body.3.weight"], atol=1e-6)
    assert deep["body.2.body.2.weight"].abs().max() < 1e-6  # a new block, still (almost) the identity
    capsys.readouterr()
    shallower = [*args[:-3], "--init-generator", str(tmp_path / "deep"), "--blocks", "2", "--out", str(tmp_path / "shallow")]
    assert main(shallower) == 2
    assert "has another architecture than this run (blocks 3 vs 2)" in capsys.readouterr().err
    assert not (tmp_path / "shallow").exists()


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_models_upscale_without_naming_a_model(tmp_path, scale):
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(image)
    for variant in ("fidelity", "gan"):
        out = tmp_path / f"{variant}.png"
        assert main(["upscale", str(image), "--scale", str(scale), "--variant", variant, "--out", str(out)]) == 0
        assert Image.open(out).size == (10 * scale, 12 * scale)
