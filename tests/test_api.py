"""The Python API (`ganforge.load`): a model object by kind, whose results are exactly what the command line writes."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import api
from ganforge.cli import main
from ganforge.errors import UserError


def pixels_of(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).resize((40, 30), Image.Resampling.BICUBIC).save(path)
    return path


@pytest.mark.parametrize("where, kind", [
    ("mnist5k", api.Generator), ("mnist5k-conditional", api.ConditionalGenerator), ("superres-x4", api.Upscaler),
    ("superres-x2-gan", api.Upscaler), ("inpaint-digits", api.Inpainter), ("inpaint-photos", api.Inpainter),
])
def test_a_shipped_name_loads_as_what_it_is(where, kind):
    model = ganforge.load(where, device="cpu")
    assert type(model) is kind and model.where == where


def test_run_and_model_folders_load_as_what_they_are(style_model, translate_model, tmp_path, small_args):
    assert type(ganforge.load(style_model)) is api.Stylizer
    assert type(ganforge.load(translate_model)) is api.Translator
    assert main(small_args(tmp_path / "run", "--steps", "2")) == 0
    run, folder = ganforge.load(tmp_path / "run"), ganforge.load(tmp_path / "run" / "model")
    assert type(run) is api.Generator and run.resolution == 8
    assert torch.equal(run.sample(3, as_tensor=True), folder.sample(3, as_tensor=True))


def test_sample_is_what_ganforge_sample_writes(tmp_path):
    g = ganforge.load("mnist5k", device="cpu")
    assert main(["sample", "--model", "mnist5k", "--n", "3", "--seed", "4", "--out", str(tmp_path / "pngs")]) == 0
    images = g.sample(3, seed=4)
    assert all(isinstance(im, Image.Image) and im.size == (28, 28) for im in images)
    for i, im in enumerate(images):
        assert np.array_equal(np.asarray(im), pixels_of(tmp_path / "pngs" / f"seed{4 + i:06d}.png"))
    # image i comes from seed `seed + i` alone, and the tensor is the PIL image before rounding
    assert np.array_equal(np.asarray(g.sample(1, seed=6)[0]), np.asarray(images[2]))
    tensors = g.sample(3, seed=4, as_tensor=True)
    assert tensors.shape == (3, 1, 28, 28) and tensors.dtype == torch.float32
    assert np.abs((tensors[2, 0].numpy() + 1) * 127.5 - np.asarray(images[2])).max() <= 0.5 + 1e-4


def test_class_samples_grids_and_walks_are_the_commands(tmp_path):
    g = ganforge.load("mnist5k-conditional", device="cpu")
    assert g.class_names == [str(c) for c in range(10)]
    assert main(["sample", "--model", "mnist5k-conditional", "--class", "7", "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert np.array_equal(np.asarray(g.grid(4, class_name="7")), pixels_of(tmp_path / "s.png"))
    assert main(["sample", "--model", "mnist5k-conditional", "--n", "20", "--out", str(tmp_path / "all.png")]) == 0
    assert np.array_equal(np.asarray(g.grid(20)), pixels_of(tmp_path / "all.png"))  # a row per class
    assert main(["interpolate", "--model", "mnist5k-conditional", "--class", "3", "--seeds", "1,2,3", "--frames", "4",
                 "--out", str(tmp_path / "walk.png")]) == 0
    assert np.array_equal(np.asarray(g.interpolation_grid([1, 2, 3], 4, class_name=3)), pixels_of(tmp_path / "walk.png"))
    assert len(g.interpolate([1, 2, 3], 4, class_name="3")) == 8
    with pytest.raises(UserError, match="name the class to walk in"):
        g.interpolate([1, 2], 4)
    with pytest.raises(UserError, match="has no class 'x'"):
        g.sample(2, class_name="x")


def test_augment_writes_the_data_set_the_command_writes(tmp_path):
    g = ganforge.load("mnist5k-conditional", device="cpu")
    out = g.augment(tmp_path / "api", per_class=2, seed=3)
    assert main(["augment", "--model", "mnist5k-conditional", "--per-class", "2", "--seed", "3",
                 "--out", str(tmp_path / "cli")]) == 0
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 20 and rows == list(csv.DictReader((tmp_path / "cli" / "manifest.csv").open()))
    with pytest.raises(AttributeError):
        ganforge.load("mnist5k").augment  # an unconditional generator has no labels to give


def test_upscale_is_what_ganforge_upscale_writes(tmp_path, photo):
    up = ganforge.load("superres-x2", device="cpu")
    assert main(["upscale", str(photo), "--model", "superres-x2", "--out", str(tmp_path / "x2.png")]) == 0
    result = up.upscale(Image.open(photo))
    assert result.size == (80, 60) and np.array_equal(np.asarray(result), pixels_of(tmp_path / "x2.png"))
    assert np.array_equal(np.asarray(up.upscale(photo, tile=16)), np.asarray(result))  # a path, and tiles: the same
    tensor = up.upscale(photo, as_tensor=True)
    assert tensor.shape == (3, 60, 80) and torch.equal(((tensor + 1) * 127.5).round().byte().permute(1, 2, 0),
                                                        torch.from_numpy(np.array(result)))


def test_inpaint_takes_an_array_or_a_mask_image_and_is_the_command(tmp_path):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8))
    image.save(tmp_path / "d.png")
    model = ganforge.load("inpaint-digits", device="cpu")
    holes = np.zeros((28, 28), dtype=bool)
    holes[7:21, 7:21] = True
    filled = model.inpaint(image, holes)
    assert main(["inpaint", str(tmp_path / "d.png"), "--box", "7,7,14,14", "--model", "inpaint-digits",
                 "--out", str(tmp_path / "f.png")]) == 0
    assert np.array_equal(np.asarray(filled), pixels_of(tmp_path / "f.png"))
    assert np.array_equal(np.asarray(filled)[~holes], np.asarray(image)[~holes])  # only the hole changes
    assert not np.array_equal(np.asarray(filled)[holes], np.asarray(image)[holes])
    Image.fromarray(holes.astype(np.uint8) * 255).save(tmp_path / "m.png")
    assert np.array_equal(np.asarray(model.inpaint(tmp_path / "d.png", tmp_path / "m.png")), np.asarray(filled))


def test_stylize_and_translate_are_the_commands(tmp_path, photo, style_model, translate_model):
    assert main(["stylize", str(photo), "--model", str(style_model), "--out", str(tmp_path / "s.png")]) == 0
    styled = ganforge.load(style_model).stylize(photo)
    assert styled.size == (40, 30) and np.array_equal(np.asarray(styled), pixels_of(tmp_path / "s.png"))
    translator = ganforge.load(translate_model)
    for direction in ("a2b", "b2a"):
        assert main(["translate", str(translate_model), str(photo), "--direction", direction,
                     "--out", str(tmp_path / f"{direction}.png")]) == 0
        assert np.array_equal(np.asarray(translator.translate(photo, direction)),
                              pixels_of(tmp_path / f"{direction}.png"))
    assert not np.array_equal(np.asarray(translator.translate(photo, "a2b")), np.asarray(translator.translate(photo, "b2a")))


def test_style_transfer_by_optimisation_is_the_command(tmp_path, photo):
    style = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(style)
    assert main(["stylize", str(photo), "--style", str(style), "--size", "32", "--steps", "3",
                 "--out", str(tmp_path / "o.png")]) == 0
    result = ganforge.stylize(photo, style, size=32, steps=3)
    assert result.size == (32, 24) and np.array_equal(np.asarray(result), pixels_of(tmp_path / "o.png"))


def test_list_models_offers_shipped_ones_then_saved_runs(tmp_path, small_args, style_model):
    (tmp_path / "runs").mkdir()
    assert main(small_args(tmp_path / "runs" / "digits", "--steps", "1")) == 0
    (tmp_path / "runs" / "empty").mkdir()  # not a run: left out
    found = {info.name: info for info in ganforge.list_models(tmp_path / "runs")}
    assert found["mnist5k-conditional"].class_names == tuple(str(c) for c in range(10))
    assert found["superres-x4"].task == "superres" and found["runs/digits"].task == "generation"
    assert "runs/empty" not in found and len(found) == 9


@pytest.mark.parametrize("where, needle", [("no-such-model", "no such run directory, model folder or shipped model"),
                                           ("{tmp}", "not a run directory or a saved model")])
def test_what_is_not_a_model_is_a_user_error(tmp_path, where, needle):
    with pytest.raises(UserError, match=needle):
        ganforge.load(where.format(tmp=tmp_path))


def test_import_ganforge_is_cheap_and_load_is_there():
    assert ganforge.load is api.load and ganforge.stylize is api.stylize and ganforge.list_models is api.list_models
    with pytest.raises(AttributeError):
        ganforge.no_such_thing


def test_inpaint_with_texture_is_the_command_with_texture(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    holes = np.zeros((64, 64), dtype=bool)
    holes[20:40, 24:44] = True
    model = ganforge.load("inpaint-photos", device="cpu")
    textured = np.asarray(model.inpaint(tmp_path / "p.png", holes, texture=True))
    assert main(["inpaint", str(tmp_path / "p.png"), "--box", "24,20,20,20", "--texture", "--out",
                 str(tmp_path / "t.png")]) == 0
    assert np.array_equal(textured, pixels_of(tmp_path / "t.png"))
    assert np.array_equal(textured[~holes], pixels_of(tmp_path / "p.png")[~holes])
    assert not np.array_equal(textured, np.asarray(model.inpaint(tmp_path / "p.png", holes)))  # the texture is added
