"""ganforge's Python API: load a model by name or path, then ask it for what it can do.

```python
import ganforge
g = ganforge.load("mnist5k")                  # a shipped name, a run folder or an exported model folder
images = g.sample(16, seed=0)                 # 16 PIL images; image i from seed 0 + i
up = ganforge.load("superres-x4").upscale(Image.open("photo.jpg"))
```

`load` returns one object per kind of model: `Generator` (and `ConditionalGenerator`, which
also takes a class and writes labelled data sets), `Upscaler`, `Inpainter`, `Stylizer` (a fast
style network) and `Translator` (a CycleGAN). Each holds its network, loaded once, and its
config; every method takes PIL images (or image files) and returns PIL images, or with
`as_tensor=True` float32 tensors (C, H, W) in [-1, 1] (a batch (N, C, H, W) for samples).
The studio calls these methods, and they call the same pipeline functions that `ganforge
sample`, `upscale`, `inpaint`, ... are built on, so each result is the one the command line
gives. Optimisation-based style transfer needs no model: `stylize(image, style)`.
"""

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ganforge.device import pick_device
from ganforge.errors import UserError
from ganforge.imageio import make_grid, pil_to_uint8, to_pil, uint8_to_float
from ganforge.nets.sr import SelfEnsemble
from ganforge.nets.style import load_style_features
from ganforge.nets.translate import DIRECTIONS
from ganforge.pipelines import onnx_export
from ganforge.pipelines.fast_stylize import image_through_network, load_style_model
from ganforge.pipelines.image_files import read_image
from ganforge.pipelines.inpainting import WORK_SIZE, check_work_size, fill_image, load_inpainter, mask_pixels
from ganforge.pipelines.sampling import load_generator, resolve_class, sample_images, walk_images
from ganforge.pipelines.stylize import DEFAULT_SIZE, DEFAULT_STEPS, check_options, stylize_image
from ganforge.pipelines.synthetic_data import write_synthetic_set
from ganforge.pipelines.translation import check_direction, load_translators, translate_image
from ganforge.pipelines.upscaling import check_tile, load_upscaler, pick_model, upscale_image
from ganforge.saved_model import read_config, resolve_model, shipped_models

ImageLike = Image.Image | str | Path  # an image, or the path of an image file


def _image(image: ImageLike) -> Image.Image:
    """A PIL image as given, or an image file decoded (EXIF orientation applied), with a bad file as a UserError."""
    if isinstance(image, Image.Image):
        return image
    return read_image(Path(image))


def _pils(images: torch.Tensor) -> list[Image.Image]:
    return [to_pil(image) for image in images]


def _returned(im: Image.Image, as_tensor: bool) -> Image.Image | torch.Tensor:
    """A result as the PIL image, or as float32 (C, H, W) in [-1, 1] (alpha, where kept, is the last channel)."""
    if not as_tensor:
        return im
    return uint8_to_float(torch.from_numpy(pil_to_uint8(im).copy()))


class Model:
    """What every loaded model has: its network (in eval mode), its config, where it came from, and `export`."""

    task = ""

    def __init__(self, where: str | Path, net: torch.nn.Module, config: dict, device: torch.device):
        self.where, self.net, self.config, self.device = str(where), net, config, device

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"

    def _export_plan(self) -> onnx_export.ExportPlan:
        raise NotImplementedError

    def export(self, out: str | Path, format: str = "onnx", overwrite: bool = False) -> Path:
        """Write the network as an ONNX file `out` and `out`.json, the sidecar that says what its inputs and outputs
        mean (see `ganforge.pipelines.onnx_export`); needs the `[onnx]` extra. Existing files are replaced only with
        `overwrite`. Returns `out`."""
        return self._write_export(out, format, self._export_plan, overwrite)

    def _write_export(self, out: str | Path, format: str, plan: Callable[[], onnx_export.ExportPlan],
                      overwrite: bool) -> Path:
        if format not in onnx_export.FORMATS:
            raise UserError(f"--format: {format!r} is not one of {', '.join(onnx_export.FORMATS)}")
        return onnx_export.export_onnx(self.config, plan(), out, self.where, overwrite)

    def _cpu_net(self, net: torch.nn.Module | None = None) -> torch.nn.Module:
        """The network (or another of the model's) on the CPU, where it is exported (a copy when it runs elsewhere)."""
        net = self.net if net is None else net
        return net if self.device.type == "cpu" else copy.deepcopy(net).cpu()


