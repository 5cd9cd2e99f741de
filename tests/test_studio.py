"""The studio's checks without a browser: what an upload may be, which models a request may name, and what each
handler gives (`ganforge.studio.handlers` is free of Gradio, so it is called directly)."""

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.errors import UserError
from ganforge.studio import uploads
from ganforge.studio.handlers import EVERY_CLASS, Studio


def png_bytes(size=(8, 8), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(path, members: dict[str, bytes], link: str | None = None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_a_zip_of_images_is_extracted_with_its_class_folders(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", {"cats/a.png": png_bytes(), "dogs/b.png": png_bytes(),
                                             "__MACOSX/._a.png": b"resource fork"})
    assert uploads.extract_images(archive, tmp_path / "out") == 2
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "cats/a.png", "dogs/b.png"]


@pytest.mark.parametrize("members, link, needle", [
    ({"../evil.png": png_bytes()}, None, "points outside the archive"),
    ({"/abs/evil.png": png_bytes()}, None, "points outside the archive"),
    ({"a/../../evil.png": png_bytes()}, None, "points outside the archive"),
    ({"C:/evil.png": png_bytes()}, None, "points outside the archive"),
    ({"a.png": png_bytes()}, "b.png", "is a link"),
    ({"notes.txt": b"hello"}, None, "is not an image"),
    ({"fake.png": b"not a png"}, None, r"not an image \(PNG, JPEG"),
    ({"bomb.png": png_bytes((6000, 6000), "L")}, None, "refused"),
    ({"zeros.png": bytes(30 * 2**20)}, None, "is 30 MB; at most 20 MB an image"),
    ({}, None, "holds no files"),
])
def test_a_hostile_zip_is_refused_before_anything_is_written(tmp_path, members, link, needle):
    archive = make_zip(tmp_path / "bad.zip", members, link)
    with pytest.raises(UserError, match=needle):
        uploads.extract_images(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.png").exists()


def test_a_zip_bomb_is_refused_by_its_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_IMAGE_BYTES", 64 * 2**20)
    archive = make_zip(tmp_path / "bomb.zip", {"a.png": bytes(40 * 2**20)})  # 40 MB of zeros in ~40 kB
    with pytest.raises(UserError, match="expands .* times"):
        uploads.extract_images(archive, tmp_path / "out")


def test_an_image_upload_is_checked_by_its_header_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "bomb.png").write_bytes(png_bytes((5000, 5000), "L"))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(UserError, match="refused, 5000x5000 is 25.0 megapixels; the studio takes at most 16.8"):
        uploads.checked_image(tmp_path / "bomb.png")
    assert not decoded
    (tmp_path / "page.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(UserError, match="not an image"):
        uploads.checked_image(tmp_path / "page.svg")


def test_run_names_are_never_paths():
    assert uploads.safe_name("../../etc/passwd", "d") == "etcpasswd"
    assert uploads.safe_name("  /  ", "default") == "default"
    assert uploads.safe_name("my run-1_x", "d") == "myrun-1_x"


@pytest.fixture
def studio(tmp_path, style_model):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "style").symlink_to(style_model)
    return Studio(runs, device="cpu")


@pytest.mark.parametrize("name, needle", [
    ("/etc", "is not one of the studio's models"), ("../runs/style", "is not one of the studio's models"),
    ("superres-x2", "is a superres model, not a generation one"), ("", "choose a model first"),
])
def test_only_offered_models_can_be_named(studio, name, needle):
    with pytest.raises(UserError, match=needle):
        studio.model(name, "generation")


def test_models_are_loaded_once_and_named_as_offered(studio):
    assert studio.choices("style") == ["runs/style"]
    assert studio.choices("generation", conditional=True) == ["mnist5k-conditional"]
    assert studio.model("mnist5k", "generation") is studio.model("mnist5k", "generation")
    assert studio.class_choices("mnist5k") == []
    assert studio.class_choices("mnist5k-conditional") == [EVERY_CLASS, *map(str, range(10))]


