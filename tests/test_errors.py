"""Every user error: one line on stderr naming the thing, exit code 2, no traceback, nothing lost."""

import subprocess
import sys

import pytest
from PIL import Image

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


def test_resume_without_checkpoint(capsys, caplog, tmp_path, small_args):
    code, err = run_cli(capsys, "train", "--out", str(tmp_path / "none"), "--resume")
    assert code == 2 and "no checkpoint" in err and not (tmp_path / "none").exists()
    # A run killed before it wrote anything resumes from step 0 with the options given, and says so.
    with caplog.at_level("WARNING", logger="ganforge"):
        assert main(small_args(tmp_path / "killed", "--steps", "2", "--resume")) == 0
    assert "holds no run yet" in caplog.text and (tmp_path / "killed" / "model" / "config.json").exists()


def test_resume_applies_the_same_rules_to_config_file_values(capsys, tmp_path):
    """--config values are given options too: refused where they would change a resumed run, used where they may."""
    run = tmp_path / "run"
    recipe = tmp_path / "c.yaml"
    recipe.write_text("data: digits\nresolution: 8\nwidth: 8\nbatch_size: 16\nsteps: 2\n")
    (run / "checkpoints").mkdir(parents=True)  # killed before it saved its config.yaml
    assert main(["train", "--config", str(recipe), "--out", str(run), "--resume"]) == 0
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    capsys.readouterr()
    recipe.write_text("data: digits\nresolution: 8\nwidth: 8\nbatch_size: 16\nsteps: 3\nlr: 1e-3\n")
    code, err = run_cli(capsys, "train", "--config", str(recipe), "--out", str(run), "--resume")
    assert code == 2 and err.startswith("ganforge train: error: --lr: 0.001 differs from the run's 0.0002"), err
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before
    recipe.write_text("steps: 3\n")
    assert main(["train", "--config", str(recipe), "--out", str(run), "--resume"]) == 0
    assert "steps: 3" in (run / "config.yaml").read_text()


def test_a_bad_value_in_a_saved_run_config_names_the_file(capsys, tmp_path, small_args):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "2")) == 0
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("batch_size: 16", "batch_size: 0"))
    capsys.readouterr()
    code, err = run_cli(capsys, "train", "--out", str(run), "--resume", "--steps", "3")
    assert code == 2 and err == f"ganforge train: error: {saved}: --batch-size: must be at least 1, got 0", err


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


