"""`ganforge train`: from a config to a run directory, fresh or resumed."""

import dataclasses
import logging
import platform
import sys
from pathlib import Path

import torch

import ganforge
from ganforge.config import TrainConfig, flag, load_yaml, save_yaml
from ganforge.data import load_imageset, split
from ganforge.data.imageset import native_resolution
from ganforge.errors import UserError
from ganforge.imageio import check_writable
from ganforge.nets.brief import BRIEF_RESOLUTION
from ganforge.seeding import seed_everything
from ganforge.tasks.conditional import ConditionalGenerationTask, check_labels
from ganforge.tasks.generation import GenerationTask, check_resolution
from ganforge.training.device import pick_device, pick_dtype
from ganforge.training.distributed import init_distributed, local_rank_from_env, shutdown
from ganforge.training.trainer import Trainer

log = logging.getLogger("ganforge")
DEFAULT_STEPS = 5000
RESUMABLE_CHANGES = {"steps", "epochs", "max_minutes", "device", "sample_every", "checkpoint_every", "log_every",
                     "eval_every", "eval_samples"}


def resolve_resolution(cfg: TrainConfig) -> int:
    if cfg.resolution is not None:
        return cfg.resolution
    if cfg.arch == "seed":
        return BRIEF_RESOLUTION
    return native_resolution(cfg.data) or 64


def resumed_config(out: Path, given: dict) -> TrainConfig:
    """The run's saved config, with the options given now applied where a resumed run allows it."""
    saved_path = out / "config.yaml"
    if not (out / "checkpoints" / "last.safetensors").exists():
        raise UserError(f"--resume: {out} holds no checkpoint to resume from")
    saved = load_yaml(saved_path)
    saved.pop("environment", None)
    cfg = TrainConfig.from_dict(saved, str(saved_path))
    for name, value in given.items():
        if name in ("out",) or value == getattr(cfg, name):
            continue
        if name not in RESUMABLE_CHANGES:
            raise UserError(f"--{flag(name)}: {value!r} differs from the run's {getattr(cfg, name)!r} ({saved_path}); a resumed run keeps its config")
        setattr(cfg, name, value)
    if "steps" in given:
        cfg.epochs = None
    elif "epochs" in given:
        cfg.steps = None
    return cfg.validate()


def train(cfg: TrainConfig, resume: bool = False, given: dict | None = None) -> Path:
    """Train `cfg.task` and return the run directory. With `resume`, continue the run in `cfg.out`.

    `given` holds the options a user set explicitly (they may change a resumed run's length).
    """
    out = Path(cfg.out)
    if resume:
        cfg = resumed_config(out, given or {})
    else:
        cfg.validate()
        if (out / "config.yaml").exists():
            raise UserError(f"--out: {out} already holds a run; add --resume to continue it, or choose another --out")
    device = pick_device(cfg.device, local_rank_from_env())
    dist = init_distributed(device.type)
    try:
        return _train(cfg, out, resume, device, dist)
    finally:
        shutdown(dist)


def _train(cfg: TrainConfig, out: Path, resume: bool, device: torch.device, dist) -> Path:
    dtype = pick_dtype(cfg.precision, device)
    cfg.resolution = resolve_resolution(cfg)
    check_resolution(cfg.arch, cfg.resolution)
    if dist.is_main:
        check_writable(out / "checkpoints", "--out")
    seed_everything(cfg.seed)
    data, _ = split(load_imageset(cfg.data, cfg.resolution, cfg.channels), cfg.max_images)
    cfg.channels = data.channels
    if cfg.conditional:
        check_labels(data.labels, data.class_names, cfg.data)
        task = ConditionalGenerationTask(cfg, data.channels, data.resolution, data.class_names, cfg.data)
    else:
        task = GenerationTask(cfg, data.channels, data.resolution)
    if cfg.steps is None and cfg.epochs is None:
        cfg.steps = DEFAULT_STEPS
    monitor = None
    if cfg.eval_every and dist.is_main:
        from ganforge.evaluation import TrainingMonitor

        monitor = TrainingMonitor(data, cfg.eval_samples, cfg.seed, cfg.latent_dim, task.model.get("num_classes", 0))
    trainer = Trainer(cfg, task, data.images, out, device, dtype, dist, monitor=monitor,
                      labels=data.labels if cfg.conditional else None)
    if resume:
        trainer.resume()
    if dist.is_main:
        environment = {
            "ganforge": ganforge.__version__, "torch": str(torch.__version__), "python": platform.python_version(),
            "device": str(device), "dtype": str(dtype).removeprefix("torch."), "world_size": dist.world_size,
            "images": len(data), "command": " ".join(sys.argv),
        }
        save_yaml({**dataclasses.asdict(cfg), "environment": environment}, out / "config.yaml")
        log.info("%s: %d images %dx%dx%d, %s on %s (%s), %d steps of %d x %d images",
                 cfg.data, len(data), data.channels, data.resolution, data.resolution, cfg.arch, device,
                 environment["dtype"], trainer.total_steps, trainer.batch_size, dist.world_size)
    trainer.fit()
    return out