def test_generate_and_interpolate_refuse_what_the_page_could_send(studio):
    assert studio.generate("mnist5k-conditional", 0, 20, EVERY_CLASS, 1.0).size == (2 * 28 + 3 * 2, 10 * 28 + 11 * 2)
    with pytest.raises(UserError, match="seed: a whole number"):
        studio.generate("mnist5k", 0.5, 4, None, 1.0)
    with pytest.raises(UserError, match="number of images: must be between 1 and 256"):
        studio.generate("mnist5k", 0, 10_000, None, 1.0)
    with pytest.raises(UserError, match="a walk stays in one class"):
        studio.interpolate("mnist5k-conditional", "1,2", 4, EVERY_CLASS, 1.0)


def test_upscale_caps_the_input_it_multiplies(studio, tmp_path):
    Image.new("RGB", (1100, 1000)).save(tmp_path / "big.png")
    with pytest.raises(UserError, match=r"refused, 1100x1000 is 1.1 megapixels; the studio takes at most 1.0 here"):
        studio.upscale("superres-x2", str(tmp_path / "big.png"))


def test_upscale_with_the_mirror_image_too_is_the_self_ensemble_of_two(studio, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    enlarged, plain = studio.upscale("superres-x2", str(tmp_path / "p.png"))
    _, mirrored = studio.upscale("superres-x2", str(tmp_path / "p.png"), True)
    expected = ganforge.load("superres-x2").upscale(Image.open(tmp_path / "p.png"), self_ensemble=2)
    assert plain.size == mirrored.size == enlarged.size == (40, 48)
    assert np.array_equal(np.asarray(mirrored), np.asarray(expected))
    assert not np.array_equal(np.asarray(mirrored), np.asarray(plain))


def test_inpaint_fills_the_painted_strokes_with_or_without_texture(studio, tmp_path):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.png")
    strokes = np.zeros((64, 64, 4), dtype=np.uint8)
    strokes[20:40, 24:44] = (255, 0, 255, 255)
    Image.fromarray(strokes).save(tmp_path / "strokes.png")
    editor = {"background": str(tmp_path / "p.png"), "layers": [str(tmp_path / "strokes.png")]}
    holes = strokes[..., 3] > 0
    model = ganforge.load("inpaint-photos", device="cpu")
    for texture in (False, True):
        shown = np.asarray(studio.inpaint("inpaint-photos", editor, texture))
        assert np.array_equal(shown, np.asarray(model.inpaint(photo, holes, texture=texture)))
        assert np.array_equal(shown[~holes], np.asarray(photo)[~holes])


def test_a_training_zip_starts_a_run_in_the_runs_folder(studio, tmp_path):
    digits = {f"{c}/{i}.png": png_bytes((8, 8), "L") for c in "ab" for i in range(4)}
    archive = make_zip(tmp_path / "set.zip", digits)
    line = studio.start_training("an uploaded zip of images", str(archive), 2, 8, True, "../zipped")
    assert "training zipped" in line
    studio._training.wait(timeout=120)
    status, grid, losses = studio.training_status()
    assert "finished" in status and grid is not None and losses is not None, status
    assert (studio.runs / "zipped" / "model" / "config.json").exists()
    assert "runs/zipped" in studio.choices("generation", conditional=True)
    with pytest.raises(UserError, match="zipped exists"):
        studio.start_training("digits", None, 2, 8, False, "zipped")


def test_without_gradio_the_studio_is_one_line(tmp_path, refused, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    refused(["studio", "--runs", str(tmp_path)], "pip install ganforge[studio]", tmp_path)


def test_building_the_page_writes_nothing_into_the_package(studio):
    """Gradio writes a .pyi stub beside any module that defines a component class; the studio defines none."""
    from ganforge.studio import app

    package = Path(app.__file__).parents[1]
    before = sorted(package.rglob("*"))
    app.build(studio)
    assert sorted(package.rglob("*")) == before and not list(package.rglob("*.pyi"))


def test_a_run_that_saves_a_newer_model_is_reloaded(studio, small_args):
    run = studio.runs / "fresh"
    assert main(small_args(run, "--steps", "1", "--eval-every", "0")) == 0
    first = studio.model("runs/fresh", "generation")
    assert studio.model("runs/fresh", "generation") is first  # unchanged: kept
    assert main(["train", "--out", str(run), "--steps", "2", "--resume"]) == 0
    second = studio.model("runs/fresh", "generation")
    assert second is not first
    assert not np.array_equal(np.asarray(first.sample(1, seed=0)[0]), np.asarray(second.sample(1, seed=0)[0]))