def snapshot(folder):
    """Names, sizes and modification times of everything under `folder`: what "the disk is as it was" compares."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("args", [
    ["train", "--data", "/no/such/folder", "--out", "{t}/new/run"],
    ["train", "--data", "{t}/empty", "--out", "{t}/new/run"],
    ["train", "--data", "digits", "--resolution", "30", "--out", "{t}/new/run"],
    ["train", "--data", "digits", "--task", "superres", "--spectral-norm", "--out", "{t}/new/run"],
    ["train", "--data", "{t}/notes.txt", "--out", "{t}/run-exists"],
    ["sample", "/no/such/run", "--out", "{t}/new/grid.png"],
    ["sample", "{t}/empty", "--out", "{t}/new/folder"],
    ["sample", "--model", "mnist5k", "--class", "3", "--out", "{t}/new/grid.png"],
    ["interpolate", "--model", "mnist5k", "--seeds", "1", "--out", "{t}/new/walk.gif"],
    ["augment", "--model", "mnist5k", "--per-class", "2", "--out", "{t}/new/set"],
    ["evaluate", "mnist5k", "--data", "{t}/empty", "--out", "{t}/new/report.json"],
    ["evaluate", "superres-x2", "--data", "{t}/notes.txt", "--out", "{t}/new/report.json"],
    ["upscale", "{t}/notes.txt", "--out", "{t}/new/up.png"],
    ["upscale", "{t}/empty", "--out", "{t}/new/up"],
    ["features", "train", "--data", "{t}/empty", "--out", "{t}/new/features"],
], ids=lambda a: " ".join(a).replace("{t}/", ""))
def test_failed_commands_leave_the_disk_as_it_was(capsys, tmp_path, monkeypatch, args):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "run-exists").mkdir()
    (tmp_path / "run-exists" / "config.yaml").write_text("data: digits\n")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, *[a.format(t=tmp_path) for a in args])
    assert code == 2 and len(err.splitlines()) == 1, err
    assert snapshot(tmp_path) == before


def test_writability_is_checked_without_creating_anything(tmp_path):
    from ganforge.errors import UserError
    from ganforge.imageio import check_writable

    check_writable(tmp_path / "a" / "b" / "grid.png")
    assert not (tmp_path / "a").exists()
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="broken link"):
        check_writable(tmp_path / "link" / "x.png")


@pytest.mark.parametrize("args", [
    ["sample", "--model", "mnist5k", "--n", "4", "--out", "{t}/grid.png"],
    ["interpolate", "--model", "mnist5k", "--out", "{t}/grid.png"],
    ["evaluate", "mnist5k", "--data", "digits", "--out", "{t}/grid.png"],
    ["upscale", "{t}/in.png", "--overwrite", "--out", "{t}/grid.png"],
    ["inpaint", "{t}/in.png", "--box", "0,0,4,4", "--overwrite", "--out", "{t}/grid.png"],
], ids=lambda a: a[0])
def test_a_file_output_that_is_a_folder_is_refused_before_the_work(capsys, tmp_path, args):
    (tmp_path / "grid.png").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    code, err = run_cli(capsys, *[a.format(t=tmp_path) for a in args])
    assert code == 2 and err.endswith(f"--out: {tmp_path / 'grid.png'} is a folder; name a file"), err


@pytest.mark.parametrize("command, args, says", [
    ("train", ["train", "--data", "digits"], "--resume"),
    ("upscale", ["upscale", "x.png"], "run the same command again"),
    ("sample", ["sample", "--model", "mnist5k"], "none is half-written"),
    ("evaluate", ["evaluate", "mnist5k"], "no report was written"),
])
def test_ctrl_c_message_fits_the_command(capsys, monkeypatch, command, args, says):
    import ganforge.cli

    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(ganforge.cli, f"_{command}", interrupted)
    code, err = run_cli(capsys, *args)
    assert code == 130 and err.startswith(f"ganforge {command}: interrupted;") and says in err, err
    assert ("--resume" in err) == (command == "train")


@pytest.mark.parametrize("args, needle", [
    (["--task", "superres", "--spectral-norm"], "--spectral-norm: only applies to --task generation"),
    (["--task", "superres", "--arch", "seed"], "--arch: only applies to --task generation"),
    (["--task", "superres", "--conditional"], "--conditional: only applies to --task generation"),
    (["--task", "superres", "--latent-dim", "64"], "--latent-dim: only applies to --task generation"),
    (["--scale", "2"], "--scale: only applies to --task superres"),
    (["--patch-size", "48"], "--patch-size: only applies to --task inpaint or style or superres"),
    (["--masks", "box"], "--masks: only applies to --task inpaint"),
    (["--task", "superres", "--inpaint-net", "conv"], "--inpaint-net: only applies to --task inpaint"),
    (["--augment", "none", "--augment-p", "0.5"], "--augment-p: only applies with --augment"),
    (["--task", "superres", "--topk", "0.5"], "--topk: only applies to --task generation"),
    (["--topk", "0"], "--topk: must be in (0, 1]"),
    (["--task", "superres", "--augment-target", "0.6"], "--augment-target: only applies with --augment"),
    (["--cond-d", "acgan"], "--cond-d: only applies with --conditional"),
    (["--conditional", "--ac-weight", "2"], "--ac-weight: only applies with --cond-d acgan"),
    (["--gp-weight", "5"], "--gp-weight: only applies with --loss wgan-gp"),
    (["--r1-gamma", "0", "--r1-every", "4"], "--r1-every: only applies with --r1-gamma"),
    (["--arch", "seed", "--width", "32"], "--width: only applies with --arch dcgan"),
    (["--arch", "seed", "--depth", "1"], "--depth: only applies with --arch dcgan"),
    (["--task", "superres", "--depth", "1"], "--depth: only applies to --task generation"),
    (["--depth", "-1"], "--depth: must be at least 0, got -1"),
])
def test_options_that_do_not_apply_are_refused(capsys, tmp_path, args, needle):
    code, err = run_cli(capsys, "train", "--data", "digits", *args, "--out", str(tmp_path / "run"))
    assert code == 2 and err.startswith("ganforge train: error: ") and needle in err, err
    assert not (tmp_path / "run").exists()


def test_options_that_apply_pass_and_every_recipe_validates():
    from pathlib import Path

    from ganforge.config import TrainConfig, load_yaml

    TrainConfig(augment="color", augment_p=0.5, augment_target=0.6).validate()
    TrainConfig(conditional=True, cond_d="acgan", ac_weight=2.0, spectral_norm=True).validate()
    TrainConfig(task="superres", scale=2, patch_size=64, loss="wgan-gp", gp_weight=5.0).validate()
    TrainConfig(task="superres", width=32).validate()  # their arch stays at its default, dcgan
    TrainConfig(task="inpaint", width=16).validate()
    recipes = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(recipes) >= 6
    for recipe in recipes:
        TrainConfig.from_dict(load_yaml(recipe), str(recipe)).validate()


@pytest.mark.parametrize("yaml_text, needle", [
    ("steps: lots\n", "--steps: expected an integer, got 'lots'"),
    ("spectral_norm: 1\n", "--spectral-norm: expected true or false"),
    ("loss: squared\n", "--loss: 'squared' is not one of"),
    ("task: paint\n", "--task: 'paint' is not one of generation, superres, inpaint"),
    ("lr: fast\n", "--lr: expected a number, got 'fast'"),
    ("max_minutes: inf\n", "--max-minutes: expected a number, got 'inf'"),
])
def test_config_file_values_are_checked(capsys, tmp_path, yaml_text, needle):
    (tmp_path / "c.yaml").write_text(yaml_text)
    code, err = run_cli(capsys, "train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
    assert code == 2 and needle in err, err


def test_defaults_that_depend_on_the_task(capsys):
    """Johnson et al.'s Adam betas and batch for the fast style network, CycleGAN's LSGAN for translation; a value given
    wins; an adversarial option stays None where there is no discriminator; help shows both defaults."""
    from ganforge.config import TrainConfig
    from ganforge.errors import UserError

    style, generation = TrainConfig(task="style", style="s.png").validate(), TrainConfig().validate()
    assert (style.lr, style.beta1, style.batch_size, style.ema_decay, style.loss) == (2e-4, 0.9, 4, 0.99, None)
    assert (generation.lr, generation.beta1, generation.batch_size, generation.ema_decay) == (2e-4, 0.5, 64, 0.999)
    assert (generation.loss, TrainConfig(task="translate").loss, TrainConfig(task="translate", loss="hinge").loss) == (
        "bce", "lsgan", "hinge")
    # colour DiffAugment for generation only; a style run has no discriminator to augment for
    assert (generation.augment, TrainConfig(task="superres").augment, style.augment) == ("color", "none", None)
    assert TrainConfig(augment="none").validate().augment == "none"
    assert TrainConfig(task="style", style="s.png", beta1=0.5, batch_size=64).validate().beta1 == 0.5
    # A style run saved when bce was every task's default still loads (and resumes); a null is refused in one line.
    assert TrainConfig.from_dict({"task": "style", "style": "s.png", "loss": "bce"}).validate().loss is None
    with pytest.raises(UserError, match="--pool-size: needs a value, got nothing"):
        TrainConfig.from_dict({"pool_size": None}).validate()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "(default: 0.5; 0.9 for --task style)" in " ".join(capsys.readouterr().out.split())


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads `1e-4` as a string; a config that says `lr: 1e-4` means the number."""
    from ganforge.config import TrainConfig, load_yaml

    (tmp_path / "c.yaml").write_text("lr: 1e-4\nbeta2: 9.99E-1\nmax_minutes: 2e1\n")
    cfg = TrainConfig.from_dict(load_yaml(tmp_path / "c.yaml")).validate()
    assert (cfg.lr, cfg.beta2, cfg.max_minutes) == (1e-4, 0.999, 20.0) and type(cfg.lr) is float


