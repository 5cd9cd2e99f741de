"""On-disk image caches (`ganforge data prepare`) and training that streams from them."""

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ganforge.data.cache as cache_module
import ganforge.data.training_set as training_set
from ganforge.cli import main
from ganforge.data import load_imageset
from ganforge.data.cache import ImageCache, prepare_cache
from ganforge.data.photos import extract_patches, load_photos
from ganforge.data.training_set import in_memory, open_training_set
from ganforge.errors import UserError
from ganforge.training.prefetch import Prefetcher
from ganforge.training.trainer import epoch_share


@pytest.fixture
def labelled(tmp_path):
    """Two classes of 12 small images each, of several sizes and modes, and one file that is not an image."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            h, w = 10 + i, 9 + 2 * c
            if i % 4 == 3:
                Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(root / name / f"{i:02d}.jpg")
            else:
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    (root / "cats" / "broken.png").write_bytes(b"not a png")
    return root


def in_memory_set(folder, resolution, channels=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bad file's warning
        return load_imageset(str(folder), resolution, channels)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def train_args(data, out, *extra):
    return ["train", "--data", str(data), "--width", "8", "--batch-size", "8", "--out", str(out), "--log-every", "1",
            *extra]


# ---------------------------------------------------------------------------- prepare
@pytest.mark.parametrize("channels", [None, 1])
def test_a_cache_holds_the_folder_loaders_pixels_and_labels(labelled, tmp_path, channels):
    report = prepare_cache(labelled, 8, tmp_path / "cache", workers=2, channels=channels, progress=False)
    expected = in_memory_set(labelled, 8, channels)
    cache = ImageCache.open(tmp_path / "cache")
    assert cache.shape == tuple(expected.images.shape) == (24, channels or 3, 8, 8)
    assert torch.equal(cache.read(torch.arange(len(cache))), expected.images)
    picked = torch.tensor([17, 3, 3, 0])  # any order, repeats
    assert torch.equal(cache.read(picked), expected.images[picked])
    assert torch.equal(cache.labels, expected.labels) and cache.class_names == expected.class_names == ["cats", "dogs"]
    assert report.images == 24 and [b.split(" (")[0] for b in report.bad] == ["cats/broken.png"]


def test_hostile_files_are_skipped_as_the_in_memory_loader_skips_them(tmp_path):
    from test_hostile_inputs import HOSTILE, _rgb, bomb_png, write_hostile

    source, bomb = tmp_path / "hostile", bomb_png()
    source.mkdir()
    for i in range(3):
        _rgb(40, i).save(source / f"good{i}.png")
    for name in HOSTILE:
        write_hostile(source, name, bomb)
    report = prepare_cache(source, 8, tmp_path / "cache", workers=2, progress=False)
    with pytest.warns(UserWarning, match=f"skipped {len(report.bad)} unreadable"):
        expected = load_imageset(str(source), 8)
    assert len(report.bad) >= 6 and report.images == len(expected)
    assert torch.equal(ImageCache.open(tmp_path / "cache").read(torch.arange(report.images)), expected.images)


def test_the_cli_summary_counts_and_names_bad_files(labelled, tmp_path, capsys):
    assert main(["data", "prepare", str(labelled), "--resolution", "8", "--out", str(tmp_path / "c"), "--workers", "1"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert "24 images 3x8x8" in out and "1 bad file(s) skipped (cats/broken.png)" in out


def test_an_unchanged_cache_is_reused(labelled, tmp_path):
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    pixels = tmp_path / "cache" / "images.u8"
    before = pixels.stat().st_mtime_ns
    report = prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    assert report.reused and "up to date" in report.summary()
    assert pixels.stat().st_mtime_ns == before


def test_a_changed_source_is_named_then_prepared_again(labelled, tmp_path, refused):
    cache = tmp_path / "cache"
    prepare_cache(labelled, 8, cache, workers=1, progress=False)
    touched = labelled / "dogs" / "05.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    with pytest.raises(UserError, match=r"changed since \(1 changed: dogs/05.png\)"):
        ImageCache.open(cache)
    refused(train_args(cache, tmp_path / "run", "--steps", "1"), "1 changed: dogs/05.png", tmp_path)

    (labelled / "cats" / "00.png").unlink()
    shutil.copy(labelled / "dogs" / "01.png", labelled / "dogs" / "new.png")
    with pytest.raises(UserError, match="1 changed: dogs/05.png; 1 added: dogs/new.png; 1 removed: cats/00.png"):
        ImageCache.open(cache)
    report = prepare_cache(labelled, 8, cache, workers=1, progress=False)
    assert not report.reused and "1 added: dogs/new.png" in report.summary()
    assert torch.equal(ImageCache.open(cache).read(torch.arange(24)), in_memory_set(labelled, 8).images)


def test_a_truncated_cache_and_another_format_version_are_refused(labelled, tmp_path, refused):
    cache = tmp_path / "cache"
    prepare_cache(labelled, 8, cache, workers=1, progress=False)
    pixels = cache / "images.u8"
    os.truncate(pixels, pixels.stat().st_size - 100)
    refused(train_args(cache, tmp_path / "run", "--steps", "1"), "images.u8 is truncated", tmp_path)

    prepare_cache(labelled, 8, cache, workers=1, progress=False)  # a truncated pixel file is not a reusable cache
    manifest = json.loads((cache / "image-cache.json").read_text())
    (cache / "image-cache.json").write_text(json.dumps({**manifest, "version": 99}))
    refused(train_args(cache, tmp_path / "run", "--steps", "1"), "format version 99", tmp_path)
    assert "format version 99" in prepare_cache(labelled, 8, cache, workers=1, progress=False).summary()
    ImageCache.open(cache)


def test_prepare_refuses_a_folder_it_did_not_write(labelled, tmp_path, refused):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    refused(["data", "prepare", str(labelled), "--resolution", "8", "--out", str(tmp_path / "notes")], "not empty",
            tmp_path)
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    refused(["data", "prepare", str(labelled), "--resolution", "16", "--out", str(tmp_path / "cache")],
            "choose another --out", tmp_path)


KILLED_AT_THIRD_COMMIT = """
import os, signal, sys
import ganforge.data.cache as cache
cache.BATCH_FILES, real_commit, calls = 4, cache._commit, []
def commit(journal, lines):  # the third batch's rows are on disk, its journal line is not
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    real_commit(journal, lines)
cache._commit = commit
cache.prepare_cache(sys.argv[1], 8, sys.argv[2], workers=1, progress=False)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_an_interrupted_prepare_resumes_to_the_same_cache(labelled, tmp_path, monkeypatch, refused, how):
    monkeypatch.setattr(cache_module, "BATCH_FILES", 4)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    prepare_cache(labelled, 8, straight, workers=1, progress=False)
    if how == "sigkill":
        killed = subprocess.run([sys.executable, "-c", KILLED_AT_THIRD_COMMIT, str(labelled), str(resumed)])
        assert killed.returncode == -9
    else:  # in this process, with a pool of workers to stop
        real_commit, calls = cache_module._commit, []

        def interrupted_commit(journal, lines):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            real_commit(journal, lines)

        monkeypatch.setattr(cache_module, "_commit", interrupted_commit)
        with pytest.raises(KeyboardInterrupt):
            prepare_cache(labelled, 8, resumed, workers=2, progress=False)
        monkeypatch.setattr(cache_module, "_commit", real_commit)
    assert (resumed / ".images.u8.partial").stat().st_size == 12 * 3 * 8 * 8  # three batches of rows, two committed
    with open(resumed / ".prepare.jsonl", "a") as f:
        f.write('[{"path": "cats/08.png", "si')  # and a journal line cut short
    assert not (resumed / "image-cache.json").exists()
    refused(train_args(resumed, tmp_path / "run", "--steps", "1"), "unfinished image cache", tmp_path)

    report = prepare_cache(labelled, 8, resumed, workers=2, progress=False)
    assert report.resumed == 8 and report.images == 24
    assert (resumed / "images.u8").read_bytes() == (straight / "images.u8").read_bytes()
    assert json.loads((resumed / "image-cache.json").read_text()) == json.loads((straight / "image-cache.json").read_text())
    assert sorted(p.name for p in resumed.iterdir()) == ["image-cache.json", "images.u8"]


