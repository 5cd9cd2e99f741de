"""Style transfer by optimisation: the losses against hand computation, the feature networks, what the optimisation
does to an image, and `ganforge stylize` on files and folders."""

import hashlib
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata
from skimage.color import rgb2gray
from skimage.filters import gaussian
from skimage.metrics import structural_similarity

from ganforge.cli import main
from ganforge.nets.style import RANDOM_NAME, random_features, vgg19_style_features
from ganforge.nets.vgg import vgg19_features
from ganforge.pipelines.stylize import RGB_TO_YIQ, stylize_image
from ganforge.style_losses import content_loss, gram_matrix, out_of_range, style_loss, total_variation


# ---------------------------------------------------------------------------------------- losses by hand
def test_gram_matrix_divides_by_the_number_of_positions():
    f = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    # G_ij = sum_p F_ip F_jp / (H W): (1+4+9+16)/4, (0+2+0-4)/4, (0+1+0+1)/4
    assert torch.equal(gram_matrix(f), torch.tensor([[[7.5, -0.5], [-0.5, 0.5]]]))
    # the same texture twice as large has the same Gram matrix
    assert torch.allclose(gram_matrix(torch.cat([f, f], dim=-1)), gram_matrix(f))


def test_style_loss_is_the_weighted_sum_of_gram_mses():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    b = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    targets = {"a": torch.zeros(1, 2, 2), "b": torch.tensor([[[4.0]]])}
    # a: mean(7.5^2, 0.5^2, 0.5^2, 0.5^2) = 57/4 = 14.25, weight 2; b: G = (9+1)/2 = 5, (5-4)^2 = 1, weight 0.5
    assert style_loss({"a": a, "b": b}, targets, {"a": 2.0, "b": 0.5}).item() == pytest.approx(2 * 14.25 + 0.5 * 1)
    assert style_loss({"a": a, "b": b}, targets, {"b": 1.0}).item() == pytest.approx(1.0)  # only the weighted layers


def test_content_loss_is_the_sum_over_layers_of_feature_mses():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    b = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    # a against a + 1: every difference is 1; b against 0: mean(9, 1) = 5
    assert content_loss({"a": a, "b": b, "c": a}, {"a": a + 1, "b": torch.zeros_like(b)}).item() == pytest.approx(6.0)


def test_total_variation_and_out_of_range_by_hand():
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    # vertical |3-0|, |5-1| -> mean 3.5; horizontal |1-0|, |5-3| -> mean 1.5
    assert total_variation(x).item() == pytest.approx(5.0)
    # excess over 1: 0.5, 0, 1, 0 -> mean of squares (0.25 + 1) / 4
    assert out_of_range(torch.tensor([-1.5, 0.5, 2.0, 1.0])).item() == pytest.approx(0.3125)


