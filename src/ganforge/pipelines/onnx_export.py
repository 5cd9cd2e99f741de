"""`ganforge export MODEL --format onnx`: a saved model's network as one `.onnx` file, and a JSON sidecar that says
what its inputs and outputs mean.

The network is exported with PyTorch's `torch.export`-based ONNX exporter (the only one that
writes the FFT of the inpainting networks' Fourier convolutions, as ONNX's DFT), with dynamic
batch and, where the network allows it, dynamic height and width:

- generators: `z` (N, latent_dim) standard normal (apply truncation before, as `ganforge.latent` does) and, for a
  class-conditional one, `label` (N,) int64 class indices -> `output` (N, C, R, R);
- super-resolution: `image` (N, 3, h, w), any h and w -> (N, 3, s*h, s*w);
- inpainting: `image` (N, C, H, W) and `mask` (N, 1, H, W), 1 = hole -> the whole image predicted; keep the
  known pixels and take the holes from it. H and W are multiples of 2**downsamples; a network that starts from
  the smooth fill (`inpaint-photos`) runs a pyramid whose depth depends on the size, so it is exported at its
  training resolution only;
- fast style networks and translators: `image` (N, 3 (+ noise channels), H, W), H and W multiples of 4 -> (N, 3, H, W).

Every image is float32 NCHW in [-1, 1], as inside ganforge; outputs are clamped to [-1, 1] in the graph, as
ganforge's own inference clamps them. After writing, the file is run once with onnxruntime on the example
inputs and compared with PyTorch; the largest difference is recorded in the sidecar.
"""

import contextlib
import importlib
import importlib.util
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganforge import __version__
from ganforge.atomic import atomic_path
from ganforge.errors import UserError
from ganforge.imageio import check_writable
from ganforge.latent import latents

log = logging.getLogger("ganforge")
FORMATS = ("onnx",)
OPSET = 18
NEEDS = ("onnx", "onnxscript", "onnxruntime")  # the `[onnx]` extra: the exporter needs the first two, the check the last
MAX_SIDE = 8192  # the largest height or width the dynamic shapes allow
TOLERANCE = 1e-4  # the largest |onnxruntime - PyTorch| accepted on the example inputs
IMAGE_RANGE = "float32 NCHW in [-1, 1] (pixel = (value + 1) * 127.5)"
PREPROCESS = ("an 8-bit image (H, W, C) becomes an input as value = pixel / 127.5 - 1, transposed to (1, C, H, W); "
              "greyscale is C = 1, colour C = 3 (RGB, no alpha)")
POSTPROCESS = ("an output becomes 8-bit images as pixel = round((value + 1) * 127.5) clipped to 0..255, transposed "
               "to (N, H, W, C); C = 1 is greyscale, C = 3 RGB")


class Clamped(nn.Module):
    """A network whose output ganforge clamps to [-1, 1] at inference (super-resolution, fast style), clamped in the
    graph too, so the ONNX file gives exactly what ganforge shows."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image).clamp(-1, 1)


@dataclass
class ExportPlan:
    """What is exported: the module, example inputs, their dynamic shapes, and the sidecar's description."""

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic: dict[str, dict[int, object]]
    description: dict


def check_onnx_installed() -> None:
    """One line naming the missing package of the `[onnx]` extra."""
    for name in NEEDS:
        if importlib.util.find_spec(name) is None:
            raise UserError(f"--format onnx: the Python package {name!r} is not installed; "
                            "install the extra with `pip install ganforge[onnx]`")


def _batch():
    return torch.export.Dim("batch", min=1, max=4096)


