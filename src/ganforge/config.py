"""The one place where a training option is spelled: a dataclass whose fields are the CLI flags.

`ganforge train --batch-size 32` sets `TrainConfig.batch_size`; configs/*.yaml and a run's
config.yaml use the same field names.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganforge.errors import UserError


def option(default, help: str, **kwargs):
    """A config field with its CLI help text."""
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    data: str = option("mnist5k", "embedded set (mnist5k, digits) or a folder of images")
    out: str = option("runs/ganforge", "run directory (config, checkpoints, samples, metrics)")
    task: str = option("generation", "what is trained", choices=["generation"])
    arch: str = option("dcgan", "dcgan: resolution-generic DCGAN; seed: the brief's 56x56 networks", choices=["dcgan", "seed"])
    resolution: int | None = option(None, "image size (default: the embedded set's own, 64 for folders, 56 for --arch seed)")
    channels: int | None = option(None, "1 or 3 (default: from the data)")
    width: int = option(64, "base channel width of G and D (ngf = ndf)")
    latent_dim: int = option(100, "size of the noise vector z")
    loss: str = option("bce", "adversarial loss", choices=["bce"])
    batch_size: int = option(64, "images per step and per process")
    steps: int | None = option(None, "training steps (D and G updates); default 5000 unless --epochs")
    epochs: float | None = option(None, "training length in passes over the data (instead of --steps)")
    lr: float = option(2e-4, "Adam learning rate of both networks")
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")
    seed: int = option(0, "seed of everything random; the same seed gives the same run on the CPU")
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    precision: str = option("auto", "auto (bf16 where fast, else fp32), fp32, bf16 or fp16 (CUDA)", choices=["auto", "fp32", "bf16", "fp16"])
    sample_every: int = option(500, "steps between sample grids")
    checkpoint_every: int = option(1000, "steps between checkpoints")
    log_every: int = option(10, "steps between lines of metrics.jsonl")
    grid_size: int = option(64, "images in each sample grid")

    def validate(self) -> "TrainConfig":
        positive = ["width", "latent_dim", "batch_size", "sample_every", "checkpoint_every", "log_every", "grid_size"]
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{flag(name)}: must be at least 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps: must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise UserError(f"--epochs: must be positive, got {self.epochs}")
        if self.steps is not None and self.epochs is not None:
            raise UserError("--steps and --epochs: give one, not both")
        if not 0 < self.lr < 1:
            raise UserError(f"--lr: must be in (0, 1), got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.channels not in (None, 1, 3):
            raise UserError(f"--channels: must be 1 or 3, got {self.channels}")
        if self.resolution is not None and self.resolution < 4:
            raise UserError(f"--resolution: must be at least 4, got {self.resolution}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{source}: unknown option(s) {', '.join(unknown)}")
        return cls(**d)


def flag(name: str) -> str:
    return name.replace("_", "-")


def load_yaml(path: Path) -> dict:
    try:
        d = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a mapping of options")
    return d


def save_yaml(d: dict, path: Path) -> None:
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(d, sort_keys=False))
    os.replace(tmp, path)