# ---------------------------------------------------------------------------------------- feature networks
def pattern(size: int = 32) -> torch.Tensor:
    """A fixed colour image in [-1, 1] made by arithmetic alone, the same on every machine."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    return torch.stack([torch.sin(x / 3), torch.cos(y / 5), torch.sin((x + y) / 7)])[None]


def test_builtin_network_is_deterministic_and_pinned():
    a, b = random_features(), random_features()
    assert a.name == RANDOM_NAME == "random-multiscale-v1"
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    x = pattern()
    fa, fb = a(x), b(x)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert set(fa) == set(a.style_layers) | set(a.content_layers)
    assert [f.shape[1:] for f in fa.values()] == [(32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (256, 2, 2)]
    # Pinned: a change in the seeding, the initialisation or the architecture must change RANDOM_NAME and these.
    digest = hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for _, v in sorted(a.state_dict().items())))
    assert digest.hexdigest()[:16] == "bc626934068639ac"
    means = [round(f.mean().item(), 4) for f in fa.values()]
    assert means == pytest.approx([0.4172, 0.3216, 0.3455, 0.2708, 0.2488], abs=2e-4)
    assert not any(p.requires_grad for p in a.parameters()) and not a.training


def test_builtin_network_takes_any_size_from_16_pixels():
    net = random_features()
    for h, w in [(16, 16), (17, 45), (16, 300)]:
        maps = net(torch.zeros(1, 3, h, w))
        assert maps["scale5"].shape[-2:] == (-(-h // 16), -(-w // 16))


def vgg19_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG19 state dict with random weights (plus a classifier, to be ignored)."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    return {**state, "classifier.0.weight": torch.zeros(4, 4)}


class Payload:
    """Unpickling this would run code: a .pth that holds it must be refused, never loaded."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_vgg19_features_from_pth_and_safetensors(tmp_path):
    torch.save(vgg19_state(), tmp_path / "vgg19.pth")
    save_file(vgg19_state(), str(tmp_path / "vgg19.safetensors"))
    a, b = vgg19_style_features(tmp_path / "vgg19.pth"), vgg19_style_features(tmp_path / "vgg19.safetensors")
    assert a.name == "vgg19 (vgg19.pth)" and b.name == "vgg19 (vgg19.safetensors)"
    assert list(a.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert a.content_layers == ("relu4_2",) and sum(a.style_layers.values()) == pytest.approx(1)
    x = pattern()
    fa, fb = a(x), b(x)
    assert [fa[k].shape[1] for k in a.style_layers] == [64, 128, 256, 512, 512] and fa["relu4_2"].shape[1] == 512
    assert all(torch.equal(fa[k], fb[k]) for k in fa) and all((f >= 0).all() for f in fa.values())  # after ReLU
    torch.save({**vgg19_state(), "features.0.weight": torch.zeros(64, 3, 5, 5)}, tmp_path / "wrong.pth")
    torch.save({"features.0.weight": Payload()}, tmp_path / "code.pth")
    for name, needle in (("wrong.pth", "does not hold torchvision VGG19"), ("code.pth", "not a plain state dict"),
                         ("none.pth", "does not exist")):
        with pytest.raises(Exception, match=needle) as e:
            vgg19_style_features(tmp_path / name)
        assert "--features" in str(e.value)


# ---------------------------------------------------------------------------------------- what the optimisation does
def pil(array: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(array).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def blurred_luminance(im: Image.Image) -> np.ndarray:
    return gaussian(rgb2gray(np.asarray(im)), sigma=1.5)


def relative_style_loss(net, im: Image.Image, style: Image.Image) -> float:
    """The style loss of `im` with each layer divided by its target's mean square, as the optimisation weighs it."""
    to = lambda p: torch.from_numpy(np.asarray(p, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]  # noqa: E731
    with torch.no_grad():
        grams = {k: gram_matrix(v) for k, v in net(to(style)).items() if k in net.style_layers}
        weights = {k: w / grams[k].square().mean().item() for k, w in net.style_layers.items()}
        return style_loss(net(to(im)), grams, weights).item()


def test_optimisation_takes_the_style_and_keeps_the_content():
    net = random_features()
    content, other = pil(skdata.chelsea(), (64, 43)), pil(skdata.rocket(), (64, 43))
    style = pil(skdata.gravel(), (64, 64))
    result = stylize_image(net, content, style, size=64, steps=40, progress=False)
    assert result.size == (64, 43) and result.mode == "RGB"
    before, after = relative_style_loss(net, content, style), relative_style_loss(net, result, style)
    kept = structural_similarity(blurred_luminance(result), blurred_luminance(content), data_range=1.0)
    against_other = structural_similarity(blurred_luminance(result), blurred_luminance(other), data_range=1.0)
    print(f"style loss {before:.4f} -> {after:.4f}; SSIM of blurred luminance: content {kept:.3f}, "
          f"another photo {against_other:.3f}")
    assert after < 0.01 * before  # measured: 26.6 -> 0.008
    assert kept > 0.7 and kept > against_other + 0.3  # measured: 0.82 against 0.35


def test_large_results_are_stylised_coarse_to_fine(monkeypatch):
    """Above COARSE_SIDE, each level starts from the one below, enlarged, with content and style at its scale."""
    from ganforge.pipelines import stylize as module

    monkeypatch.setattr(module, "COARSE_SIDE", 32)
    assert module.pyramid_sizes((100, 70)) == [(25, 18), (50, 35), (100, 70)]
    assert module.pyramid_sizes((30, 20)) == [(30, 20)]
    calls, optimise = [], module.optimise

    def spy(objective, start, steps, desc, progress):
        result = optimise(objective, start, steps, desc, progress)
        calls.append((objective.targets, start, result))
        return result

    monkeypatch.setattr(module, "optimise", spy)
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 64, 48) * 2 - 1, torch.rand(1, 3, 40, 40) * 2 - 1
    out = module.stylize_tensor(random_features(), content, style, steps=3, progress=False)
    assert [tuple(start.shape[-2:]) for _, start, _ in calls] == [(32, 24), (64, 48)]
    assert torch.equal(calls[1][1], module.resized(calls[0][2], (64, 48)))  # the fine level starts from the coarse
    assert torch.equal(out, calls[1][2]) and out.shape == content.shape
    coarse_targets = random_features()(module.resized(content, (32, 24)))
    assert all(torch.allclose(calls[0][0][k], coarse_targets[k]) for k in calls[0][0])  # content at its own scale


def test_strength_zero_gives_back_the_content():
    net = random_features()
    content = pil(skdata.chelsea(), (40, 27))
    result = stylize_image(net, content, pil(skdata.gravel(), (32, 32)), size=64, strength=0, progress=False)
    assert np.array_equal(np.asarray(result), np.asarray(content))


def chroma(im: Image.Image) -> np.ndarray:
    """YIQ's I and Q channels on the [-1, 1] scale."""
    rgb = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1)
    return (rgb @ RGB_TO_YIQ.T)[..., 1:].numpy()


def test_preserve_colour_keeps_the_content_chroma():
    net = random_features()
    content = pil(skdata.chelsea(), (48, 32))
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    style = Image.fromarray(colours).resize((48, 48), Image.Resampling.NEAREST)  # saturated colour blocks
    kept = stylize_image(net, content, style, size=48, steps=20, preserve_colour=True, progress=False)
    taken = stylize_image(net, content, style, size=48, steps=20, progress=False)
    drift_kept = np.abs(chroma(kept) - chroma(content)).mean()
    drift_taken = np.abs(chroma(taken) - chroma(content)).mean()
    print(f"mean |chroma change|: kept {drift_kept:.4f}, taken {drift_taken:.4f}")
    # Only the luminance changes, by the same amount in R, G and B, so rounding to 8 bits keeps the chroma too;
    # clamping at black or white alone could move it.
    assert drift_kept < 0.002 and drift_taken > 0.05
    assert np.abs(np.asarray(kept, dtype=float) - np.asarray(content, dtype=float)).mean() > 3  # it was stylised


def test_same_seed_same_image_and_another_seed_another():
    net = random_features()
    content, style = pil(skdata.chelsea(), (32, 21)), pil(skdata.gravel(), (32, 32))
    run = lambda seed: np.asarray(stylize_image(net, content, style, size=32, steps=5, seed=seed, progress=False))  # noqa: E731
    assert np.array_equal(run(3), run(3)) and not np.array_equal(run(3), run(4))


# ---------------------------------------------------------------------------------------- `ganforge stylize`
@pytest.fixture
def images(tmp_path):
    """A content photo, a style texture, and a folder of photos with a subfolder, a broken file and a tiny image."""
    content, style = tmp_path / "cat.png", tmp_path / "gravel.png"
    pil(skdata.chelsea(), (48, 32)).save(content)
    Image.fromarray(skdata.gravel()).resize((48, 48)).save(style)  # greyscale: used as equal-channel RGB
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    pil(skdata.chelsea(), (40, 27)).save(folder / "cat.jpg")
    pil(skdata.rocket(), (36, 24)).convert("RGBA").save(folder / "sub" / "rocket.png")
    (folder / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(folder / "tiny.png")
    return {"content": content, "style": style, "folder": folder}


def stylize_args(source, style, out, *extra):
    return ["stylize", str(source), "--style", str(style), "--out", str(out), "--steps", "3", "--size", "48", *extra]


def test_stylize_file_records_how_it_was_made(tmp_path, images, caplog):
    out = tmp_path / "out.png"
    with caplog.at_level(logging.INFO, logger="ganforge"):
        assert main(stylize_args(images["content"], images["style"], out, "--seed", "7", "--strength", "0.5")) == 0
    assert RANDOM_NAME in caplog.text
    im = Image.open(out)
    assert im.size == (48, 32) and im.mode == "RGB"
    assert {k: im.text[k] for k in ("features", "style", "strength", "steps", "seed")} == {
        "features": RANDOM_NAME, "style": str(images["style"]), "strength": "0.5", "steps": "3", "seed": "7"}
    first = np.asarray(im)
    assert main(stylize_args(images["content"], images["style"], out, "--seed", "7", "--strength", "0.5",
                             "--overwrite")) == 0
    assert np.array_equal(np.asarray(Image.open(out)), first)  # same seed, same image


def test_stylize_keeps_small_images_at_their_size_and_strength_zero_returns_them(tmp_path, images):
    out = tmp_path / "same.png"
    assert main(stylize_args(images["content"], images["style"], out, "--strength", "0", "--size", "512")) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(images["content"])))


