"""`ganforge export --format onnx`: for every kind of network, onnxruntime gives what PyTorch gives, on inputs and
sizes other than the ones the file was exported with, and the sidecar says how to make those inputs."""

import importlib.util
import json

import numpy as np
import onnxruntime as ort  # the [onnx] extra, which scripts/install.sh installs: these tests always run
import pytest
import torch

import ganforge
from ganforge.cli import main
from ganforge.nets.inpaint import build_inpaint_generator


def run_onnx(path, **inputs) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: np.ascontiguousarray(x) for name, x in inputs.items()})[0]


def pixels(shape, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_a_conditional_generator_gives_the_apis_samples(tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert main(["export", "mnist5k-conditional", "--format", "onnx", "--out", str(out)]) == 0
    assert "g.onnx.json" in capsys.readouterr().out
    sidecar = json.loads((tmp_path / "g.onnx.json").read_text())
    assert [i["name"] for i in sidecar["inputs"]] == ["z", "label"] and sidecar["inputs"][1]["range"] == [0, 9]
    assert sidecar["checked"]["max_abs_difference_from_pytorch"] < 1e-4 and "127.5" in sidecar["postprocess"]
    # The sidecar's recipe for z (seed s: torch.randn(latent_dim) from manual_seed(s)), at a batch size of its own
    z = np.stack([torch.randn(100, generator=torch.Generator().manual_seed(s)).numpy() for s in (5, 6, 7)])
    got = run_onnx(out, z=z, label=np.array([3, 3, 3]))
    want = ganforge.load("mnist5k-conditional", device="cpu").sample(3, seed=5, class_name="3", as_tensor=True)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    assert got.std() > 0.3  # images, not a constant


def test_an_unconditional_generator_has_only_z(tmp_path):
    model = ganforge.load("mnist5k", device="cpu")
    out = model.export(tmp_path / "g.onnx")
    assert [i["name"] for i in json.loads((tmp_path / "g.onnx.json").read_text())["inputs"]] == ["z"]
    z = np.stack([torch.randn(100, generator=torch.Generator().manual_seed(s)).numpy() for s in (0, 1)])
    np.testing.assert_allclose(run_onnx(out, z=z), model.sample(2, seed=0, as_tensor=True).numpy(), atol=1e-4)


def test_superres_takes_any_size(tmp_path):
    model = ganforge.load("superres-x2", device="cpu")
    out = model.export(tmp_path / "sr.onnx")
    assert json.loads((tmp_path / "sr.onnx.json").read_text())["scale"] == 2
    for shape in [(1, 3, 13, 17), (2, 3, 40, 9)]:  # neither is the exported example's 20x24
        x = pixels(shape, 1)
        got = run_onnx(out, image=x.numpy())
        with torch.no_grad():
            want = model.net(x).clamp(-1, 1)
        assert got.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


@pytest.mark.parametrize("prefill", [False, True])
def test_inpainting_fills_like_pytorch(tmp_path, random_model, prefill):
    config = {"task": "inpaint", "channels": 3, "resolution": 32, "width": 4, "downsamples": 2, "blocks": 1,
              "net": "ffc", "upsample": "resize", **({"prefill": "smooth"} if prefill else {})}
    net = random_model(tmp_path / "model", config, build_inpaint_generator)
    out = ganforge.load(tmp_path / "model", device="cpu").export(tmp_path / "i.onnx")
    sidecar = json.loads((tmp_path / "i.onnx.json").read_text())
    size = (32, 32) if prefill else (24, 40)  # a smooth-fill network is exported at its training size only
    assert sidecar["fixed_size"] == ([32, 32] if prefill else None)
    image, mask = pixels((2, 3, *size), 2), torch.zeros(2, 1, *size)
    mask[:, :, 5:15, 8:20] = 1
    got = run_onnx(out, image=image.numpy(), mask=mask.numpy())
    with torch.no_grad():
        want = net(image, mask)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_a_fast_style_network_with_noise_inputs(tmp_path, style_model):
    model = ganforge.load(style_model, device="cpu")
    out, net = model.export(tmp_path / "s.onnx"), model.net
    assert json.loads((tmp_path / "s.onnx.json").read_text())["noise_channels"] == 2
    x = pixels((1, 5, 20, 28), 3)
    with torch.no_grad():
        want = net(x).clamp(-1, 1)
    np.testing.assert_allclose(run_onnx(out, image=x.numpy()), want.numpy(), atol=1e-4)


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_each_direction_of_a_translator(tmp_path, translate_model, direction):
    out = tmp_path / f"{direction}.onnx"
    assert main(["export", str(translate_model), "--direction", direction, "--out", str(out)]) == 0
    x = pixels((1, 3, 24, 36), 4)
    with torch.no_grad():
        want = ganforge.load(translate_model, device="cpu").nets[direction](x).clamp(-1, 1)
    np.testing.assert_allclose(run_onnx(out, image=x.numpy()), want.numpy(), atol=1e-4)


def test_without_the_extra_it_is_one_line(tmp_path, refused, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    refused(["export", "mnist5k", "--out", str(tmp_path / "g.onnx")], "pip install ganforge[onnx]", tmp_path)


@pytest.mark.parametrize("args, needle", [
    (["--format", "tflite"], "--format: 'tflite' is not one of onnx"),
    (["--direction", "b2a"], "--direction: mnist5k is not a translator"),
    (["--out", "g.png"], "must end in .onnx"),
])
def test_bad_options_are_one_line(tmp_path, refused, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    refused(["export", "mnist5k", *args], needle, tmp_path)


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path, refused):
    out = tmp_path / "g.onnx"
    assert main(["export", "mnist5k", "--out", str(out)]) == 0
    refused(["export", "mnist5k", "--out", str(out)], "already exists (--overwrite replaces it)", tmp_path)
    out.with_name("g.onnx.json").write_text("{}")
    assert main(["export", "mnist5k", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.with_name("g.onnx.json").read_text())["model"] == "mnist5k"