class Generator(Model):
    """A generator of images from noise (`ganforge train`, the shipped `mnist5k`): seeded samples and latent walks."""

    task = "generation"

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    def sample(self, n: int = 16, seed: int = 0, truncation: float = 1.0, class_name: str | int | None = None,
               as_tensor: bool = False) -> list[Image.Image] | torch.Tensor:
        """`n` images; image i from seed `seed + i`, so any image can be made again from its seed alone.

        `truncation` < 1 is BigGAN's truncation trick (less variety, on a good generator cleaner images).
        With `as_tensor`, one float32 tensor (N, C, H, W) in [-1, 1] instead of PIL images.
        A class-conditional generator takes `class_name` (a name or an index); without one it makes every
        class: ceil(n / classes) seeds each, class by class (the rows of `ganforge sample`'s grid).
        """
        images, _ = sample_images(self.net, self.config, n, seed, resolve_class(self.config, class_name, self.where),
                                  truncation)
        return images if as_tensor else _pils(images)

    def grid(self, n: int = 16, seed: int = 0, truncation: float = 1.0,
             class_name: str | int | None = None) -> Image.Image:
        """`sample`'s images as the one grid `ganforge sample --out grid.png` writes."""
        images, cols = sample_images(self.net, self.config, n, seed, resolve_class(self.config, class_name, self.where),
                                     truncation)
        return to_pil(make_grid(images, nrow=cols))

    def interpolate(self, seeds: list[int], frames: int = 8, truncation: float = 1.0,
                    class_name: str | int | None = None, as_tensor: bool = False) -> list[Image.Image] | torch.Tensor:
        """A slerp walk through the latents of `seeds`: `frames` images per leg, (len(seeds) - 1) * frames in all.

        A class-conditional generator walks within one class, `class_name`.
        """
        images = walk_images(self.net, self.config, list(seeds), frames,
                             resolve_class(self.config, class_name, self.where), truncation, self.where)
        return images if as_tensor else _pils(images)

    def interpolation_grid(self, seeds: list[int], frames: int = 8, truncation: float = 1.0,
                           class_name: str | int | None = None) -> Image.Image:
        """`interpolate`'s frames as the grid `ganforge interpolate --out walk.png` writes: a row per leg."""
        return to_pil(make_grid(self.interpolate(seeds, frames, truncation, class_name, as_tensor=True), nrow=frames))

    def _export_plan(self) -> onnx_export.ExportPlan:
        return onnx_export.plan_generator(self._cpu_net(), self.config)


class ConditionalGenerator(Generator):
    """A class-conditional generator (`train --conditional`, the shipped `mnist5k-conditional`)."""

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    def augment(self, out: str | Path, per_class: int, seed: int = 0, filter: bool = False,
                features: str | Path | None = None, truncation: float = 1.0) -> Path:
        """Write a labelled synthetic data set into the new folder `out`, as `ganforge augment` does:
        CLASS/*.png, manifest.csv and augment.json; image j of class c from seed `seed + 1000000 c + j`.

        `filter` keeps only images that the domain classifier assigns to their class (`features`: its folder).
        """
        return write_synthetic_set(self.net, self.config, self.where, out, per_class, seed, filter,
                                   None if features is None else str(features), truncation=truncation)


class Upscaler(Model):
    """A super-resolution model (`train --task superres`, the shipped `superres-x2`, `superres-x4`, and `-gan`)."""

    task = "superres"

    @property
    def scale(self) -> int:
        return self.config["scale"]

    def upscale(self, image: ImageLike, tile: int = 256, as_tensor: bool = False,
                self_ensemble: int = 1) -> Image.Image | torch.Tensor:
        """`image` `scale` times wider and taller: colour through the network, greyscale back to greyscale, alpha
        by bicubic. Large images are run `tile` x `tile` pixels at a time, with no seams (any tile gives the same).
        `self_ensemble` (2, 4, 8) averages the network over that many flips/rotations: more PSNR, that many
        times the time."""
        check_tile(tile)
        return _returned(upscale_image(SelfEnsemble(self.net, self_ensemble), _image(image), tile), as_tensor)

    def _export_plan(self) -> onnx_export.ExportPlan:
        return onnx_export.plan_superres(self._cpu_net(), self.config)


class Inpainter(Model):
    """An inpainting model (`train --task inpaint`, the shipped `inpaint-digits` and `inpaint-photos`)."""

    task = "inpaint"

    def inpaint(self, image: ImageLike, mask: ImageLike | np.ndarray, work_size: int = WORK_SIZE,
                as_tensor: bool = False, texture: bool = False) -> Image.Image | torch.Tensor:
        """`image` with its holes filled; every pixel outside them is returned exactly as given.

        `mask`: a boolean array (H, W), True in the holes, or a mask image of the image's size whose non-zero
        pixels are holes (with an alpha channel: its visible non-black pixels). A hole's window larger than
        `work_size` is filled at that size and scaled back. `texture`: quilt the known pixels' detail into
        each fill (`ganforge inpaint --texture`).
        """
        image = _image(image)
        holes = np.asarray(mask, dtype=bool) if isinstance(mask, np.ndarray) else mask_pixels(_image(mask))
        check_work_size(work_size)
        return _returned(fill_image(self.net, self.config, image, holes, work_size, texture=texture),
                        as_tensor)

    def _export_plan(self) -> onnx_export.ExportPlan:
        return onnx_export.plan_inpaint(self._cpu_net(), self.config)


