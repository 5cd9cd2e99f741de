"""The studio's page: a tab per task, laid out and wired to `handlers.Studio`; nothing else happens here."""

import functools

import gradio as gr

from ganforge.errors import UserError
from ganforge.studio.handlers import EMBEDDED_SETS, EVERY_CLASS, UPLOADED_ZIP, Studio

TASKS = ("generation", "superres", "inpaint", "style", "translate")
CSS = ".pixels img { image-rendering: pixelated; }"  # small generated images enlarged without blur


def shown(handler):
    """`handler` with a UserError shown on the page as its message (and the server left serving), and long work
    shown as a progress bar: the pipelines' tqdm bars are tracked."""

    @functools.wraps(handler)
    def run(*args, progress=gr.Progress(track_tqdm=True)):
        try:
            return handler(*args)
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    del run.__wrapped__  # Gradio reads the signature: it must see `progress`
    return run


def _first(choices: list[str]) -> str | None:
    return choices[0] if choices else None


def build(studio: Studio) -> gr.Blocks:
    """The page for `studio`; `launch` serves it."""
    with gr.Blocks(title="ganforge studio", analytics_enabled=False) as page:
        gr.Markdown("# ganforge studio\nShipped models, and the models of the runs in "
                    f"`{studio.runs}`. Every result is what the `ganforge` command gives with the same settings.")
        menus: dict[str, list[gr.Dropdown]] = {task: [] for task in TASKS}

        def model_menu(task: str, conditional: bool = False) -> gr.Dropdown:
            choices = studio.choices(task, conditional)
            menu = gr.Dropdown(choices, value=_first(choices), label="model")
            menus[task].append(menu)
            return menu

        with gr.Tab("generate", id="generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    generator = model_menu("generation")
                    classes = gr.Dropdown(studio.class_choices(generator.value) if generator.value else [],
                                          label="class", value=EVERY_CLASS)
                    seed = gr.Number(0, label="seed (image i uses seed + i)", precision=0)
                    count = gr.Slider(1, 100, value=36, step=1, label="images")
                    truncation = gr.Slider(0.1, 1.0, value=1.0, step=0.05, label="truncation (1: none)")
                    generate = gr.Button("generate", variant="primary")
                    seeds = gr.Textbox("1,2,3,4", label="seeds to walk through")
                    frames = gr.Slider(2, 16, value=8, step=1, label="frames per leg")
                    walk = gr.Button("interpolate")
                with gr.Column(scale=2):
                    grid = gr.Image(label="samples", type="pil", format="png", elem_id="samples",
                                    elem_classes="pixels", interactive=False)
                    strip = gr.Image(label="interpolation (a row per leg)", type="pil", format="png",
                                     elem_id="walk", elem_classes="pixels", interactive=False)
            generator.change(lambda name: gr.Dropdown(choices=studio.class_choices(name), value=EVERY_CLASS),
                             generator, classes)
            generate.click(shown(studio.generate), [generator, seed, count, classes, truncation], grid)
            walk.click(shown(studio.interpolate), [generator, seeds, frames, classes, truncation], strip)

        with gr.Tab("upscale", id="upscale"):
            with gr.Row():
                with gr.Column(scale=1):
                    upscaler = model_menu("superres")
                    low = gr.Image(label="image", type="filepath", sources=["upload", "clipboard"], elem_id="upscale-in")
                    upscale = gr.Button("upscale", variant="primary")
                with gr.Column(scale=2):
                    compare = gr.ImageSlider(label="before / after", type="pil", format="png", elem_id="upscaled")
            upscale.click(shown(studio.upscale), [upscaler, low], compare)

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
            augment.click(shown(studio.augment), [labeller, per_class, augment_seed, augment_truncation, keep],
                          [dataset, summary])

        with gr.Tab("inpaint", id="inpaint"):
            with gr.Row():
                with gr.Column(scale=1):
                    inpainter = model_menu("inpaint")
                    editor = gr.ImageEditor(label="paint over what should go", type="filepath", format="png",
                                            sources=["upload", "clipboard"], layers=False, transforms=[],
                                            brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                                            elem_id="inpaint-in")
                    inpaint = gr.Button("inpaint", variant="primary")
                with gr.Column(scale=1):
                    filled = gr.Image(label="filled", type="pil", format="png", elem_id="inpainted",
                                      interactive=False)
            inpaint.click(shown(studio.inpaint), [inpainter, editor], filled)

        with gr.Tab("stylize", id="stylize"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.Image(label="photo", type="filepath", sources=["upload", "clipboard"],
                                     elem_id="stylize-in")
                    gr.Markdown("**With a fast style network** (`train --task style`, in the runs folder)")
                    stylizer = model_menu("style")
                    fast = gr.Button("stylize with the network", variant="primary")
                    gr.Markdown("**Or by optimisation** (no model; slower)")
                    style = gr.Image(label="style image", type="filepath", sources=["upload", "clipboard"],
                                     elem_id="style-in")
                    size = gr.Slider(64, 512, value=256, step=16, label="longest side")
                    steps = gr.Slider(5, 200, value=40, step=5, label="steps")
                    strength = gr.Slider(0.0, 4.0, value=1.0, step=0.1, label="strength")
                    optimise = gr.Button("stylize by optimisation")
                with gr.Column(scale=1):
                    styled = gr.Image(label="stylized", type="pil", format="png", elem_id="stylized",
                                      interactive=False)
            fast.click(shown(studio.stylize), [stylizer, photo], styled)
            optimise.click(shown(studio.stylize_like), [photo, style, size, steps, strength], styled)

        with gr.Tab("translate", id="translate"):
            with gr.Row():
                with gr.Column(scale=1):
                    translator = model_menu("translate")
                    direction = gr.Radio(["a2b", "b2a"], value="a2b", label="direction")
                    source = gr.Image(label="image", type="filepath", sources=["upload", "clipboard"],
                                      elem_id="translate-in")
                    translate = gr.Button("translate", variant="primary")
                with gr.Column(scale=1):
                    translated = gr.Image(label="translated", type="pil", format="png", elem_id="translated",
                                          interactive=False)
            translate.click(shown(studio.translate), [translator, source, direction], translated)

        with gr.Tab("train", id="train"):
            with gr.Row():
                with gr.Column(scale=1):
                    data = gr.Radio([*EMBEDDED_SETS, UPLOADED_ZIP], value=EMBEDDED_SETS[0], label="data")
                    archive = gr.File(label="zip of images (sub-folders are classes)", file_types=[".zip"],
                                      type="filepath", elem_id="train-zip")
                    resolution = gr.Slider(8, 128, value=32, step=4, label="resolution (uploaded images)")
                    train_steps = gr.Number(2000, label="steps", precision=0)
                    conditional = gr.Checkbox(False, label="class-conditional")
                    run_name = gr.Textbox("", label="run name (default: studio-DATE-TIME)")
                    with gr.Row():
                        start = gr.Button("start training", variant="primary")
                        stop = gr.Button("stop")
                with gr.Column(scale=2):
                    status = gr.Markdown("no run started yet", elem_id="train-status")
                    live_grid = gr.Image(label="latest samples", type="pil", format="png", elem_id="train-grid",
                                         elem_classes="pixels", interactive=False)
                    loss_plot = gr.Image(label="losses", type="pil", format="png", elem_id="train-losses",
                                         interactive=False)
            start.click(shown(studio.start_training), [data, archive, train_steps, resolution, conditional, run_name],
                        status)
            stop.click(shown(studio.stop_training), None, status)
            gr.Timer(2.0).tick(studio.training_status, None, [status, live_grid, loss_plot], queue=False,
                               show_progress="hidden")

        refresh = gr.Button("refresh the model lists (after a run has saved its model)", size="sm")
        all_menus = [menu for task in TASKS for menu in menus[task]]

        def refreshed():
            return [gr.Dropdown(choices=studio.choices(task, conditional=menu is labeller))
                    for task in TASKS for menu in menus[task]]

        refresh.click(refreshed, None, all_menus)
    return page
