"""The studio's page: a tab per task, laid out and wired to `handlers.Studio`, and served.

Nothing here computes anything: each button calls one method of `Studio`, which calls the
Python API. What is here besides layout is the page's side of safety: image inputs that check
an upload (`uploads.check_upload`) before Gradio itself opens it, one queue for all model
work, and the server's settings (127.0.0.1 unless told otherwise, an upload size cap, no
analytics, no file served but what the page made).
"""

import functools
import inspect
import logging
from pathlib import Path

import gradio as gr
from PIL import Image

from ganforge.errors import UserError
from ganforge.studio.handlers import EMBEDDED_SETS, UPLOADED_ZIP, Studio, brush_size
from ganforge.studio.uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, check_upload

TASKS = ("generation", "superres", "inpaint", "style", "translate")
# Images fill their box, so a 28x28 digit is not a speck; small generated ones keep sharp pixels rather than a blur.
CSS = """
.fit img { width: 100%; height: 100%; object-fit: contain; }
.pixels img { image-rendering: pixelated; }
"""
WORK = "model-work"  # every button that runs a model shares this queue: one at a time, so visitors wait, not thrash
QUEUE_SIZE = 32  # visitors waiting beyond this are told the studio is busy
BRUSH = "#ff00ff"  # the holes' colour on the inpainting editor
OUTPUT_HEIGHT = 360
INPUT_HEIGHT = 240


def shown(handler):
    """`handler` with a UserError shown on the page as its message (the server goes on serving), and long work
    shown as a progress bar: the pipelines' tqdm bars are tracked."""

    @functools.wraps(handler)
    def run(*args):
        try:
            return handler(*args[:-1])  # the last is the Progress object, which Gradio passes as it is told below
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    # Gradio looks for a positional parameter whose default is a Progress, and then passes one in its place.
    params = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for p in inspect.signature(handler).parameters.values()]
    progress = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=gr.Progress(track_tqdm=True))
    run.__signature__ = inspect.Signature([*params, progress])
    return run


def _check(source: Path | bytes) -> None:
    try:
        check_upload(source, "upload")
    except UserError as e:
        raise gr.Error(str(e), print_exception=False) from None


def _checked_first(component, uploads):
    """`component` whose `preprocess` first checks every file of the payload that `uploads(payload)` names, before
    Gradio opens any of them. (A wrapper, not a subclass: Gradio writes a .pyi file beside any module that defines
    a component class.)"""
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None:
            for upload in uploads(payload):
                if upload is not None:
                    _check(upload if isinstance(upload, bytes) else Path(upload.path))
        return preprocess(payload)

    component.preprocess = checked
    return component


def _image_upload(payload) -> list:
    return [payload] if payload.path else []


def _editor_uploads(editor: gr.ImageEditor):
    """The image and stroke layers of an editor's payload (sent as files, or as bytes kept by the editor)."""

    def uploads(payload) -> list:
        parts = editor.blob_storage.get(payload.id) if payload.id is not None else payload
        return [] if parts is None else [parts.background, *parts.layers, parts.composite]

    return uploads


def image_input(label: str, elem_id: str) -> gr.Image:
    """An upload, checked before Gradio opens it, then handed to its handler as the path of Gradio's copy,
    unconverted (`image_mode=None`)."""
    return _checked_first(gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                   elem_id=elem_id, height=INPUT_HEIGHT, elem_classes=["fit", "pixels"]),
                          _image_upload)


def image_editor(label: str, elem_id: str) -> gr.ImageEditor:
    """The inpainting editor: an upload to paint holes on with a fixed colour, its image and strokes checked as
    `image_input`'s before Gradio decodes them."""
    editor = gr.ImageEditor(label=label, type="filepath", format="png", sources=["upload", "clipboard"], layers=False,
                            transforms=[], brush=gr.Brush(colors=[BRUSH], color_mode="fixed"), elem_id=elem_id)
    return _checked_first(editor, _editor_uploads(editor))


def image_output(label: str, elem_id: str, pixels: bool = False) -> gr.Image:
    """A result; `pixels`: small images shown enlarged with sharp pixels."""
    return gr.Image(label=label, type="pil", format="png", elem_id=elem_id, interactive=False, height=OUTPUT_HEIGHT,
                    elem_classes=["fit", "pixels"] if pixels else ["fit"])


def fitted_brush(editor: dict | None) -> tuple[gr.ImageEditor, str]:
    """A brush in proportion to the uploaded image (Gradio's default radius is 25 pixels, all of a 28x28 digit), and
    a line that says so."""
    radius = brush_size(editor)
    return (gr.ImageEditor(brush=gr.Brush(default_size=radius, colors=[BRUSH], color_mode="fixed")),
            f"brush radius {radius} px (the brush button beside the image changes it)")


