"""A run killed at any moment resumes, and ends bit-identical to one never killed (see benchmarks/kill_drill.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import ganforge.atomic as atomic
from ganforge.atomic import atomic_folder, atomic_path, read_together, remove_leftovers
from ganforge.cli import main
from ganforge.saved_model import load_model, save_model

DRILL = Path(__file__).resolve().parent.parent / "benchmarks" / "kill_drill.py"


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    files = [run / "checkpoints" / "last.safetensors", *sorted((run / "model").glob("*.safetensors"))]
    return {f"{f.parent.name}/{k}": v for f in files for k, v in load_file(str(f)).items()}


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = final_tensors(a), final_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    steps = [json.loads(line)["step"] for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert not [p for p in b.rglob(".*") if ".tmp" in p.name], "leftovers of the killed writes were not removed"


@pytest.fixture
def straight(tmp_path_factory, small_args):
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(small_args(run, "--steps", "8", "--checkpoint-every", "2")) == 0
    return run


def dead_pid() -> int:
    """The pid of a process that has exited: what a killed writer's temporary names carry."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_resume_copes_with_what_a_kill_leaves(tmp_path, small_args, straight):
    """A metrics line cut short, a half-written checkpoint, a half-built model folder, a half-written sample."""
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "4", "--checkpoint-every", "2")) == 0
    pid = dead_pid()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss_d": 1.3')
    (run / "checkpoints" / f".last.{pid}.tmp.safetensors").write_bytes(b"\x08\x00\x00")
    half_built = run / f".model.{pid}.tmp"
    half_built.mkdir()
    (half_built / "config.json").write_text('{"task": "generation", "arch": "dcgan", "resol')
    (run / "samples" / f".latest.{pid}.tmp.png").write_bytes(b"\x89PN")
    assert main(small_args(run, "--steps", "8", "--checkpoint-every", "2", "--resume")) == 0
    assert_same_run(straight, run)


def test_resume_before_the_first_checkpoint(tmp_path, small_args, straight, caplog):
    """Killed after writing its config and some metrics but no checkpoint, or before even its config."""
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "4", "--checkpoint-every", "2")) == 0
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "model")
    with caplog.at_level("INFO", logger="ganforge"):
        assert main(small_args(run, "--steps", "8", "--checkpoint-every", "2", "--resume")) == 0
    assert "no checkpoint yet" in caplog.text
    assert_same_run(straight, run)

    early = tmp_path / "early"
    (early / "checkpoints").mkdir(parents=True)
    assert main(small_args(early, "--steps", "8", "--checkpoint-every", "2", "--resume")) == 0
    assert_same_run(straight, early)