def _sides(multiple: int, least: int) -> tuple[object, object]:
    """Dynamic height and width that are multiples of `multiple` and at least `least`."""
    if multiple == 1:
        return (torch.export.Dim("height", min=least, max=MAX_SIDE), torch.export.Dim("width", min=least, max=MAX_SIDE))
    low = -(-least // multiple)
    return (multiple * torch.export.Dim("height_blocks", min=low, max=MAX_SIDE // multiple),
            multiple * torch.export.Dim("width_blocks", min=low, max=MAX_SIDE // multiple))


def _image_input(name: str, channels: int, meaning: str, size: str) -> dict:
    return {"name": name, "shape": ["batch", channels, "height", "width"], "dtype": "float32", "range": [-1, 1],
            "layout": "NCHW", "channels": channels, "meaning": meaning, "size": size}


def _image_output(shape: list, channels: int, meaning: str) -> dict:
    return {"name": "output", "shape": shape, "dtype": "float32", "range": [-1, 1], "layout": "NCHW",
            "channels": channels, "meaning": meaning}


def plan_generator(net: nn.Module, config: dict) -> ExportPlan:
    latent_dim, classes = config["latent_dim"], config.get("num_classes")
    inputs = {"z": latents([0, 1], latent_dim)}
    batch = _batch()
    dynamic = {"z": {0: batch}}
    described = [{"name": "z", "shape": ["batch", latent_dim], "dtype": "float32",
                  "meaning": "latent noise, standard normal; ganforge draws seed s as torch.randn(latent_dim, "
                             "generator=torch.Generator().manual_seed(s)) and applies truncation to it first"}]
    if classes:
        inputs["label"] = torch.tensor([0, 1 % classes])
        dynamic["label"] = {0: batch}
        described.append({"name": "label", "shape": ["batch"], "dtype": "int64", "range": [0, classes - 1],
                          "meaning": "class index of each image", "class_names": config["class_names"]})
    res, channels = config["resolution"], config["channels"]
    output = _image_output(["batch", channels, res, res], channels, "the generated images, " + IMAGE_RANGE)
    return ExportPlan(net, inputs, dynamic, {"inputs": described, "outputs": [output]})


def plan_superres(net: nn.Module, config: dict) -> ExportPlan:
    scale = config["scale"]
    height, width = _sides(1, 4)
    image = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    output = _image_output(["batch", 3, f"{scale}*height", f"{scale}*width"], 3,
                           f"the image upscaled x{scale}, " + IMAGE_RANGE)
    return ExportPlan(Clamped(net), {"image": image}, {"image": {0: _batch(), 2: height, 3: width}},
                      {"scale": scale, "outputs": [output], "inputs": [_image_input(
                          "image", 3, "the low-resolution RGB image, " + IMAGE_RANGE + " (ganforge runs large images "
                          "tile by tile with a margin; this network takes the whole image at once)",
                          "any height and width of at least 4")]})


def plan_inpaint(net: nn.Module, config: dict) -> ExportPlan:
    channels, multiple = config["channels"], net.multiple
    fixed = net.prefill  # the smooth fill's pyramid depth depends on the size: see the module's docstring
    side = config["resolution"] if fixed else 4 * multiple
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, channels, side, side, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, side, side)
    mask[:, :, side // 4 : side // 2, side // 3 : 2 * side // 3] = 1
    if fixed:
        dynamic = {"image": {0: _batch()}, "mask": {0: _batch()}}
        size = f"exactly {side}x{side} (the network starts from a smooth fill whose pyramid depends on the size)"
    else:
        height, width = _sides(multiple, 4 * multiple)
        batch = _batch()
        dynamic = {"image": {0: batch, 2: height, 3: width}, "mask": {0: batch, 2: height, 3: width}}
        size = f"height and width multiples of {multiple}, at least {4 * multiple} (pad, e.g. by reflection, and crop)"
    inputs = [_image_input("image", channels, "the image, " + IMAGE_RANGE + "; the pixels under the mask are ignored",
                           size),
              {"name": "mask", "shape": ["batch", 1, "height", "width"], "dtype": "float32", "range": [0, 1],
               "meaning": "1 where the image has a hole to fill, 0 elsewhere", "size": "the image's"}]
    output = _image_output(["batch", channels, "height", "width"], channels,
                           "the whole image as the network predicts it; keep the known pixels and take only the holes "
                           "from it, as ganforge does, " + IMAGE_RANGE)
    return ExportPlan(net, {"image": image, "mask": mask}, dynamic,
                      {"inputs": inputs, "outputs": [output], "size_multiple": 1 if fixed else multiple,
                       "fixed_size": [side, side] if fixed else None})


def plan_image_to_image(net: nn.Module, config: dict, what: str) -> ExportPlan:
    """A fast style network or one direction of a translator (both `FastStyleNet`)."""
    noise = net.noise_channels
    height, width = _sides(4, 16)
    image = torch.rand(2, 3 + noise, 32, 36, generator=torch.Generator().manual_seed(0)) * 2 - 1
    size = "height and width multiples of 4, at least 16 (pad by replication and crop, as ganforge does)"
    meaning = "the RGB image, " + IMAGE_RANGE
    if noise:
        meaning += (f"; then {noise} channels of standard normal noise (ganforge draws them with torch.randn(1, "
                    f"{noise}, H, W, generator=torch.Generator().manual_seed(0)))")
    output = _image_output(["batch", 3, "height", "width"], 3, f"the image {what}, " + IMAGE_RANGE)
    return ExportPlan(Clamped(net), {"image": image}, {"image": {0: _batch(), 2: height, 3: width}},
                      {"inputs": [_image_input("image", 3 + noise, meaning, size)], "outputs": [output],
                       "size_multiple": 4, "noise_channels": noise, "tileable": net.tileable})


def export_onnx(config: dict, plan: ExportPlan, out: str | Path, model_name: str, overwrite: bool = False) -> Path:
    """Write `plan.module` to `out` (.onnx) and `out`.json, both atomically; check it with onnxruntime first.
    An existing file is replaced only with `overwrite`, as every command's output is."""
    check_onnx_installed()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out: {out} must end in .onnx")
    check_writable(out, "--out")
    sidecar = out.with_name(out.name + ".json")
    existing = [p for p in (out, sidecar) if p.exists()]
    if existing and not overwrite:
        raise UserError(f"--out: {existing[0]} already exists (--overwrite replaces it)")
    module = plan.module.eval()
    names = list(plan.inputs)
    log.info("exporting %s to ONNX (opset %d)", model_name, OPSET)
    with atomic_path(out) as tmp:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(module, tuple(plan.inputs.values()), str(tmp), dynamo=True, verbose=False, input_names=names,
                              output_names=["output"], dynamic_shapes=tuple(plan.dynamic[name] for name in names), opset_version=OPSET,
                              external_data=False)
        difference = _onnxruntime_difference(tmp, module, plan.inputs)
        if not difference <= TOLERANCE:
            raise RuntimeError(f"the ONNX file of {model_name} differs from PyTorch by {difference:.3g} "
                               f"(more than {TOLERANCE}): an exporter bug")
        record = {"format": "onnx", "opset": OPSET, "file": out.name, "model": str(model_name),
                  "task": config.get("task", "generation"), **plan.description,
                  "preprocess": PREPROCESS, "postprocess": POSTPROCESS,
                  "checked": {"onnxruntime": importlib.import_module("onnxruntime").__version__,
                              "max_abs_difference_from_pytorch": difference},
                  "config": config, "ganforge_version": __version__, "torch": str(torch.__version__)}
        with atomic_path(sidecar) as tmp_json:
            tmp_json.write_text(json.dumps(record, indent=2))
    return out


def _onnxruntime_difference(path: Path, module: nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """The largest |onnxruntime - PyTorch| of the file at `path` on `inputs`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: x.numpy() for name, x in inputs.items()})[0]
    with torch.no_grad():
        want = module(*inputs.values()).numpy()
    return float(np.abs(got - want).max())


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter and its optimiser log every pass at INFO level and warn about their own deprecations; ganforge
    says one line instead."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript",
                                                    "onnx_ir", "torch.fx.experimental.symbolic_shapes")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