def test_stylize_with_a_vgg19_file(tmp_path, images, caplog):
    torch.save(vgg19_state(), tmp_path / "vgg19.pth")
    with caplog.at_level(logging.INFO, logger="ganforge"):
        assert main(stylize_args(images["content"], images["style"], tmp_path / "v.png", "--features",
                                 str(tmp_path / "vgg19.pth"))) == 0
    assert Image.open(tmp_path / "v.png").text["features"] == "vgg19 (vgg19.pth)" and "vgg19 (vgg19.pth)" in caplog.text


def test_stylize_folder(tmp_path, images, recwarn):
    out = tmp_path / "styled"
    assert main(stylize_args(images["folder"], images["style"], out)) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["cat.png", "sub/rocket.png"]
    assert Image.open(out / "sub" / "rocket.png").mode == "RGBA"  # alpha kept
    assert Image.open(out / "cat.png").text["features"] == RANDOM_NAME
    skipped = [str(w.message) for w in recwarn if "skipped" in str(w.message)]
    assert len(skipped) == 1 and "skipped 2 file(s)" in skipped[0] and "broken.png" in skipped[0] and "tiny.png" in skipped[0]
    before = (out / "cat.png").stat().st_mtime_ns
    assert main(stylize_args(images["folder"], images["style"], out, "--seed", "1")) == 0
    assert (out / "cat.png").stat().st_mtime_ns == before  # never overwritten without --overwrite
    assert main(stylize_args(images["folder"], images["style"], out, "--seed", "1", "--overwrite")) == 0
    assert (out / "cat.png").stat().st_mtime_ns != before


