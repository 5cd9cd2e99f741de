"""A saved model is a folder: `config.json` plus `*.safetensors`, loadable with one call, no pickle.

`ganforge sample` and friends accept a run directory (its `model/` folder is the export), an
exported folder, or the name of a model shipped inside the package (`mnist5k`).
"""

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from safetensors import SafetensorError
from safetensors.torch import load, save_file

import ganforge
from ganforge.atomic import atomic_folder, read_together
from ganforge.errors import UserError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def shipped_models() -> list[str]:
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").exists())


def save_model(folder: Path, config: dict, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write `config.json` and one `<name>.safetensors` per entry of `weights` as one unit.

    The folder is replaced whole (`atomic_folder`): a run killed meanwhile, or `ganforge sample`
    reading it, finds the previous model or this one, never this config with the previous weights.
    """
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        for name, state in weights.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        (tmp / "config.json").write_text(json.dumps({**config, "ganforge_version": ganforge.__version__}, indent=2))


def resolve_model(where: str | Path) -> Path:
    """The model folder behind a run directory, an exported folder or a shipped model's name."""
    path = Path(where)
    if (path / "model" / "config.json").exists():
        return path / "model"
    if (path / "config.json").exists():
        return path
    if str(where) in shipped_models():
        return PRETRAINED_DIR / str(where)
    if path.is_dir() and (path / "config.yaml").exists():
        raise UserError(f"{path}: this run has not saved a model yet (it appears at the first checkpoint)")
    if path.exists():
        raise UserError(f"{path}: not a run directory or a saved model (no config.json)")
    raise UserError(f"{where}: no such run directory, model folder or shipped model ({', '.join(shipped_models())})")


def read_config(folder: Path) -> dict:
    """A saved model's `config.json`, or a UserError naming the folder."""
    try:
        text = (Path(folder) / "config.json").read_bytes()
    except OSError as e:
        raise UserError(f"{folder}: cannot read the saved model ({e})") from None
    return parse_config(folder, text)


def parse_config(folder: Path, text: bytes) -> dict:
    """The JSON object of a `config.json`'s bytes, or a UserError naming the folder."""
    try:
        config = json.loads(text)
    except ValueError as e:  # not UTF-8, or not JSON
        raise UserError(f"{folder}: cannot read the saved model ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{folder}: cannot read the saved model (config.json is not a JSON object)")
    return config


def load_model(folder: Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and the weights `name` of a saved model folder, both from the same save (`read_together`)."""
    folder = Path(folder)
    try:
        config_bytes, weight_bytes = read_together(folder, ["config.json", f"{name}.safetensors"])
        weights = load(weight_bytes)
    except (OSError, SafetensorError) as e:
        raise UserError(f"{folder}: cannot read the saved model ({e})") from None
    return parse_config(folder, config_bytes), weights


def build_model(build: Callable[[dict], nn.Module], config: dict, weights: dict[str, torch.Tensor], folder: Path) -> nn.Module:
    """`build(config)` with `weights` loaded, or a UserError naming the folder when config and weights do not fit
    (a hand-edited config.json, or weights of another model)."""
    try:
        net = build(config)
        net.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError, UserError) as e:
        detail = " ".join(str(e).split())  # load_state_dict lists every mismatch on lines of its own
        raise UserError(f"{folder}: config.json and the weights do not make a model ({type(e).__name__}: "
                        f"{detail[:200]}{'...' if len(detail) > 200 else ''})") from None
    return net


def model_task(where: str | Path) -> str:
    """What the model behind a run, folder or shipped name does: "generation" or "superres"."""
    return read_config(resolve_model(where)).get("task", "generation")