class Stylizer(Model):
    """A fast style network (`train --task style`): one pass paints a photo in the style it learned."""

    task = "style"

    def stylize(self, image: ImageLike, as_tensor: bool = False) -> Image.Image | torch.Tensor:
        """`image` in the learned style, at its own size (RGB; an alpha channel is kept)."""
        return _returned(image_through_network(self.net, _image(image), self.device), as_tensor)

    def _export_plan(self) -> onnx_export.ExportPlan:
        return onnx_export.plan_image_to_image(self._cpu_net(), self.config, "in the learned style")


class Translator(Model):
    """A CycleGAN (`train --task translate`): images of collection A made to look like collection B, and back."""

    task = "translate"

    def __init__(self, where: str | Path, nets: dict[str, torch.nn.Module], config: dict, device: torch.device):
        super().__init__(where, nets["a2b"], config, device)
        self.nets = nets

    def translate(self, image: ImageLike, direction: str = "a2b", as_tensor: bool = False) -> Image.Image | torch.Tensor:
        """`image` translated from collection A (`--data`) to B (`--data-b`) with "a2b", or back with "b2a"."""
        return _returned(translate_image(self._net_of(direction), _image(image), self.device), as_tensor)

    def export(self, out: str | Path, format: str = "onnx", overwrite: bool = False, direction: str = "a2b") -> Path:
        """`Model.export` of one direction's generator."""
        net = self._cpu_net(self._net_of(direction))
        return self._write_export(out, format, lambda: onnx_export.plan_image_to_image(
            net, self.config, f"translated {direction[0].upper()} to {direction[-1].upper()}"), overwrite)

    def _net_of(self, direction: str) -> torch.nn.Module:
        check_direction(direction)
        return self.nets[direction]


def load(name_or_path: str | Path, device: str | None = None) -> Model:
    """The model of a shipped name (`mnist5k`, `superres-x4`, ...), a run folder or an exported model folder.

    A super-resolution run gives its fidelity model (name the run's `model/` folder for the GAN one).
    `device`: "cpu", "cuda", "cuda:1", "mps"; None picks CUDA, then MPS, then the CPU.
    """
    torch_device = pick_device(device or "auto")
    where = str(name_or_path)
    task = read_config(resolve_model(where)).get("task", "generation")
    if task == "generation":
        net, config = load_generator(where, str(torch_device))
        return (ConditionalGenerator if config.get("num_classes") else Generator)(where, net, config, torch_device)
    if task == "superres":
        net, config = load_upscaler(pick_model(where, None, None), None, str(torch_device))
        return Upscaler(where, net, config, torch_device)
    if task == "inpaint":
        net, config = load_inpainter(where, str(torch_device))
        return Inpainter(where, net, config, torch_device)
    if task == "style":
        net, config = load_style_model(where)
        return Stylizer(where, net.to(torch_device), config, torch_device)
    if task == "translate":
        pair, config = load_translators(where)
        pair.to(torch_device)
        return Translator(where, {direction: pair.direction(direction) for direction in DIRECTIONS}, config, torch_device)
    raise UserError(f"{where}: a {task!r} model, which this version of ganforge cannot run")


@dataclass(frozen=True)
class ModelInfo:
    """A model that `list_models` found: the name to show, what `load` takes, its task and its classes (if any), and
    `saved`, which changes whenever the model is saved again (a run writes a newer model at each checkpoint)."""

    name: str
    location: str
    task: str
    class_names: tuple[str, ...] = ()
    saved: tuple[int, int] = (0, 0)


def _info(name: str, location: str | Path) -> ModelInfo:
    folder = resolve_model(location)
    config, stat = read_config(folder), (folder / "config.json").stat()
    return ModelInfo(name, str(location), config.get("task", "generation"), tuple(config.get("class_names") or ()),
                     (stat.st_ino, stat.st_mtime_ns))


def list_models(runs: str | Path | None = None) -> list[ModelInfo]:
    """The shipped models, then every run (or model folder) directly inside the folder `runs` that has saved a model."""
    found = [_info(name, name) for name in shipped_models()]
    if runs is not None and Path(runs).is_dir():
        for folder in sorted(p for p in Path(runs).iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                found.append(_info(f"{Path(runs).name}/{folder.name}", folder))
            except UserError:  # a run that has not saved a model yet, or a folder of something else
                continue
    return found


def stylize(image: ImageLike, style: ImageLike, size: int = DEFAULT_SIZE, strength: float = 1.0,
            preserve_colour: bool = False, steps: int = DEFAULT_STEPS, seed: int = 0,
            features: str | Path | None = None, device: str | None = None,
            as_tensor: bool = False) -> Image.Image | torch.Tensor:
    """`image` painted in the style of `style` by optimisation (Gatys et al.), no trained model needed, as
    `ganforge stylize --style` does: the result is at most `size` pixels on its longest side."""
    check_options(size, strength, steps)
    torch_device = pick_device(device or "auto")
    net = load_style_features(features).to(torch_device)
    return _returned(stylize_image(net, _image(image), _image(style), size, strength, preserve_colour, steps, seed,
                                   torch_device, progress=True), as_tensor)