def _first(choices: list[str]) -> str | None:
    return choices[0] if choices else None


def build(studio: Studio) -> gr.Blocks:
    """The page for `studio`; `serve` serves it."""
    # Gradio keeps a copy of every upload and result; those older than an hour are deleted every hour.
    with gr.Blocks(title="ganforge studio", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("# ganforge studio\nShipped models, and the models of the runs in "
                    f"`{studio.runs}`. Every result is what the `ganforge` command gives with the same settings.")
        menus: list[tuple[gr.Dropdown, str, bool]] = []

        def model_menu(task: str, conditional: bool = False) -> gr.Dropdown:
            choices = studio.choices(task, conditional)
            menu = gr.Dropdown(choices, value=_first(choices), label="model", elem_id=f"model-{task}")
            menus.append((menu, task, conditional))
            return menu

        def class_menu(name: str | None) -> gr.Dropdown:
            """The class menu of a conditional generator; hidden for an unconditional one."""
            choices = studio.class_choices(name) if name else []
            return gr.Dropdown(choices, value=_first(choices), label="class", visible=bool(choices), elem_id="class")

        with gr.Tab("generate", id="generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    generator = model_menu("generation")
                    classes = class_menu(generator.value)
                    seed = gr.Number(0, label="seed (image i uses seed + i)", precision=0, elem_id="seed")
                    count = gr.Slider(1, 100, value=36, step=1, label="images", elem_id="count")
                    truncation = gr.Slider(0.1, 1.0, value=1.0, step=0.05, label="truncation (1: none)")
                    generate = gr.Button("generate", variant="primary")
                    seeds = gr.Textbox("1,2,3,4", label="seeds to walk through")
                    frames = gr.Slider(2, 16, value=8, step=1, label="frames per leg")
                    walk = gr.Button("interpolate")
                with gr.Column(scale=2):
                    grid = image_output("samples", "samples", pixels=True)
                    strip = image_output("interpolation (a row per leg)", "walk", pixels=True)
            generator.change(class_menu, generator, classes)
            generate.click(shown(studio.generate), [generator, seed, count, classes, truncation], grid,
                           concurrency_id=WORK)
            walk.click(shown(studio.interpolate), [generator, seeds, frames, classes, truncation], strip,
                       concurrency_id=WORK)

        with gr.Tab("upscale", id="upscale"):
            with gr.Row():
                with gr.Column(scale=1):
                    upscaler = model_menu("superres")
                    low = image_input("image", "upscale-in")
                    mirror_too = gr.Checkbox(False, label="self-ensemble: also run on the mirror image and average "
                                                          "(a little more faithful, twice the time)")
                    upscale = gr.Button("upscale", variant="primary")
                with gr.Column(scale=2):
                    compare = gr.ImageSlider(label="before (input, enlarged) / after (upscaled)", type="pil",
                                             format="png", elem_id="upscaled", height=2 * OUTPUT_HEIGHT)
            upscale.click(shown(studio.upscale), [upscaler, low, mirror_too], compare, concurrency_id=WORK)

        with gr.Tab("augment", id="augment"):
            with gr.Row():
                with gr.Column(scale=1):
                    labeller = model_menu("generation", conditional=True)
                    per_class = gr.Number(10, label="images per class", precision=0)
                    augment_seed = gr.Number(0, label="seed", precision=0)
                    augment_truncation = gr.Slider(0.1, 1.0, value=1.0, step=0.05, label="truncation")
                    keep = gr.Checkbox(False, label="keep only images the domain classifier assigns to their class")
                    augment = gr.Button("make the data set", variant="primary")
                with gr.Column(scale=2):
                    dataset = gr.File(label="data set (CLASS/*.png, manifest.csv, augment.json)", elem_id="dataset")
                    summary = gr.Markdown(elem_id="dataset-summary")
                    preview = image_output("the first images of each class", "dataset-preview", pixels=True)
            augment.click(shown(studio.augment), [labeller, per_class, augment_seed, augment_truncation, keep],
                          [dataset, summary, preview], concurrency_id=WORK)

        with gr.Tab("inpaint", id="inpaint"):
            with gr.Row():
                with gr.Column(scale=1):
                    inpainter = model_menu("inpaint")
                    editor = image_editor("image: paint over what should go", "inpaint-in")
                    brush_note = gr.Markdown(elem_id="brush-note")
                    texture = gr.Checkbox(False, label="texture: quilt the photo's own fine detail (fur, grass) into "
                                                       "the smooth fill (slower; it can copy a thin line too)")
                    inpaint = gr.Button("inpaint", variant="primary")
                with gr.Column(scale=1):
                    filled = image_output("filled", "inpainted", pixels=True)
            inpaint.click(shown(studio.inpaint), [inpainter, editor, texture], filled, concurrency_id=WORK)
            editor.upload(fitted_brush, editor, [editor, brush_note], queue=False, show_progress="hidden")

        with gr.Tab("stylize", id="stylize"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = image_input("photo", "stylize-in")
                    gr.Markdown("**With a fast style network** (`train --task style`, in the runs folder)")
                    stylizer = model_menu("style")
                    fast = gr.Button("stylize with the network", variant="primary")
                    gr.Markdown("**Or by optimisation** (no model; slower)")
                    style = image_input("style image", "style-in")
                    size = gr.Slider(64, 512, value=256, step=16, label="longest side")
                    steps = gr.Slider(5, 200, value=40, step=5, label="steps")
                    strength = gr.Slider(0.0, 4.0, value=1.0, step=0.1, label="strength")
                    optimise = gr.Button("stylize by optimisation")
                with gr.Column(scale=1):
                    styled = image_output("stylized", "stylized")
            fast.click(shown(studio.stylize), [stylizer, photo], styled, concurrency_id=WORK)
            optimise.click(shown(studio.stylize_like), [photo, style, size, steps, strength], styled,
                           concurrency_id=WORK)

        with gr.Tab("translate", id="translate"):
            with gr.Row():
                with gr.Column(scale=1):
                    translator = model_menu("translate")
                    direction = gr.Radio(["a2b", "b2a"], value="a2b", label="direction (a2b: --data to --data-b)")
                    source = image_input("image", "translate-in")
                    translate = gr.Button("translate", variant="primary")
                with gr.Column(scale=1):
                    translated = image_output("translated", "translated", pixels=True)
            translate.click(shown(studio.translate), [translator, source, direction], translated,
                            concurrency_id=WORK)

        with gr.Tab("train", id="train"):
            with gr.Row():
                with gr.Column(scale=1):
                    data = gr.Radio([*EMBEDDED_SETS, UPLOADED_ZIP], value=EMBEDDED_SETS[0], label="data",
                                    elem_id="train-data")
                    archive = gr.File(label="zip of images (sub-folders are classes)", file_types=[".zip"],
                                      type="filepath", elem_id="train-zip")
                    resolution = gr.Slider(8, 128, value=32, step=4, label="resolution (uploaded images)")
                    train_steps = gr.Number(2000, label="steps", precision=0, elem_id="train-steps")
                    conditional = gr.Checkbox(False, label="class-conditional")
                    run_name = gr.Textbox("", label="run name (default: studio-DATE-TIME)")
                    with gr.Row():
                        start = gr.Button("start training", variant="primary")
                        stop = gr.Button("stop")
                with gr.Column(scale=2):
                    status = gr.Markdown("no run started yet", elem_id="train-status")
                    live_grid = image_output("latest samples", "train-grid", pixels=True)
                    loss_plot = image_output("losses", "train-losses")
            start.click(shown(studio.start_training), [data, archive, train_steps, resolution, conditional, run_name],
                        status)
            stop.click(shown(studio.stop_training), None, status)
            gr.Timer(2.0).tick(studio.training_status, None, [status, live_grid, loss_plot], queue=False,
                               show_progress="hidden")

        refresh = gr.Button("refresh the model lists (after a run has saved its model)", size="sm")
        refresh.click(lambda: [gr.Dropdown(choices=studio.choices(task, conditional)) for _, task, conditional in menus],
                      None, [menu for menu, _, _ in menus])
    return page


def serve(host: str, port: int, runs: Path, device: str | None) -> None:
    """Build the page and serve it until interrupted: one piece of model work at a time for all visitors (the rest
    wait in the queue), uploads capped in size, and no file served but what the page itself made."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Gradio decodes the editor's layers: past twice this, PIL refuses
    for name in ("httpx", "uvicorn.access"):  # a line per request is noise on the studio's console
        logging.getLogger(name).setLevel(logging.WARNING)
    page = build(Studio(runs, device))
    page.queue(max_size=QUEUE_SIZE)
    page.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD_BYTES, show_error=True, quiet=True,
                ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False, footer_links=[], css=CSS,
                prevent_thread_lock=True)
    print(f"ganforge studio: http://{host}:{port}  (models: shipped and {runs}/; Ctrl-C stops it)", flush=True)
    page.block_thread()
