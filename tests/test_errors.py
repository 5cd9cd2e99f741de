"""Every user error: one line on stderr naming the thing, exit code 2, no traceback, nothing lost."""

import subprocess
import sys

import pytest

from ganforge.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--data", "/no/such/folder"], "/no/such/folder does not exist"),
        (["train", "--data", "digits", "--resolution", "30"], "--resolution"),
        (["train", "--data", "digits", "--arch", "seed", "--resolution", "64"], "--resolution"),
        (["train", "--data", "digits", "--batch-size", "0"], "--batch-size"),
        (["train", "--data", "digits", "--lr", "5"], "--lr"),
        (["train", "--data", "digits", "--steps", "-3"], "--steps"),
        (["train", "--data", "digits", "--channels", "2"], "--channels"),
        (["train", "--data", "digits", "--steps", "3", "--epochs", "1"], "--steps and --epochs"),
        (["train", "--data", "digits", "--device", "cuda:99"], "--device"),
        (["train", "--data", "digits", "--device", "toaster"], "--device"),
        (["train", "--data", "digits", "--config", "/no/such.yaml"], "/no/such.yaml"),
        (["sample", "/no/such/run"], "/no/such/run"),
        (["sample", "--model", "no-such-model"], "no-such-model"),
        (["sample", "--model", "mnist5k", "--n", "0"], "--n"),
        (["interpolate", "--model", "mnist5k", "--seeds", "1"], "--seeds"),
        (["interpolate", "--model", "mnist5k", "--seeds", "a,b"], "--seeds"),
        (["interpolate", "--model", "mnist5k", "--out", "walk.txt"], "--out"),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, *args, *(["--out", str(tmp_path / "o")] if args[0] == "train" else []))
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err, err


def test_empty_folder_and_not_a_run(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = run_cli(capsys, "train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert code == 2 and "holds no image" in err
    code, err = run_cli(capsys, "sample", str(tmp_path / "empty"))
    assert code == 2 and "not a run directory" in err


def test_existing_run_is_not_overwritten(capsys, tmp_path, small_args):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "2")) == 0
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    code, err = run_cli(capsys, *small_args(run, "--steps", "2"))
    assert code == 2 and "already holds a run" in err
    code, err = run_cli(capsys, *small_args(run, "--steps", "4", "--lr", "0.001", "--resume"))
    assert code == 2 and "--lr" in err
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before


def test_resume_without_checkpoint(capsys, tmp_path):
    code, err = run_cli(capsys, "train", "--out", str(tmp_path / "none"), "--resume")
    assert code == 2 and "no checkpoint" in err


def test_unwritable_output(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(capsys, "sample", "--model", "mnist5k", "--out", str(blocker / "grid.png"))
    assert code == 2 and "--out" in err
    assert blocker.read_text() == "x"


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", str(tmp_path / "missing")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
