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
from safetensors.torch import load_file, save_file

import ganforge
from ganforge.atomic import atomic_path
from ganforge.errors import UserError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def shipped_models() -> list[str]:
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").exists())


def save_model(folder: Path, config: dict, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write `config.json` and one `<name>.safetensors` per entry of `weights`, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in weights.items():
        with atomic_path(folder / f"{name}.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    with atomic_path(folder / "config.json") as tmp:
        tmp.write_text(json.dumps({**config, "ganforge_version": ganforge.__version__}, indent=2))


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
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, or not JSON
        raise UserError(f"{folder}: cannot read the saved model ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{folder}: cannot read the saved model (config.json is not a JSON object)")
    return config


def load_model(folder: Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and the weights `name` of a saved model folder."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        weights = load_file(str(folder / f"{name}.safetensors"))
    except (OSError, SafetensorError) as e:
        raise UserError(f"{folder}: cannot read the saved model ({e})") from None
    return config, weights


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
