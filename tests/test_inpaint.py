"""Inpainting: the networks, hole scores against independent references, window-by-window filling, training,
and `ganforge inpaint` on files and folders."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file
from skimage.metrics import structural_similarity

from ganforge.cli import main
from ganforge.classical_inpaint import available_methods, classical_fill, smooth_fill
from ganforge.fill import fill_holes, hole_windows
from ganforge.metrics.inpaint import hole_scores
from ganforge.nets.inpaint import InpaintDiscriminator, InpaintGenerator, build_inpaint_generator
from ganforge.style_losses import gram_matrix, masked_gram_matrix, texture_loss
from ganforge.tasks.inpaint import feature_matching


def test_hole_scores_match_numpy_and_scikit_image():
    rng = np.random.default_rng(0)
    original = rng.random((1, 3, 48, 40))
    filled = np.clip(original + rng.normal(0, 0.1, original.shape), 0, 1)
    mask = np.zeros((1, 1, 48, 40))
    mask[..., 14:30, 12:28] = 1
    hole = np.broadcast_to(mask, original.shape).astype(bool)
    filled[~hole] = original[~hole]
    scores = hole_scores(torch.from_numpy(filled * 2 - 1), torch.from_numpy(original * 2 - 1), torch.from_numpy(mask))
    mse = ((filled - original)[hole] ** 2).mean()
    assert scores["psnr_hole"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
    assert scores["l1_hole"] == pytest.approx(np.abs(filled - original)[hole].mean(), abs=1e-6)
    _, ssim_map = structural_similarity(original[0].transpose(1, 2, 0), filled[0].transpose(1, 2, 0), data_range=1.0,
                                        channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        full=True)
    assert scores["ssim_hole"] == pytest.approx(ssim_map[hole[0].transpose(1, 2, 0)].mean(), abs=2e-3)


def test_a_perfect_fill_scores_perfectly_and_needs_a_hole():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:8, 4:8] = 1
    scores = hole_scores(x, x, mask)
    assert scores["l1_hole"] == 0 and scores["ssim_hole"] == pytest.approx(1) and scores["psnr_hole"] >= 119
    with pytest.raises(ValueError, match="needs a hole"):
        hole_scores(x, x, torch.zeros_like(mask))


@pytest.mark.parametrize("method", available_methods())
def test_classical_fills_change_only_the_hole_and_follow_smooth_images(method):
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([2 * x + y, 3 * y, 100 + x], axis=-1).astype(np.uint8)  # smooth ramps
    mask = np.zeros((64, 64), bool)
    mask[20:36, 24:40] = True
    out = classical_fill(method, image, mask)
    assert np.array_equal(out[~mask], image[~mask])
    assert np.abs(out.astype(int) - image)[mask].mean() < 6  # a ramp is continued, not blanked


def test_ffc_sees_the_whole_image_and_conv_does_not():
    for block, reaches in (("ffc", True), ("conv", False)):
        g = InpaintGenerator(3, 8, 2, 2, block).eval()
        torch.manual_seed(0)
        x = (torch.rand(1, 3, 96, 96) * 2 - 1).requires_grad_(True)
        g(x, torch.zeros(1, 1, 96, 96))[0, :, 0, 0].sum().backward()
        assert bool(x.grad[0, :, -8:, -8:].abs().sum() > 0) == reaches


@pytest.mark.parametrize("prefill", [False, True])
def test_generator_takes_any_size_and_ignores_hole_pixels(prefill):
    g = InpaintGenerator(1, 8, 2, 1, prefill=prefill).eval()
    x = torch.rand(1, 1, 29, 23) * 2 - 1
    mask = torch.zeros(1, 1, 29, 23)
    mask[..., 5:15, 5:15] = 1
    y = g(x, mask)
    assert y.shape == x.shape
    scrambled = torch.where(mask.bool(), torch.rand_like(x), x)
    assert torch.equal(g(scrambled, mask), y)  # what lies under the hole cannot leak into the fill


def test_smooth_fill_keeps_known_pixels_and_solves_for_a_membrane():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 37, 50) * 2 - 1
    mask = (torch.rand(1, 1, 37, 50) > 0.6).float()
    filled = smooth_fill(x, mask)
    assert torch.equal(torch.where(mask.bool(), x, filled), x)  # known pixels exact
    flat = torch.full((1, 3, 37, 50), 0.3)
    assert torch.allclose(smooth_fill(flat, mask), flat, atol=1e-6)  # a flat image stays flat
    # A linear ramp solves Laplace's equation: a hole in it is filled with the ramp (7e-5 away at worst
    # with 20 relaxation steps per level; 0.007 with 5, 0.012 with 1).
    ramp = torch.linspace(-1, 1, 64).expand(1, 1, 64, 64).contiguous()
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 12:52, 20:44] = 1
    assert (smooth_fill(ramp, hole) - ramp).abs().max() < 1e-3


def test_saved_models_without_the_newer_keys_build_as_they_were_trained():
    old = {"channels": 1, "width": 8, "downsamples": 2, "blocks": 1, "net": "conv"}
    g = build_inpaint_generator(old)
    assert not g.prefill and any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    g = build_inpaint_generator({**old, "prefill": "smooth", "upsample": "resize"})
    assert g.prefill and not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    assert sum(isinstance(m, torch.nn.Upsample) for m in g.modules()) == 2


def _small_generator_and_image(height: int, width: int) -> tuple[InpaintGenerator, torch.Tensor]:
    """A small untrained inpainting generator and a noise image (1, 3, height, width), both seeded."""
    torch.manual_seed(0)
    return InpaintGenerator(3, 8, 2, 1).eval(), torch.rand(1, 3, height, width) * 2 - 1


@pytest.mark.parametrize("texture", [False, True])
def test_holes_are_filled_window_by_window_independently_of_layout(texture):
    g, image = _small_generator_and_image(200, 300)
    near = np.zeros((200, 300), bool)
    near[20:40, 20:50] = True
    far = np.zeros((200, 300), bool)
    far[150:170, 240:280] = True
    both = fill_holes(g, image, near | far, context=24, work_size=512, texture=texture)
    assert len(hole_windows(near | far, 24)) == 2
    outside = ~torch.from_numpy(near | far)
    assert torch.equal(both[:, :, outside], image[:, :, outside])
    plain = fill_holes(g, image, near | far, context=24, work_size=512)
    for hole in map(torch.from_numpy, (near, far)):  # each hole's fill is what it gets alone
        alone = fill_holes(g, image, hole.numpy(), context=24, work_size=512, texture=texture)
        assert torch.equal(both[:, :, hole], alone[:, :, hole])
        assert texture == (not torch.equal(both[:, :, hole], plain[:, :, hole]))  # with texture, it is there
    # A larger working size changes nothing for windows that already fit.
    assert torch.equal(fill_holes(g, image, near | far, context=24, work_size=1024, texture=texture), both)


@pytest.mark.parametrize("texture", [False, True])
def test_a_fill_never_depends_on_the_pixels_under_other_holes(texture):
    """Two holes close enough to share a window: what lies under one is gone, so it cannot shape the other's fill."""
    g, image = _small_generator_and_image(120, 120)
    holes = np.zeros((120, 120), bool)
    holes[30:60, 30:60] = True
    holes[64:90, 40:80] = True
    changed = image.clone()
    changed[:, :, 64:90, 40:80] = -image[:, :, 64:90, 40:80]
    first = fill_holes(g, image, holes, context=32, work_size=512, texture=texture)
    second = fill_holes(g, changed, holes, context=32, work_size=512, texture=texture)
    assert torch.equal(first[:, :, 30:60, 30:60], second[:, :, 30:60, 30:60])
    plain = fill_holes(g, image, holes, context=32, work_size=512)
    assert texture == (not torch.equal(first[:, :, 30:60, 30:60], plain[:, :, 30:60, 30:60]))  # texture was added


