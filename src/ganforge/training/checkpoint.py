"""Checkpoints as one safetensors file: weights, optimiser state and step, with no pickle.

Tensors go in as `net.<name>.<key>` and `optim.<name>.<param index>.<key>`; everything that is
not a tensor (step, optimiser hyper-parameters, config) goes in the JSON metadata. A checkpoint
is written to a temporary file and renamed, so a crash never leaves a half-written one.
RNG states need no saving: every random draw of a step is seeded from (seed, step, rank).
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ganforge.atomic import atomic_path
from ganforge.errors import UserError
from ganforge.weights_file import net_state


def save_checkpoint(path: Path, nets: dict, optimizers: dict, meta: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    metadata = {"meta": json.dumps(meta)}
    for name, net in nets.items():
        for key, t in net.state_dict().items():
            tensors[f"net.{name}.{key}"] = t.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for idx, state in sd["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{name}.{idx}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{idx}.{key}"] = value
        metadata[f"optim.{name}"] = json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the raw metadata of a checkpoint file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: not a readable ganforge checkpoint ({e})") from None


def checkpoint_meta(path: Path) -> dict:
    """The `meta` dict (step, ...) of a checkpoint, read from its header without loading any tensor."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["meta"])
    except (SafetensorError, OSError, KeyError) as e:
        raise UserError(f"{path}: not a readable ganforge checkpoint ({e})") from None


def load_checkpoint(path: Path, nets: dict, optimizers: dict) -> dict:
    """Restore nets and optimizers in place from `path`; returns the saved `meta` dict."""
    tensors, metadata = read_checkpoint(path)
    for name, net in nets.items():
        try:
            net.load_state_dict(net_state(tensors, name))
        except RuntimeError as e:  # missing, unexpected or differently shaped weights
            first = str(e).strip().splitlines()[-1].strip()
            raise UserError(f"{path}: its {name} is not the network this version builds for the run's config ({first}); "
                            "it was written by another version: start a new run, or continue from its model with "
                            "--init-generator") from None
    for name, opt in optimizers.items():
        saved = json.loads(metadata[f"optim.{name}"])
        state: dict[int, dict] = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                idx, field = key[len(prefix):].split(".", 1)
                state.setdefault(int(idx), {})[field] = value
        for key, value in saved["scalars"].items():
            idx, field = key.split(".", 1)
            state.setdefault(int(idx), {})[field] = value
        opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    return json.loads(metadata["meta"])
