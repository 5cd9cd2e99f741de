"""A saved model is a folder: `config.json` plus `*.safetensors`, loadable with one call, no pickle.

`ganforge sample` and friends accept a run directory (its `model/` folder is the export), an
exported folder, or the name of a model shipped inside the package (`mnist5k`).
"""

import json
from pathlib import Path

import torch
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
    folder.parent.mkdir(parents=True, exist_ok=True)
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


def load_model(folder: Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and the weights `name` of a saved model folder, both from the same save (`read_together`)."""
    folder = Path(folder)
    try:
        config_bytes, weight_bytes = read_together(folder, ["config.json", f"{name}.safetensors"])
        config, weights = json.loads(config_bytes), load(weight_bytes)
    except (OSError, ValueError, SafetensorError) as e:  # ValueError: a config that is not JSON (or not UTF-8)
        raise UserError(f"{folder}: cannot read the saved model ({e})") from None
    return config, weights


def model_task(where: str | Path) -> str:
    """What the model behind a run, folder or shipped name does: "generation" or "superres"."""
    return json.loads((resolve_model(where) / "config.json").read_text()).get("task", "generation")