@pytest.mark.parametrize("case, needle", [
    ("missing style", "--style: {tmp}/none.png does not exist"),
    ("unreadable style", "--style: {tmp}/junk.png is not a readable image"),
    ("tiny style", "--style: {tmp}/tiny.png is 8x8"),
    ("tiny content", "tiny.png: 8x8 is too small to stylize"),
    ("missing content", "{tmp}/none.png: no such file or folder"),
    ("unreadable content", "junk.png: not a readable image"),
    ("empty folder", "empty: holds no image files"),
    ("huge size", "--size: must be between 16 and 2048"),
    ("negative strength", "--strength: must be 0 or more"),
    ("no steps", "--steps: must be at least 1"),
    ("features of unknown kind", "--features: {tmp}/vgg19.txt is not a VGG19 weights file"),
    ("missing features", "--features: {tmp}/none.pth does not exist"),
    ("features of the wrong shape", "--features: {tmp}/wrong.pth does not hold torchvision VGG19 weights"),
    ("features with code", "--features"),
    ("existing output", "--out: {tmp}/exists.png exists; add --overwrite"),
    ("output folder is the input", "is the input folder"),
])
def test_stylize_bad_input_is_one_line_and_writes_nothing(tmp_path, refused, images, case, needle):
    (tmp_path / "junk.png").write_bytes(b"junk")
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "vgg19.txt").write_text("weights")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    torch.save({"features.0.weight": Payload()}, tmp_path / "code.pth")
    Image.new("RGB", (20, 20)).save(tmp_path / "exists.png")
    content, style, out, extra = images["content"], images["style"], tmp_path / "out.png", []
    if case.endswith("style"):
        style = tmp_path / {"missing style": "none.png", "unreadable style": "junk.png", "tiny style": "tiny.png"}[case]
    elif case in ("tiny content", "missing content", "unreadable content"):
        content = tmp_path / {"tiny content": "tiny.png", "missing content": "none.png", "unreadable content": "junk.png"}[case]
    elif case == "empty folder":
        content, out = tmp_path / "empty", tmp_path / "styled"
    elif case == "output folder is the input":
        content = out = images["folder"]
    elif case == "existing output":
        out = tmp_path / "exists.png"
    else:
        extra = {"huge size": ["--size", "4096"], "negative strength": ["--strength", "-1"], "no steps": ["--steps", "0"],
                 "features of unknown kind": ["--features", str(tmp_path / "vgg19.txt")],
                 "missing features": ["--features", str(tmp_path / "none.pth")],
                 "features of the wrong shape": ["--features", str(tmp_path / "wrong.pth")],
                 "features with code": ["--features", str(tmp_path / "code.pth")]}[case]
    refused(stylize_args(content, style, out, *extra), needle.format(tmp=tmp_path), tmp_path)