def test_a_full_disk_stops_prepare_in_one_line_and_it_resumes(labelled, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing: exit 2, one line naming --out; the half-written cache is refused for training, and the
    same command run again (space freed) finishes it, byte for byte as a prepare never stopped."""
    monkeypatch.setattr(cache_module, "BATCH_FILES", 4)
    straight, full = tmp_path / "straight", tmp_path / "full"
    prepare_cache(labelled, 8, straight, workers=1, progress=False)
    real_commit, calls = cache_module._commit, []

    def commit_on_a_full_disk(journal, lines):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_commit(journal, lines)

    monkeypatch.setattr(cache_module, "_commit", commit_on_a_full_disk)
    args = ["data", "prepare", str(labelled), "--resolution", "8", "--out", str(full), "--workers", "1"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if "error" in line]  # after the progress bar
    assert len(errors) == 1 and "--out: the disk holding" in errors[0] and "is full" in errors[0], err
    assert "Traceback" not in err
    assert not (full / "image-cache.json").exists()
    monkeypatch.setattr(cache_module, "_commit", real_commit)
    assert main(args) == 0
    assert (full / "images.u8").read_bytes() == (straight / "images.u8").read_bytes()


# ---------------------------------------------------------------------------- training from a cache
@pytest.mark.parametrize("extra", [[], ["--conditional"]])
def test_training_from_a_cache_equals_training_in_memory(labelled, tmp_path, extra):
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    assert main(train_args(labelled, tmp_path / "memory", "--resolution", "8", "--steps", "5", *extra)) == 0
    assert main(train_args(tmp_path / "cache", tmp_path / "streamed", "--steps", "5", *extra)) == 0
    assert_same_weights(tmp_path / "memory", tmp_path / "streamed")


def test_a_large_folder_is_cached_automatically(labelled, tmp_path, monkeypatch, caplog):
    assert main(train_args(labelled, tmp_path / "memory", "--resolution", "8", "--steps", "3")) == 0
    monkeypatch.setattr(training_set, "AUTO_CACHE_BYTES", 1000)  # 24 images of 8x8x3 bytes are "large" now
    with caplog.at_level("INFO", logger="ganforge"):
        assert main(train_args(labelled, tmp_path / "streamed", "--resolution", "8", "--steps", "3")) == 0
    folder = training_set.auto_cache_folder(labelled, 8, 3)
    assert f"decoding it once into {folder}" in caplog.text and (folder / "image-cache.json").exists()
    assert_same_weights(tmp_path / "memory", tmp_path / "streamed")
    with pytest.raises(UserError, match="under torchrun, prepare its cache first"):
        open_training_set(str(labelled), 16, None, distributed=True)  # no cache at 16 px yet: not made by every rank


def test_opening_a_large_folder_searches_it_once_and_reads_the_manifest_once(labelled, tmp_path, monkeypatch):
    monkeypatch.setattr(training_set, "AUTO_CACHE_BYTES", 1000)
    searches, manifests = [], []
    real_find, real_manifest = cache_module.find_images, cache_module.read_manifest
    monkeypatch.setattr(training_set, "find_images", lambda *a: searches.append(a) or real_find(*a))
    monkeypatch.setattr(cache_module, "find_images", lambda *a: searches.append(a) or real_find(*a))
    monkeypatch.setattr(cache_module, "read_manifest", lambda *a, **k: manifests.append(a) or real_manifest(*a, **k))
    for distributed in (False, False, True):  # prepared, then up to date (and what every rank of torchrun does)
        searches.clear(), manifests.clear()
        data = open_training_set(str(labelled), 8, None, distributed=distributed)
        assert len(searches) == 1 and len(manifests) <= 1 and len(data) == 24


def test_resume_from_a_cache_is_exact(labelled, tmp_path):
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(train_args(tmp_path / "cache", straight, "--steps", "8")) == 0  # 3 updates an epoch: crosses epochs
    assert main(train_args(tmp_path / "cache", split, "--steps", "4")) == 0
    assert main(train_args(tmp_path / "cache", split, "--steps", "8", "--resume")) == 0
    assert_same_weights(straight, split)
    assert [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()] == list(range(1, 9))


def test_other_tasks_and_other_sizes_refuse_a_cache(labelled, tmp_path, refused):
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    refused(train_args(tmp_path / "cache", tmp_path / "run", "--resolution", "16"), "holds 8x8 images", tmp_path)
    refused(["train", "--task", "style", "--style", str(labelled / "cats" / "00.png"), "--data", str(tmp_path / "cache"),
             "--out", str(tmp_path / "run")], "--task style cannot read", tmp_path)
    refused(["train", "--task", "inpaint", "--data", str(tmp_path / "cache"), "--patch-size", "16", "--out",
             str(tmp_path / "run")], "--patch-size: " + f"{tmp_path / 'cache'} holds 8x8 images, smaller than", tmp_path)
    refused(["features", "train", "--data", str(tmp_path / "cache"), "--out", str(tmp_path / "f")],
            "is a prepared image cache", tmp_path)
    prepare_cache(labelled, 16, tmp_path / "grey", workers=1, channels=1, progress=False)
    refused(["train", "--task", "superres", "--scale", "2", "--patch-size", "16", "--data", str(tmp_path / "grey"),
             "--out", str(tmp_path / "run")], "holds greyscale images", tmp_path)


def test_the_monitor_gets_a_fixed_sample_of_a_cache_in_memory(labelled, tmp_path):
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    sample = in_memory(ImageCache.open(tmp_path / "cache"), 5)
    expected = in_memory_set(labelled, 8)
    pick = torch.randperm(24, generator=torch.Generator().manual_seed(0))[:5].sort().values
    assert torch.equal(sample.images, expected.images[pick]) and torch.equal(sample.labels, expected.labels[pick])


def test_the_prefetcher_reads_the_next_update_in_the_background():
    reads = []

    def read(indices):
        reads.append((int(indices[0]), threading.current_thread() is threading.main_thread()))
        return indices * 10

    prefetch = Prefetcher(read, lambda update: torch.tensor([update]), end=3)
    assert [int(prefetch.batch(u)) for u in (0, 1, 2, 0, 1)] == [0, 10, 20, 0, 10]  # back to 0: a rollback
    prefetch.close()
    # update 0 in the caller's thread, 1 and 2 ahead in the background and nothing past the end; after the rollback
    # 0 in the caller's thread again, 1 ahead (and 2 ahead, unless `close` cancelled it before it started)
    assert reads[:5] == [(0, True), (1, False), (2, False), (0, True), (1, False)]
    assert reads[5:] in ([], [(2, False)])


# ---------------------------------------------------------------------------- crops (super-resolution, inpainting)
@pytest.fixture
def square_photos(tmp_path):
    """Six smooth random RGB photos of 48x48: a cache at --resolution 48 holds their pixels unchanged."""
    root = tmp_path / "square"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        noise = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((48, 48), Image.Resampling.BICUBIC).save(root / f"p{i}.png")
    return root


@pytest.mark.parametrize("max_patches", [20_000, 20])
def test_cached_crops_are_the_photo_crops_and_read_only_their_rows(square_photos, tmp_path, monkeypatch, max_patches):
    prepare_cache(square_photos, 48, tmp_path / "cache", workers=1, progress=False)
    cache = ImageCache.open(tmp_path / "cache")
    crops = cache.crops(16, max_patches)
    expected = extract_patches(load_photos(str(square_photos))[0], 16, max_patches)  # decoded from the PNGs, in memory
    assert crops.shape == tuple(expected.shape) and len(crops) == (6 * 8 * 8 if max_patches > 384 else 6 * 3)  # y, x in 0, 5, .., 30, 32; or 3 a photo
    picked = torch.tensor([len(crops) - 1, 0, 3, 3])
    assert torch.equal(crops.read(torch.arange(len(crops))), expected)
    assert torch.equal(crops.read(picked), expected[picked])

    reads, real_read_at = [], ImageCache._read_at

    def recorded(self, buffer, offset):
        reads.append((offset, len(buffer)))
        return real_read_at(self, buffer, offset)

    monkeypatch.setattr(ImageCache, "_read_at", recorded)
    image_bytes, plane = 3 * 48 * 48, 48 * 48
    images = cache.read(torch.arange(6))
    for i in range(len(crops)):
        reads.clear()
        crop = crops.read(torch.tensor([i]))[0]
        image, y = reads[0][0] // image_bytes, reads[0][0] % plane // 48
        assert sorted(reads) == [(image * image_bytes + c * plane + y * 48, 16 * 48) for c in range(3)]  # 16 rows a channel
        assert any(torch.equal(images[image, :, y : y + 16, x : x + 16], crop) for x in range(33))  # the crop is in them


TASK_ARGS = {"superres": ["--task", "superres", "--scale", "2", "--fidelity-steps", "2", "--patch-size", "16"],
             "inpaint": ["--task", "inpaint", "--patch-size", "32"]}


@pytest.mark.parametrize("task", ["superres", "inpaint"])
def test_a_crop_task_trains_from_a_cache_as_from_its_folder_and_resumes_exactly(square_photos, tmp_path, task):
    """The run from the folder's photos in memory and the run from their cache, stopped and resumed, end with
    the same weights and the same metrics (held-out checks included)."""
    prepare_cache(square_photos, 48, tmp_path / "cache", workers=1, progress=False)
    args = [*TASK_ARGS[task], "--blocks", "1", "--batch-size", "4", "--max-images", "4",
            "--eval-every", "2", "--log-every", "1"]
    memory, streamed = tmp_path / "memory", tmp_path / "streamed"
    run = ["train", "--width", "8", *args]
    assert main([*run, "--data", str(square_photos), "--out", str(memory), "--steps", "4"]) == 0
    assert main([*run, "--data", str(tmp_path / "cache"), "--out", str(streamed), "--steps", "2"]) == 0
    assert main([*run, "--data", str(tmp_path / "cache"), "--out", str(streamed), "--steps", "4", "--resume"]) == 0
    assert_same_weights(memory, streamed)
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "img_per_s"}
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()] for run_dir in (memory, streamed)]
    assert metrics[0] == metrics[1] and sum(r.get("event") == "eval" for r in metrics[0]) == 2


# ---------------------------------------------------------------------------- torchrun
def test_the_ranks_shares_of_an_epoch_hold_every_image_once():
    shares = [epoch_share(seed=3, epoch=1, num_images=40, rank=r, world_size=4, count=10) for r in range(4)]
    assert sorted(torch.cat(shares).tolist()) == list(range(40))
    assert not torch.equal(shares[0], epoch_share(seed=3, epoch=2, num_images=40, rank=0, world_size=4, count=10))


def test_two_process_torchrun_streams_disjoint_shares_of_a_cache(labelled, tmp_path):
    """32 images, batches of 8 on each of 2 ranks: 2 steps are one epoch, in which each image is read once."""
    for i, image in enumerate(sorted((labelled / "dogs").iterdir())[:8]):
        shutil.copy(image, labelled / "dogs" / f"copy{i}{image.suffix}")
    prepare_cache(labelled, 8, tmp_path / "cache", workers=1, progress=False)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(Path(__file__).with_name("ddp_cache_worker.py")),
           str(tmp_path / "cache"), str(tmp_path / "run"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Grad strides do not match bucket view strides" not in proc.stderr
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    read = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(len(r) == 16 for r in read)  # each rank read its 16, and nothing else
    assert sorted(read[0] + read[1]) == list(range(32))
