"""`ganforge studio` driven in headless Chromium: every tab does its task, refusals are messages, and the server
goes on serving. One server for the module (the command itself, in a process of its own), one browser.

Needs Debian's chromium (`apt-get install chromium`) and Playwright's Python package, which
scripts/install.sh installs; Playwright drives the system browser, none is downloaded.
"""

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

import ganforge

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 60_000  # for any element or image: generous, for a loaded 2-core machine
expect.set_options(timeout=WAIT_MS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, style_model, translate_model):
    """The studio serving the shipped models and a runs folder holding a fast style network and a translator."""
    runs = tmp_path_factory.mktemp("studio") / "runs"
    runs.mkdir()
    (runs / "style").symlink_to(style_model)
    (runs / "p2m").symlink_to(translate_model)
    port = free_port()
    env = {**os.environ, "GANFORGE_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "studio", "--port", str(port), "--runs", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not any(url in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.2)
    yield url, runs, lines
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "the browser tests need Debian's chromium: bash scripts/install.sh installs it"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(studio[0])
    expect(page.get_by_role("tab", name="generate")).to_be_visible()
    yield page
    context.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)).resize((40, 32), Image.Resampling.BICUBIC).save(path)
    return path


def shown_sizes(page, selector: str, count: int = 1) -> list[tuple[int, int]]:
    """The pixel sizes of the `count` images that `selector` shows, once it shows them."""
    images = f"document.querySelectorAll('{selector} img')"
    page.wait_for_function(f"{images}.length == {count} && [...{images}].every(i => i.complete && i.naturalWidth > 0)")
    return [tuple(size) for size in page.eval_on_selector_all(f"{selector} img",
                                                             "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")]


def shown_size(page, selector: str) -> tuple[int, int]:
    return shown_sizes(page, selector)[0]


def shown_pixels(page, selector: str) -> np.ndarray:
    """The pixels of the image that `selector` shows, as the server sent them."""
    shown_size(page, selector)
    response = page.request.get(page.eval_on_selector(f"{selector} img", "img => img.src"))
    return np.asarray(Image.open(io.BytesIO(response.body())))