def test_each_hole_has_its_own_window_with_nearby_holes_masked():
    mask = np.zeros((100, 100), bool)
    mask[10:20, 10:20] = True
    mask[10:20, 24:34] = True  # 4 pixels apart: each lies partly inside the other's window
    mask[60:90, 20:80] = True  # 60 wide: a margin of 30, more than the context
    windows = hole_windows(mask, 8)
    assert [w for w, _ in windows] == [(2, 2, 28, 28), (2, 16, 28, 42), (10, 0, 100, 100)]  # moved inside, not cut
    for (y0, x0, y1, x1), own in windows:
        assert own.shape == (y1 - y0, x1 - x0)
    assert windows[0][1].sum() == 100 and windows[2][1].sum() == 30 * 60
    # The other hole's pixels inside a window are not its own (the generator sees them masked).
    for (y0, x0, y1, x1), own in windows[:2]:
        assert own.sum() == 100 and mask[y0:y1, x0:x1].sum() == 100 + 4 * 10
    # Holes clustered over a large image keep windows of their own size, not one window over the image.
    big = np.zeros((2048, 2048), bool)
    for y, x in [(100, 100), (400, 400), (700, 700), (1000, 1000)]:
        big[y : y + 256, x : x + 256] = True  # each overlaps the next one's window
    assert max(max(y1 - y0, x1 - x0) for (y0, x0, y1, x1), _ in hole_windows(big, 48)) == 512
    # A small hole still gets a window as large as the training crops (2 x context), inside the image.
    small = np.zeros((28, 28), bool)
    small[2:5, 20:24] = True
    assert hole_windows(small, 14)[0][0] == (0, 0, 28, 28)