@pytest.mark.parametrize("moment", ["model-swapped", "checkpoint-unrenamed"])
def test_sigkill_inside_a_write_then_resume_is_exact(tmp_path, small_args, straight, moment):
    """A real SIGKILL, sent by the run to itself inside its 2nd model swap or checkpoint write."""
    run = tmp_path / "run"
    args = small_args(run, "--steps", "8", "--checkpoint-every", "2")
    killed = subprocess.run([sys.executable, str(DRILL), "--child", moment, "2", *args], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert [p.name for p in run.rglob(".*") if ".tmp" in p.name]  # it did die mid-write
    resumed = subprocess.run([sys.executable, "-m", "ganforge", *args, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert_same_run(straight, run)


def test_atomic_path_syncs_data_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(atomic, "fsync", lambda path: calls.append(("fsync", Path(path).name)))
    real_replace = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (calls.append(("rename", Path(b).name)), real_replace(a, b)))
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new")
    assert calls == [("fsync", tmp.name), ("rename", "a.txt"), ("fsync", tmp_path.name)]
    assert (tmp_path / "a.txt").read_text() == "new" and not tmp.exists()


def test_written_files_get_the_mode_a_plain_write_gives(tmp_path, monkeypatch):
    """safetensors writes its files owner-only (0o600); a model folder or checkpoint must be as readable as any file
    the user's umask allows, or a folder shared with a group, or served by another user, cannot be loaded."""
    mask = os.umask(0o022)
    os.umask(mask)
    assert atomic.FILE_MODE == 0o666 & ~mask
    for mode in (atomic.FILE_MODE, 0o640):
        monkeypatch.setattr(atomic, "FILE_MODE", mode)
        save_model(tmp_path / "model", {"version": 1}, {"generator": {"w": torch.zeros(3)}})
        with atomic_path(tmp_path / "weights.safetensors") as tmp:
            save_file({"w": torch.zeros(3)}, str(tmp))
        written = [tmp_path / "model" / "generator.safetensors", tmp_path / "model" / "config.json",
                   tmp_path / "weights.safetensors"]
        assert [oct(p.stat().st_mode & 0o777) for p in written] == [oct(mode)] * 3


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_a_model_folder_is_replaced_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    folder = tmp_path / "model"
    save_model(folder, {"version": 1}, {"generator": {"w": torch.zeros(3)}})
    save_model(folder, {"version": 2}, {"generator": {"w": torch.ones(3)}})
    config, weights = load_model(folder, "generator")
    assert config["version"] == 2 and torch.equal(weights["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_reader_never_sees_a_mixed_model_folder(tmp_path, monkeypatch):
    """The new folder is swapped in while a reader is between its two files: it reads the old pair or the new."""
    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "a").write_text("old a")
        (tmp / "b").write_text("old b")
    real_open = atomic.os.open
    swapped = []

    def open_then_swap(path, flags, *args, dir_fd=None):
        fd = real_open(path, flags, *args, dir_fd=dir_fd)
        if path == "a" and not swapped:  # a writer swaps in (and deletes the old) between the reader's two files
            swapped.append(True)
            with atomic_folder(folder) as new:
                (new / "a").write_text("new a")
                (new / "b").write_text("new b")
        return fd

    monkeypatch.setattr(atomic.os, "open", open_then_swap)
    assert read_together(folder, ["a", "b"]) == [b"new a", b"new b"]


def test_leftovers_of_live_writers_are_kept(tmp_path):
    dead, live = dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid in (dead, live.pid):
            (tmp_path / f".last.{pid}.tmp.safetensors").write_text("x")
            (tmp_path / f".model.{pid}.tmp").mkdir()
        (tmp_path / ".keep").write_text("not ours")
        remove_leftovers(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [".keep", f".last.{live.pid}.tmp.safetensors", f".model.{live.pid}.tmp"])
    finally:
        live.kill()
        live.wait()


def test_a_kill_between_the_fallbacks_two_renames_loses_no_model(tmp_path):
    """Without renameat2 the old folder is moved aside, then the new one moved in: killed between the two, the
    disk holds no `model/`, the old one aside and the new one still temporary. The committed (old) one comes back."""
    pid = dead_pid()
    save_model(tmp_path / "model", {"version": 1}, {"generator": {"w": torch.zeros(3)}})
    (tmp_path / "model").rename(tmp_path / f".model.{pid}.tmp-old")
    save_model(tmp_path / f".model.{pid}.tmp", {"version": 2}, {"generator": {"w": torch.ones(3)}})
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert load_model(tmp_path / "model", "generator")[0]["version"] == 1


def test_an_old_folder_aside_is_deleted_once_the_new_one_is_in(tmp_path):
    """Killed after the second rename, before deleting the old folder: the new one stays, the old one goes."""
    pid = dead_pid()
    save_model(tmp_path / "model", {"version": 2}, {"generator": {"w": torch.ones(3)}})
    save_model(tmp_path / f".model.{pid}.tmp-old", {"version": 1}, {"generator": {"w": torch.zeros(3)}})
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert load_model(tmp_path / "model", "generator")[0]["version"] == 2


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    folder = tmp_path / "model"
    save_model(folder, {"version": 1}, {"generator": {"w": torch.zeros(3)}})
    real_rename = atomic.os.rename

    def failing_second_rename(a, b):
        if Path(a).name.endswith(".tmp") and Path(b) == folder:
            raise OSError(28, "No space left on device")
        real_rename(a, b)

    monkeypatch.setattr(atomic.os, "rename", failing_second_rename)
    with pytest.raises(OSError):
        save_model(folder, {"version": 2}, {"generator": {"w": torch.ones(3)}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert load_model(folder, "generator")[0]["version"] == 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not (atomic.FOLDER_HANDLES and Path("/proc/self/fd").is_dir()), reason="Linux folder handles")
def test_read_together_retries_a_missing_folder_and_leaks_no_handle(tmp_path, monkeypatch):
    with atomic_folder(tmp_path / "m") as tmp:
        (tmp / "a").write_text("a")
        (tmp / "b").write_text("b")
    real_open, calls = atomic.os.open, []

    def flaky_open(path, flags, *args, dir_fd=None):
        calls.append(path)
        if len(calls) == 1:
            raise FileNotFoundError(path)  # the fallback's instant without a folder
        if path == "b" and len(calls) == 7:  # the second read: a file it may not open
            raise PermissionError(path)
        return real_open(path, flags, *args, dir_fd=dir_fd)

    monkeypatch.setattr(atomic.os, "open", flaky_open)
    before = open_fds()
    assert read_together(tmp_path / "m", ["a", "b"]) == [b"a", b"b"]
    assert open_fds() == before
    with pytest.raises(PermissionError):
        read_together(tmp_path / "m", ["a", "b"])
    assert open_fds() == before