def choose(page, menu: str, option: str) -> None:
    page.click(f"{menu} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_the_page_has_a_tab_per_task(page):
    expect(page).to_have_title("ganforge studio")
    for tab in ("generate", "upscale", "augment", "inpaint", "stylize", "translate", "train"):
        expect(page.get_by_role("tab", name=tab, exact=True)).to_be_visible()


def test_generate_shows_the_apis_grid_and_walk(page):
    page.get_by_role("button", name="generate", exact=True).click()
    grid = ganforge.load("mnist5k", device="cpu").grid(36, seed=0)
    assert np.array_equal(shown_pixels(page, "#samples"), np.asarray(grid))  # 6x6 digits: 182x182
    page.get_by_role("button", name="interpolate", exact=True).click()
    assert shown_size(page, "#walk") == (8 * 28 + 9 * 2, 3 * 28 + 4 * 2)  # 3 legs of 8 frames


def test_generate_a_class(page):
    choose(page, "#model-generation", "mnist5k-conditional")
    choose(page, "#class", "7")
    page.fill("#count input[type=number]", "4")
    page.get_by_role("button", name="generate", exact=True).click()
    sevens = ganforge.load("mnist5k-conditional", device="cpu").grid(4, seed=0, class_name="7")
    assert np.array_equal(shown_pixels(page, "#samples"), np.asarray(sevens))


def test_upscale_shows_before_and_after(page, photo):
    page.get_by_role("tab", name="upscale").click()
    page.set_input_files("#upscale-in input[type=file]", photo)
    page.get_by_role("button", name="upscale", exact=True).click()
    assert shown_sizes(page, "#upscaled", 2) == [(80, 64), (80, 64)]  # superres-x2, the first in the menu


def test_augment_offers_a_zip_of_the_data_set(page):
    page.get_by_role("tab", name="augment").click()
    page.get_by_role("button", name="make the data set").click()
    expect(page.locator("#dataset-summary")).to_contain_text("100 images, 10 of each of 10 classes")
    assert shown_size(page, "#dataset-preview") == (280, 280)  # the first 10 of each class, a row each
    with page.expect_download() as download:
        page.locator("#dataset a").first.click()
    with zipfile.ZipFile(download.value.path()) as zf:
        names = zf.namelist()
    assert len([n for n in names if n.endswith(".png")]) == 100 and "manifest.csv" in names


def test_long_work_shows_its_progress(page):
    page.get_by_role("tab", name="augment").click()
    per_class = page.get_by_label("images per class")
    per_class.fill("300")
    per_class.press("Tab")  # leave the field, as a visitor does, so the page has the value before the click
    expect(per_class).to_have_value("300")
    page.get_by_role("button", name="make the data set").click()
    expect(page.get_by_text(re.compile(r"augment - \d+(\.\d)?%")).first).to_be_visible()  # the pipeline's own bar
    expect(page.locator("#dataset-summary")).to_contain_text("3000 images")


def test_inpaint_fills_what_was_painted(page, tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save(tmp_path / "one.png")
    page.get_by_role("tab", name="inpaint").click()
    with page.expect_file_chooser() as chooser:  # as a visitor does: the editor's own upload prompt
        page.locator("#inpaint-in").get_by_text("Upload an image").click()
    chooser.value.set_files(tmp_path / "one.png")
    expect(page.locator("#brush-note")).to_contain_text("brush radius 1 px")  # sized to the image
    box = page.locator("#inpaint-in canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the image is centred in the canvas
    page.mouse.move(x - 30, y)
    page.mouse.down()
    for step in range(7):
        page.mouse.move(x - 30 + 10 * step, y)
    page.mouse.up()
    page.get_by_role("button", name="inpaint", exact=True).click()
    filled = shown_pixels(page, "#inpainted")
    assert filled.shape == (28, 28)
    changed = filled != digit
    assert changed.any() and not changed[:4].any() and not changed[-4:].any()  # only around the stroke


def test_stylize_and_translate_with_runs_models(page, photo):
    page.get_by_role("tab", name="stylize").click()
    page.set_input_files("#stylize-in input[type=file]", photo)
    page.get_by_role("button", name="stylize with the network").click()
    assert shown_size(page, "#stylized") == (40, 32)
    page.get_by_role("tab", name="translate").click()
    page.set_input_files("#translate-in input[type=file]", photo)
    page.get_by_role("button", name="translate", exact=True).click()
    assert shown_size(page, "#translated") == (40, 32)


def test_training_shows_its_first_grid_and_losses(page, studio):
    page.get_by_role("tab", name="train").click()
    page.get_by_label("digits").check()
    page.fill("#train-steps input", "20")
    page.get_by_role("button", name="start training").click()
    expect(page.locator("#train-status")).to_contain_text("studio-")
    assert shown_size(page, "#train-grid") == (8 * 8 + 9 * 2, 8 * 8 + 9 * 2)  # 64 digits of 8x8
    assert shown_size(page, "#train-losses")[0] > 200
    expect(page.locator("#train-status")).to_contain_text("finished")
    assert len(list(studio[1].glob("studio-*/model/generator.safetensors"))) == 1


@pytest.mark.parametrize("case, needle", [
    ("oversized", "the studio takes images up to 20 MB"),
    ("bomb", "refused, the image declares more pixels than the studio decodes"),
])
def test_a_refused_upload_is_a_message_and_the_next_request_is_served(page, photo, tmp_path, case, needle):
    bad = tmp_path / f"{case}.png"
    if case == "oversized":  # 21 MB of noise, stored uncompressed: few pixels, too many bytes
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (2700, 2700, 3), dtype=np.uint8)).save(
            bad, compress_level=0)
    else:  # 38 kB that would decode to 36 megapixels
        Image.new("L", (6000, 6000)).save(bad)
        assert bad.stat().st_size < 100_000
    page.get_by_role("tab", name="upscale").click()
    page.set_input_files("#upscale-in input[type=file]", bad)
    page.get_by_role("button", name="upscale", exact=True).click()
    expect(page.get_by_text(needle)).to_be_visible()
    page.set_input_files("#upscale-in input[type=file]", photo)
    page.get_by_role("button", name="upscale", exact=True).click()
    assert shown_sizes(page, "#upscaled", 2) == [(80, 64), (80, 64)]


def test_two_visitors_at_once_are_both_served(browser, studio):
    pages = []
    for _ in range(2):
        page = browser.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(studio[0])
        page.fill("#count input[type=number]", "100")
        pages.append(page)
    for page in pages:  # both queued before either is done
        page.get_by_role("button", name="generate", exact=True).click()
    for page in pages:
        assert shown_size(page, "#samples") == (10 * 28 + 11 * 2, 10 * 28 + 11 * 2)
        page.context.close()


def test_no_browser_path_reaches_the_file_system(page, studio):
    for path in ("/etc/passwd", studio[1] / "style" / "config.json"):
        assert page.request.get(f"{studio[0]}/gradio_api/file={path}").status in (403, 404)