def test_train_help_is_grouped_and_top_level_help_has_examples(capsys):
    from ganforge.config import GROUPS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    heads = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert heads == ["options", *GROUPS]
    section = text.split("\nnetworks:\n")[1].split("\n\n")[0]
    assert "--spectral-norm" in section and "--batch-size" not in section
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    examples = text.split("examples:\n")[1]
    commands = [line.split()[1] for line in examples.splitlines() if line.startswith("  ganforge")]
    assert commands == ["train", "sample", "upscale", "stylize", "stylize", "translate", "export", "studio", "data"]


@pytest.mark.parametrize("mode", ["I;16B", "F", "I;16"])
def test_deep_greyscale_folders_load_as_greyscale(tmp_path, mode):
    from PIL import Image

    from ganforge.data.folder import load_folder

    for i, value in enumerate([40, 80, 33280]):  # the last uses the 16-bit range: 33280 / 257 = 129.49
        Image.new(mode, (12, 12), value).save(tmp_path / f"g{i}.tif")
    assert Image.open(tmp_path / "g2.tif").mode == mode
    images, _, _ = load_folder(tmp_path, 8, None)
    assert images.shape == (3, 1, 8, 8)
    # One brightness rule: values within 0..255 are kept, a 16-bit image is divided by 257 (65535 -> 255).
    assert [sorted(set(image.flatten().tolist())) for image in images] == [[40], [80], [129]]  # not v >> 8 (130)


@pytest.mark.parametrize("command, work", [
    (["upscale", "IN", "--out", "OUT"], "ganforge.pipelines.upscaling.upscale_image"),
    (["inpaint", "IN", "--box", "0,0,4,4", "--out", "OUT"], "ganforge.pipelines.inpainting.load_inpainter"),
    (["sample", "--model", "mnist5k", "--n", "4", "--out", "OUT"], "ganforge.pipelines.sampling.generate"),
])
@pytest.mark.parametrize("suffix", [".tif", ".gif"])
def test_an_output_format_that_cannot_be_written_is_refused_before_the_work(capsys, tmp_path, monkeypatch, command,
                                                                             work, suffix):
    """.gif and .tif are read, not written: found out after the work, the work would be lost."""
    import importlib

    module, name = work.rsplit(".", 1)

    def no_work(*args, **kwargs):
        raise AssertionError(f"{name} ran before the output format was checked")

    monkeypatch.setattr(importlib.import_module(module), name, no_work)
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    out = tmp_path / f"out{suffix}"
    code, err = run_cli(capsys, *[str(tmp_path / "in.png") if a == "IN" else str(out) if a == "OUT" else a for a in command])
    assert code == 2 and f"unsupported image extension '{suffix}'" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