# ---------------------------------------------------------------------------- training and `ganforge inpaint`
def inpaint_args(data, out, *extra):
    return ["train", "--task", "inpaint", "--data", str(data), "--width", "8", "--blocks", "1", "--patch-size", "32",
            "--batch-size", "4", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def inpaint_run(tmp_path_factory, photo_folder):
    run = tmp_path_factory.mktemp("inp") / "run"
    assert main(inpaint_args(photo_folder, run, "--max-images", "2", "--steps", "4", "--eval-every", "2",
                             "--sample-every", "2", "--feature-matching-weight", "1", "--texture-weight", "1")) == 0
    return run


def test_inpaint_run_trains_scores_and_exports(inpaint_run):
    config = json.loads((inpaint_run / "model" / "config.json").read_text())
    assert (config["task"], config["net"], config["masks"], config["channels"]) == ("inpaint", "ffc", "mixed", 3)
    records = [json.loads(line) for line in (inpaint_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert len(evals) == 2 and all(r["psnr_hole_biharmonic"] > 10 and "psnr_hole" in r for r in evals)
    steps = [r for r in records if "event" not in r]
    assert steps and all(r["texture"] > 0 and r["feature_matching"] > 0 and "l1_hole" in r for r in steps)
    assert Image.open(inpaint_run / "samples" / "latest.png").size[0] > 3 * 32  # input | filled | original


def test_inpaint_resume_is_exact(tmp_path, photo_folder):
    base = inpaint_args(photo_folder, tmp_path / "a", "--eval-every", "0", "--steps", "4")
    assert main(base) == 0
    assert main(inpaint_args(photo_folder, tmp_path / "b", "--eval-every", "0", "--steps", "2")) == 0
    assert main(inpaint_args(photo_folder, tmp_path / "b", "--eval-every", "0", "--steps", "4", "--resume")) == 0
    a, b = (load_file(str(tmp_path / n / "checkpoints" / "last.safetensors")) for n in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _photo(path, mode="RGB", size=(40, 30), exif_rotate=False):
    rng = np.random.default_rng(1)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)
    if exif_rotate:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
        im.save(path, exif=exif)
    else:
        im.save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_only_hole_pixels_change_and_modes_are_kept(tmp_path, inpaint_run, mode):
    src = _photo(tmp_path / "in.png", mode)
    out = tmp_path / "out.png"
    assert main(["inpaint", str(src), "--box", "5,6,12,10", "--box", "30,20,8,8", "--model", str(inpaint_run),
                 "--out", str(out)]) == 0
    before, after = np.asarray(Image.open(src)), np.asarray(Image.open(out))
    assert Image.open(out).mode == mode and after.shape == before.shape
    hole = np.zeros((30, 40), bool)
    hole[6:16, 5:17] = True
    hole[20:28, 30:38] = True
    assert np.array_equal(after[~hole], before[~hole])  # bit-identical outside the holes, alpha included
    if mode == "RGBA":
        assert np.array_equal(after[..., 3], before[..., 3])
    assert not np.array_equal(after[hole], before[hole])


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_texture_changes_only_the_hole_and_keeps_the_mode(tmp_path, mode):
    src = _photo(tmp_path / "in.png", mode, size=(64, 64))
    for name, extra in (("plain.png", []), ("textured.png", ["--texture"])):
        assert main(["inpaint", str(src), "--box", "24,20,20,20", "--out", str(tmp_path / name), *extra]) == 0
    before, plain, textured = (np.asarray(Image.open(tmp_path / n)) for n in ("in.png", "plain.png", "textured.png"))
    assert Image.open(tmp_path / "textured.png").mode == mode
    hole = np.zeros((64, 64), bool)
    hole[20:40, 24:44] = True
    assert np.array_equal(textured[~hole], before[~hole])  # alpha included
    assert not np.array_equal(textured[hole], plain[hole])  # the texture is there


def test_mask_file_any_mode_and_exif_orientation(tmp_path, inpaint_run):
    src = _photo(tmp_path / "in.jpg", exif_rotate=True)  # shown as 30x40 after rotation
    shown = ImageOps.exif_transpose(Image.open(src))
    mask = np.zeros((40, 30), np.uint16)
    mask[10:20, 5:15] = 3  # any non-zero value is a hole, in any mode
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    assert main(["inpaint", str(src), "--mask", str(tmp_path / "m.png"), "--model", str(inpaint_run),
                 "--out", str(out)]) == 0
    after = np.asarray(Image.open(out))
    assert after.shape == (40, 30, 3)
    assert np.array_equal(after[mask == 0], np.asarray(shown)[mask == 0])


def test_a_mask_without_holes_returns_the_image_unchanged(tmp_path, inpaint_run, caplog):
    caplog.set_level(logging.INFO, logger="ganforge")
    src = _photo(tmp_path / "in.png")
    Image.new("L", (40, 30), 0).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    assert main(["inpaint", str(src), "--mask", str(tmp_path / "m.png"), "--model", str(inpaint_run),
                 "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(src)))
    assert "no hole" in caplog.text


@pytest.mark.parametrize("extra, needle", [
    (["--box", "30,20,20,20"], "reaches outside the 40x30 image"),
    (["--box", "1,2,3"], "--box: expected x,y,w,h"),
    (["--box", "0,0,40,30"], "covers the whole image"),
    (["--mask", "{tmp}/small.png"], "the mask is 20x20 but its image is 40x30"),
    (["--mask", "{tmp}/broken.png"], "not a readable mask image"),
    (["--mask", "{tmp}/none.png"], "does not exist"),
    ([], "give the holes as --mask"),
    (["--box", "1,1,2,2", "--model", "superres-x2"], "not an inpainting one"),
    (["--box", "1,1,2,2", "--out", "{tmp}/existing.png"], "exists; add --overwrite"),
])
def test_inpaint_bad_input_is_one_line_and_writes_nothing(tmp_path, inpaint_run, capsys, extra, needle):
    src = _photo(tmp_path / "in.png")
    Image.new("L", (20, 20), 255).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "existing.png").write_bytes(b"keep me")
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir())
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--model" not in args:
        args += ["--model", str(inpaint_run)]
    code = main(["inpaint", str(src), "--out", str(tmp_path / "new.png"), *args] if "--out" not in args
                else ["inpaint", str(src), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()) == before


def test_inpaint_folder_matches_masks_by_stem_and_reports_bad_pairs(tmp_path, inpaint_run):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    (images / "sub").mkdir(parents=True)
    masks.mkdir()
    (masks / "sub").mkdir()
    for name in ("a.png", "b.jpg", "sub/c.png", "nomask.png", "wrong.png"):
        _photo(images / name)
    for name in ("a.png", "b.bmp", "sub/c.png"):
        m = np.zeros((30, 40), np.uint8)
        m[5:15, 5:15] = 255
        Image.fromarray(m).save(masks / name)
    Image.new("L", (10, 10), 255).save(masks / "wrong.png")
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\) that could not be inpainted") as warned:
        assert main(["inpaint", str(images), "--mask", str(masks), "--model", str(inpaint_run), "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png", "sub/c.png"]
    assert "nomask" in str(warned[0].message) and "wrong" in str(warned[0].message)
    first = (out / "a.png").stat().st_mtime_ns
    assert main(["inpaint", str(images), "--mask", str(masks), "--model", str(inpaint_run), "--out", str(out)]) == 0
    assert (out / "a.png").stat().st_mtime_ns == first  # never overwritten without --overwrite


def test_feature_matching_compares_the_discriminators_activations():
    """The mean over D's LeakyReLU outputs of the L1 between filled and original; 0 when they agree."""
    torch.manual_seed(0)
    d = InpaintDiscriminator(3, 8).eval()
    real, filled = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    mask = (torch.rand(2, 1, 32, 32) < 0.3).float()
    x, y = torch.cat([filled, mask], 1), torch.cat([real, mask], 1)
    layers = d.patches.main
    with torch.no_grad():
        first = (layers[:2](x) - layers[:2](y)).abs().mean()  # the first convolution and its LeakyReLU
        last = (layers[:-1](x) - layers[:-1](y)).abs().mean()  # what the final convolution reads
        maps, targets = d.features(filled, mask), d.features(real, mask)
        assert len(maps) == 7 and torch.allclose(d(filled, mask), layers(x).flatten(1))
        assert torch.isclose((maps[0] - targets[0]).abs().mean(), first)
        assert torch.isclose((maps[-1] - targets[-1]).abs().mean(), last)
        expected = torch.stack([(a - b).abs().mean() for a, b in zip(maps, targets)]).mean()
    assert torch.isclose(feature_matching(d, filled, real, mask), expected) and expected > 0
    assert feature_matching(d, real, real, mask) == 0
    filled.requires_grad_(True)
    feature_matching(d, filled, real, mask).backward()
    assert filled.grad.abs().sum() > 0


def test_the_texture_loss_compares_the_holes_gram_matrices():
    """Per image, sum_l w_l ||G_l(fill) - G_l(original)||^2 / ||G_l(original)||^2 over the hole's positions, by hand."""
    rng = np.random.default_rng(0)
    fill, real = rng.normal(size=(2, 4, 8, 6)), rng.normal(size=(2, 4, 8, 6))
    mask = np.zeros((2, 1, 16, 12))
    mask[0, :, 2:10, 4:12] = 1
    mask[1, :, 0:5, 0:3] = 1  # on the 8x6 maps: half of row 2 and of column 1 is hole, a quarter of their corner
    weight = mask.reshape(2, 1, 8, 2, 6, 2).mean(axis=(3, 5))  # area resize by 2
    assert set(np.unique(weight)) == {0, 0.25, 0.5, 1}

    def gram(x):
        flat, w = x.reshape(2, 4, -1), weight.reshape(2, 1, -1)
        return np.einsum("ncp,ndp->ncd", flat * w, flat) / w.sum(axis=(1, 2))[:, None, None]

    as_torch = {"a": torch.from_numpy(fill)}, {"a": torch.from_numpy(real)}
    m = torch.from_numpy(mask)
    assert np.allclose(masked_gram_matrix(as_torch[0]["a"], m).numpy(), gram(fill))
    full = torch.ones(2, 1, 8, 6, dtype=torch.float64)  # the whole map: the plain Gram matrix
    assert torch.allclose(masked_gram_matrix(as_torch[0]["a"], full), gram_matrix(as_torch[0]["a"]))
    relative = ((gram(fill) - gram(real)) ** 2).mean(axis=(1, 2)) / (gram(real) ** 2).mean(axis=(1, 2))
    assert texture_loss(*as_torch, m, {"a": 0.3}).item() == pytest.approx(0.3 * relative.mean())
    assert texture_loss(as_torch[1], as_torch[1], m, {"a": 1.0}) == 0
    shuffled = {"a": as_torch[1]["a"][..., torch.randperm(6)]}  # the same values elsewhere in a full-map hole: 0 too
    assert texture_loss(shuffled, as_torch[1], full, {"a": 1.0}).item() == pytest.approx(0, abs=1e-12)
    moving = as_torch[0]["a"].clone().requires_grad_(True)  # G learns from it: the gradient reaches the fill
    texture_loss({"a": moving}, as_torch[1], m, {"a": 1.0}).backward()
    assert moving.grad.abs().sum() > 0


def test_inpaint_features_without_the_texture_loss_are_refused(tmp_path, refused, photo_folder):
    refused(inpaint_args(photo_folder, tmp_path / "run", "--features", str(tmp_path / "vgg19.pth"), "--steps", "1"),
            "--features: for --task inpaint it is the network of the texture loss", tmp_path)
