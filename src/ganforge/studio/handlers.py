"""What each button of the studio does, as plain functions of the page's values: they check the upload, look the model
up among those the studio offers, and call the Python API (`ganforge.api`), nothing else.

They raise `UserError` for anything the user can fix; the page (`studio/app.py`) shows its message. Kept free of
Gradio, so the tests call them directly.
"""

import csv
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge import api
from ganforge.errors import UserError
from ganforge.seeding import parse_seeds
from ganforge.studio.uploads import check_pixels, checked_image, extract_images, safe_name

EVERY_CLASS = "every class (a row each)"
EMBEDDED_SETS = ("mnist5k", "digits")  # what the training tab offers besides an uploaded zip
UPLOADED_ZIP = "an uploaded zip of images"
MAX_SAMPLES = 256
MAX_PER_CLASS = 1000
MAX_FRAMES = 32
PREVIEW_PER_CLASS = 10
MAX_UPSCALE_PIXELS = 1024 * 1024  # the input of an upscale: x4 makes 16 megapixels, about a minute of CPU
MAX_TRAIN_STEPS = 20_000
UPLOADS = ".studio-uploads"  # inside --runs: extracted training zips (hidden: not a run)
LOGS = ".studio-logs"


class Studio:
    """The studio's state: the models it offers (shipped ones and the runs in `runs`), each loaded once, and the one
    training run it may have going."""

    def __init__(self, runs: str | Path, device: str | None = None):
        self.runs, self.device = Path(runs), device
        self._models: dict[str, tuple[tuple[int, int], api.Model]] = {}  # name: (its ModelInfo.saved, the model)
        self._loading = threading.Lock()
        self._training: subprocess.Popen | None = None
        self._training_run: Path | None = None
        # the data sets made for download; Gradio serves its own copies, so this goes when the studio does
        self._scratch = Path(tempfile.mkdtemp(prefix="ganforge-studio-"))
        weakref.finalize(self, shutil.rmtree, self._scratch, True)

    # ---- models -------------------------------------------------------------------------------------------------
    def choices(self, task: str, conditional: bool = False) -> list[str]:
        """Names of the offered models of `task` (for "generation", only class-conditional ones with `conditional`)."""
        return [info.name for info in api.list_models(self.runs)
                if info.task == task and (info.class_names or not conditional)]

    def offered(self, name: str | None, task: str) -> api.ModelInfo:
        """What the studio knows of the offered model called `name`; a name the studio does not offer is refused, so
        no value sent by a browser reaches the file system."""
        if not name:
            raise UserError("model: choose a model first")
        offered = {info.name: info for info in api.list_models(self.runs)}
        if name not in offered:
            raise UserError(f"model: {name!r} is not one of the studio's models")
        if offered[name].task != task:
            raise UserError(f"model: {name} is a {offered[name].task} model, not a {task} one")
        return offered[name]

    def model(self, name: str | None, task: str) -> api.Model:
        """The offered model called `name` (see `offered`), loaded once and kept until its run saves a newer one."""
        info = self.offered(name, task)
        with self._loading:
            saved, model = self._models.get(name, (None, None))
            if saved != info.saved:
                model = api.load(info.location, device=self.device)
                self._models[name] = info.saved, model
            return model

    def class_choices(self, name: str | None) -> list[str]:
        """The class menu of a generator: every class, then each by name; empty for an unconditional one (its
        config's classes, so choosing a model in the menu loads nothing)."""
        class_names = self.offered(name, "generation").class_names
        return [EVERY_CLASS, *class_names] if class_names else []

    # ---- generate ----------------------------------------------------------------------------------------------
    def generate(self, name: str, seed: float, n: float, class_choice: str | None, truncation: float) -> Image.Image:
        """A grid of `n` samples from seed `seed` on (a row per class for a conditional model and every class)."""
        n = _whole(n, "number of images", 1, MAX_SAMPLES)
        model = self.model(name, "generation")
        return model.grid(n, _whole(seed, "seed", 0), truncation, _class(model, class_choice))

    def interpolate(self, name: str, seeds: str, frames: float, class_choice: str | None,
                    truncation: float) -> Image.Image:
        """The slerp walk through `seeds` ("1,2,3" or "0-3"), a row of `frames` images per leg."""
        frames = _whole(frames, "frames", 2, MAX_FRAMES)
        parsed = parse_seeds(seeds or "")
        if len(parsed) > 16:
            raise UserError("seeds: at most 16 seeds to walk through")
        model = self.model(name, "generation")
        return model.interpolation_grid(parsed, frames, truncation, _class(model, class_choice, walk=True))

    # ---- image to image ----------------------------------------------------------------------------------------
    def upscale(self, name: str, image: str | None, mirror_too: bool = False) -> tuple[Image.Image, Image.Image]:
        """(the input enlarged without new detail, for the slider's other side; the upscaled image). `mirror_too`:
        average with the run on the mirror image (`upscale --self-ensemble 2`)."""
        model = self.model(name, "superres")
        im = checked_image(image, "image", MAX_UPSCALE_PIXELS)
        result = model.upscale(im, self_ensemble=2 if mirror_too else 1)
        return im.convert(result.mode).resize(result.size, Image.Resampling.NEAREST), result

    def inpaint(self, name: str, editor: dict | None, texture: bool = False) -> Image.Image:
        """The editor's image with the strokes drawn on it filled (with the image's own detail quilted in: `texture`)."""
        model = self.model(name, "inpaint")
        if not editor or not editor.get("background"):
            raise UserError("image: upload an image and paint over what should go")
        im = checked_image(editor["background"])
        if im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema() == (255, 255):
            im = im.convert(im.mode[:-1])  # the editor's canvas adds an opaque alpha to every image
        holes = np.zeros((im.height, im.width), dtype=bool)
        for layer in editor.get("layers") or []:
            strokes = checked_image(layer, "mask")
            if strokes.size != im.size:
                strokes = strokes.resize(im.size, Image.Resampling.NEAREST)
            holes |= np.asarray(strokes.convert("RGBA"))[..., 3] > 0
        if not holes.any():
            raise UserError("mask: paint over the part of the image to fill (the brush marks the holes)")
        return model.inpaint(im, holes, texture=bool(texture))

    def stylize(self, name: str, image: str | None) -> Image.Image:
        return self.model(name, "style").stylize(checked_image(image))

    def stylize_like(self, image: str | None, style: str | None, size: float, steps: float,
                     strength: float) -> Image.Image:
        """The optimisation (no model): `image` in the style of the image `style`."""
        content, style_im = checked_image(image), checked_image(style, "style image")
        return api.stylize(content, style_im, size=_whole(size, "size", 16, 1024), strength=strength,
                           steps=_whole(steps, "steps", 1, 300), device=self.device)

    def translate(self, name: str, image: str | None, direction: str) -> Image.Image:
        return self.model(name, "translate").translate(checked_image(image), direction)

    # ---- augment -----------------------------------------------------------------------------------------------
    def augment(self, name: str, per_class: float, seed: float, truncation: float,
                keep_filter: bool) -> tuple[str, str, Image.Image]:
        """A labelled synthetic data set as a zip to download, a line that says what is in it, and a preview: the
        first images of each class, a row per class."""
        per_class = _whole(per_class, "images per class", 1, MAX_PER_CLASS)
        model = self.model(name, "generation")
        if not isinstance(model, api.ConditionalGenerator):
            raise UserError(f"model: {name} is unconditional; augment needs a class-conditional generator")
        work = Path(tempfile.mkdtemp(dir=self._scratch))
        folder = model.augment(work / "synthetic", per_class, _whole(seed, "seed", 0), keep_filter,
                               truncation=truncation)
        archive = shutil.make_archive(str(work / f"{safe_name(Path(name).name, 'model')}-synthetic"), "zip", folder)
        record = json.loads((folder / "augment.json").read_text())
        preview = _preview(folder, PREVIEW_PER_CLASS)
        shutil.rmtree(folder)
        kept = f"; the classifier passed {record['filter']['acceptance']:.1%}" if record["filter"] else ""
        return (archive, f"{record['images']} images, {per_class} of each of {len(model.class_names)} classes{kept}",
                preview)

    # ---- training ----------------------------------------------------------------------------------------------
    def start_training(self, data: str, archive: str | None, steps: float, resolution: float, conditional: bool,
                       name: str) -> str:
        """Start `ganforge train` in a process of its own on an embedded set or an uploaded zip; one run at a time."""
        if self._training is not None and self._training.poll() is None:
            raise UserError(f"training: {self._training_run.name} is still training; stop it first")
        steps = _whole(steps, "steps", 1, MAX_TRAIN_STEPS)
        run = self.runs / safe_name(name, time.strftime("studio-%Y%m%d-%H%M%S"))
        if run.exists():
            raise UserError(f"run name: {run.name} exists in {self.runs}; choose another")
        options = ["--steps", str(steps), "--sample-every", str(max(1, min(100, steps // 10))),
                   "--checkpoint-every", str(max(1, min(500, steps // 4))), "--eval-every", "0"]
        if data in EMBEDDED_SETS:
            source = data
        elif data == UPLOADED_ZIP:
            folder = self.runs / UPLOADS / run.name
            shutil.rmtree(folder, ignore_errors=True)
            extract_images(archive, folder)
            source = str(folder)
            options += ["--resolution", str(_whole(resolution, "resolution", 8, 128))]
        else:
            raise UserError(f"data: {data!r} is not one of {', '.join((*EMBEDDED_SETS, UPLOADED_ZIP))}")
        if conditional:
            options.append("--conditional")
        log = self.runs / LOGS / f"{run.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "ganforge", "train", "--data", source, "--out", str(run), *options]
        with open(log, "w") as out:
            self._training = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._training_run = run
        return f"training {run.name}: {steps} steps on {data if data in EMBEDDED_SETS else 'the uploaded images'}"

    def training_status(self) -> tuple[str, Image.Image | None, Image.Image | None]:
        """A line on the run (step and losses, or how it ended), its latest sample grid and its loss plot."""
        if self._training_run is None:
            return "no run started yet", None, None
        run, rc = self._training_run, self._training.poll()
        grid, losses = _picture(run / "samples" / "latest.png"), _picture(run / "losses.png")
        if rc is None:
            return f"{run.name}: {_progress(run)}", grid, losses
        if rc == 0:
            return f"{run.name}: finished ({_progress(run)}); its model is in the model lists now", grid, losses
        lines = (self.runs / LOGS / f"{run.name}.log").read_text(errors="replace").strip().splitlines()
        return f"{run.name}: stopped (exit code {rc}): {lines[-1] if lines else 'no output'}", grid, losses

    def stop_training(self) -> str:
        if self._training is None or self._training.poll() is not None:
            return "no run is training"
        self._training.terminate()
        self._training.wait(timeout=60)
        return f"{self._training_run.name}: stopped; `ganforge train --out {self._training_run} --resume` continues it"


def brush_size(editor: dict | None) -> int:
    """A brush radius for the image in the inpaint editor: a sixteenth of its shorter side (1 pixel at least)."""
    try:
        width, height = check_pixels(editor["background"], "image")
    except (UserError, KeyError, TypeError):
        return 8
    return max(1, min(width, height) // 16)


def _whole(value: float | None, what: str, least: int, most: int | None = None) -> int:
    if value is None or value != value or int(value) != value:
        raise UserError(f"{what}: a whole number, please")
    if value < least or (most is not None and value > most):
        raise UserError(f"{what}: must be between {least} and {most}" if most is not None else
                        f"{what}: must be at least {least}")
    return int(value)


def _class(model: api.Model, choice: str | None, walk: bool = False) -> str | None:
    if not isinstance(model, api.ConditionalGenerator):
        return None
    if choice in (None, "", EVERY_CLASS):
        if walk:
            raise UserError("class: a walk stays in one class; choose one")
        return None
    return choice


def _preview(folder: Path, per_class: int) -> Image.Image:
    """The first `per_class` images of each class of a synthetic data set (its manifest's order), a row per class."""
    rows: dict[str, list[str]] = {}
    with open(folder / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["label"], []).append(row["file"])
    images = [[_picture(folder / file) for file in files[:per_class]] for files in rows.values()]
    width, height = images[0][0].size
    sheet = Image.new(images[0][0].mode, (per_class * width, len(images) * height), "white")
    for r, row in enumerate(images):
        for c, im in enumerate(row):
            sheet.paste(im, (c * width, r * height))
    return sheet


def _picture(path: Path) -> Image.Image | None:
    """A PNG the trainer wrote (atomically: never half-written), or None before it exists."""
    if not path.exists():
        return None
    with Image.open(path) as im:
        im.load()
        return im


def _progress(run: Path) -> str:
    """The last line of the run's metrics.jsonl, in words."""
    try:
        last = (run / "metrics.jsonl").read_text().strip().splitlines()[-1]
        record = json.loads(last)
    except (OSError, IndexError, ValueError):
        return "starting"
    losses = ", ".join(f"{k} {v:.3f}" for k, v in record.items() if k.startswith("loss") and isinstance(v, float))
    return f"step {record.get('step', '?')}" + (f", {losses}" if losses else "")

