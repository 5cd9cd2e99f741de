"""Hostile inputs through every command that reads them: each is skipped and counted (folders) or
refused in one line with exit code 2 (single files and models); no traceback, and nothing already
on disk changes. The outcome of every file x command is asserted and printed as a table at the end.
"""

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.saved_model import PRETRAINED_DIR

ROOT = os.geteuid() == 0  # root reads a chmod 000 file: then that file simply works
SKIPPED, ONE_LINE, WORKED = "skipped+counted", "one line, exit 2", "worked"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit greyscale PNG of side x side zero pixels: ~100 KB on disk, 900 megapixels decoded."""
    row = b"\0" * (1 + side // 8 + (side % 8 > 0))  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _rgb(size: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_hostile(folder: Path, name: str, bomb: bytes) -> Path:
    """Write the hostile file `name` into `folder`; return its path."""
    path = folder / name
    if name == "truncated.png":
        data = _encoded(_rgb(40, 1), "PNG")
        path.write_bytes(data[: len(data) // 2])
    elif name == "truncated.jpg":
        data = _encoded(_rgb(40, 2), "JPEG")
        path.write_bytes(data[: len(data) // 2])
    elif name == "empty.png":
        path.write_bytes(b"")
    elif name == "bomb.png":
        path.write_bytes(bomb)
    elif name == "1x1.png":
        Image.new("RGB", (1, 1), (200, 10, 10)).save(path)
    elif name == "cmyk.jpg":
        _rgb(40, 3).convert("CMYK").save(path, format="JPEG")
    elif name == "grey16.png":
        Image.fromarray((np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I")
    elif name == "animated.gif":
        frames = [_rgb(40, s).convert("P") for s in range(3)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif name == "svg.png":
        path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40"/></svg>')
    elif name == "chmod000.png":
        _rgb(40, 4).save(path)
        path.chmod(0)
    elif name == "dangling.png":
        path.symlink_to(folder / "no-such-target.png")
    elif name == "loop.png":
        path.symlink_to(path.name)  # a link to itself
    else:
        raise ValueError(name)
    return path


HOSTILE = ["truncated.png", "truncated.jpg", "empty.png", "bomb.png", "1x1.png", "cmyk.jpg", "grey16.png",
           "animated.gif", "svg.png", "chmod000.png", "dangling.png", "loop.png"]
# What each file must give, per kind of command. A 1x1 image is a fine (if poor) training image; it is too
# small to upscale, stylize or score super-resolution on, and too small to cut a super-resolution crop from.
USABLE = {"1x1.png", "cmyk.jpg", "grey16.png", "animated.gif"} | ({"chmod000.png"} if ROOT else set())
FOLDER_COMMANDS = ["train", "train --task superres", "evaluate", "evaluate (superres)", "features train", "upscale FOLDER",
                   "stylize FOLDER"]
FILE_COMMANDS = ["upscale FILE", "evaluate (superres) --data FILE", "stylize FILE", "stylize --style FILE"]
TOO_SMALL_FOR = {"train --task superres", "evaluate (superres)", "upscale FOLDER", "upscale FILE",
                 "evaluate (superres) --data FILE", "stylize FOLDER", "stylize FILE", "stylize --style FILE"}


def expected(name: str, command: str) -> str:
    usable = name in USABLE and not (name == "1x1.png" and command in TOO_SMALL_FOR)
    if usable:
        return WORKED
    return ONE_LINE if command in FILE_COMMANDS else SKIPPED


def snapshot(folder: Path) -> dict:
    """Every entry under `folder` (links not followed): what "nothing on disk changed" compares."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            st = os.lstat(Path(dirpath) / name)
            out[str(Path(dirpath, name).relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good images (40x40, enough for every command), a domain feature network for `evaluate`, the bomb's bytes."""
    base = tmp_path_factory.mktemp("hostile")
    good = base / "good"
    good.mkdir()
    for i in range(12):
        _rgb(40, 100 + i).save(good / f"good{i:02d}.png")
    features = base / "features"
    assert main(["features", "train", "--data", str(good), "--out", str(features), "--resolution", "28",
                 "--channels", "1", "--steps", "2"]) == 0
    return {"good": good, "features": features, "bomb": bomb_png()}


def command_args(command: str, data: Path, out: Path, corpus: dict) -> list[str]:
    good = corpus["good"] / "good00.png"
    tiny_train = ["--batch-size", "4", "--steps", "1", "--eval-every", "0", "--width", "4", "--out", str(out)]
    return {
        "train": ["train", "--data", str(data), "--resolution", "8", *tiny_train],
        "train --task superres": ["train", "--task", "superres", "--data", str(data), "--scale", "2", "--patch-size", "16",
                                  "--blocks", "1", *tiny_train],
        "evaluate": ["evaluate", "mnist5k", "--data", str(data), "--features", str(corpus["features"]),
                     "--metrics", "fid,kid", "--n", "10", "--out", str(out / "report.json")],
        "evaluate (superres)": ["evaluate", "superres-x2", "--data", str(data), "--out", str(out / "report.json")],
        "features train": ["features", "train", "--data", str(data), "--out", str(out), "--resolution", "8", "--steps", "1"],
        "upscale FOLDER": ["upscale", str(data), "--scale", "2", "--out", str(out)],
        "upscale FILE": ["upscale", str(data), "--scale", "2", "--out", str(out / "up.png")],
        "evaluate (superres) --data FILE": ["evaluate", "superres-x2", "--data", str(data), "--out", str(out / "report.json")],
        "stylize FOLDER": ["stylize", str(data), "--style", str(good), "--steps", "1", "--size", "32", "--out", str(out)],
        "stylize FILE": ["stylize", str(data), "--style", str(good), "--steps", "1", "--size", "32",
                         "--out", str(out / "s.png")],
        "stylize --style FILE": ["stylize", str(good), "--style", str(data), "--steps", "1", "--size", "32",
                                 "--out", str(out / "s.png")],
    }[command]


OBSERVED: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module", autouse=True)
def print_table(request):
    """After the module: the observed outcome of every file x command, as a table in the test output."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not OBSERVED:
        return
    rows = sorted({r for r, _ in OBSERVED}, key=lambda r: (HOSTILE + MODELS).index(r))
    columns = [c for c in FOLDER_COMMANDS + FILE_COMMANDS + ["sample", "evaluate MODEL", "upscale --model MODEL", "export MODEL"] if any(c == k for _, k in OBSERVED)]
    lines = ["", "| input | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {r} | " + " | ".join(OBSERVED.get((r, c), "") for c in columns) + " |" for r in rows]
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)


def outcome(code: int, err: str, messages: list[str], name: str) -> str:
    """Classify one run; anything but the three honest outcomes fails the test with what happened."""
    skips = [m for m in messages if "skipped" in m]
    if code == 2:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert name in err or name.removesuffix(".png") in err, err  # the line names the file (or the model)
        return ONE_LINE
    assert code == 0, (code, err)
    if skips:
        assert len(skips) == 1 and "skipped 1 " in skips[0], skips  # one warning, counting the file
        return SKIPPED
    return WORKED


@pytest.fixture
def decoded(monkeypatch):
    """The paths every image reader of the commands decoded: "worked" must mean the file was used, not dropped."""
    import ganforge.data.folder
    import ganforge.data.photos
    import ganforge.pipelines.image_files
    import ganforge.pipelines.stylize
    import ganforge.pipelines.upscaling

    paths = set()

    def spy(module, name):
        original = getattr(module, name)

        def recording(path, *args, **kwargs):
            result = original(path, *args, **kwargs)
            paths.add(Path(path).name)
            return result

        monkeypatch.setattr(module, name, recording)

    spy(ganforge.data.folder, "open_rgb_or_l")
    spy(ganforge.data.photos, "open_rgb_or_l")
    spy(ganforge.pipelines.image_files, "open_image")  # behind read_image, for single files
    spy(ganforge.pipelines.upscaling, "open_image")
    spy(ganforge.pipelines.stylize, "open_image")
    return paths


@pytest.mark.parametrize("command", FOLDER_COMMANDS + FILE_COMMANDS)
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file(tmp_path, corpus, capsys, recwarn, decoded, name, command):
    data = tmp_path / "data"
    data.mkdir()
    if command in FOLDER_COMMANDS:
        for p in corpus["good"].iterdir():
            shutil.copy2(p, data / p.name)
    path = write_hostile(data, name, corpus["bomb"])
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    code = main(command_args(command, data if command in FOLDER_COMMANDS else path, out, corpus))
    err = capsys.readouterr().err.strip()
    messages = [str(w.message) for w in recwarn]
    got = outcome(code, err, messages, name)
    OBSERVED[(name, command)] = got
    if got == WORKED:
        assert name in decoded, f"{name} was neither used nor reported"
    if got == SKIPPED and name != "1x1.png":  # "skipped 1 photo(s) smaller than ..." counts without naming
        assert any(name in m for m in messages), messages
    assert got == expected(name, command), (got, err, messages)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before  # the inputs are untouched
    if got == ONE_LINE:
        assert after == before  # and a refused command wrote nothing at all


# ---------------------------------------------------------------------------------------- models
MODELS = ["garbage config.json", "config.json not an object", "config.json missing keys", "truncated safetensors",
          "pickle named .safetensors", "weights of another shape"]


def write_hostile_model(folder: Path, name: str) -> None:
    folder.mkdir()
    shipped = PRETRAINED_DIR / "mnist5k"
    config = json.loads((shipped / "config.json").read_text())
    weights = (shipped / "generator.safetensors").read_bytes()
    (folder / "generator.safetensors").write_bytes(weights)
    (folder / "config.json").write_text(json.dumps(config))
    if name == "garbage config.json":
        (folder / "config.json").write_bytes(b"{\x00\xff not json")
    elif name == "config.json not an object":
        (folder / "config.json").write_text("[1, 2, 3]")
    elif name == "config.json missing keys":
        (folder / "config.json").write_text(json.dumps({"task": "generation"}))
    elif name == "truncated safetensors":
        (folder / "generator.safetensors").write_bytes(weights[: len(weights) // 2])
    elif name == "pickle named .safetensors":
        torch.save({"w": torch.zeros(3)}, folder / "generator.safetensors")
    elif name == "weights of another shape":
        (folder / "config.json").write_text(json.dumps({**config, "width": 2 * config["width"]}))
    else:
        raise ValueError(name)


@pytest.mark.parametrize("command", ["sample", "evaluate MODEL", "upscale --model MODEL", "export MODEL"])
@pytest.mark.parametrize("name", MODELS)
def test_hostile_model(tmp_path, corpus, capsys, name, command):
    model = tmp_path / "model"
    write_hostile_model(model, name)
    before = snapshot(tmp_path)
    args = {"sample": ["sample", str(model), "--n", "4", "--out", str(tmp_path / "out" / "grid.png")],
            "evaluate MODEL": ["evaluate", str(model), "--data", str(corpus["good"]), "--features",
                               str(corpus["features"]), "--metrics", "fid", "--n", "10", "--out",
                               str(tmp_path / "out" / "report.json")],
            "upscale --model MODEL": ["upscale", str(corpus["good"] / "good00.png"), "--model", str(model), "--out",
                                      str(tmp_path / "out" / "big.png")],
            "export MODEL": ["export", str(model), "--out", str(tmp_path / "out" / "model.onnx")]}[command]
    code = main(args)
    err = capsys.readouterr().err.strip()
    OBSERVED[(name, command)] = got = outcome(code, err, [], "model")
    assert got == ONE_LINE and str(model) in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["upscale --model RUN", "evaluate RUN"])
@pytest.mark.parametrize("model", ["missing", "config.json not an object"])
def test_superres_run_with_a_broken_model_folder(tmp_path, corpus, capsys, model, command):
    """A run's model-fidelity/ is fine but its model/ is gone or broken: one line naming it, not a traceback."""
    run = tmp_path / "run"
    (run / "model-fidelity").mkdir(parents=True)
    (run / "model-fidelity" / "config.json").write_text(json.dumps({"task": "superres", "variant": "fidelity"}))
    if model != "missing":
        (run / "model").mkdir()
        (run / "model" / "config.json").write_text("[1, 2, 3]")
    before = snapshot(tmp_path)
    args = (["upscale", str(corpus["good"] / "good00.png"), "--model", str(run), "--out", str(tmp_path / "big.png")]
            if command.startswith("upscale") else ["evaluate", str(run), "--out", str(tmp_path / "report.json")])
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(run) in err, err
    assert snapshot(tmp_path) == before
