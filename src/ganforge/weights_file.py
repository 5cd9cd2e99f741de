"""Reading a weights file a user names (.pth or .safetensors) without ever unpickling code."""

import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

from ganforge.errors import UserError


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors in `path`; `what` names the file in errors (e.g. "Inception weights").

    `.pth` files are read with `weights_only=True`: a file that needs more than tensors is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what} file")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False; user files are never unpickled here.
        raise UserError(f"{path}: cannot read {what} (not a plain state dict of tensors)") from None
    except Exception as e:  # arbitrary bytes make the unpicklers fail in arbitrary ways (KeyError, EOFError, ...)
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"{path}: cannot read {what} ({type(e).__name__}: {detail})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: {what} must be a state dict of tensors")
    return state


def net_state(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The weights of the network `name` among a checkpoint's tensors (stored as `net.<name>.<key>`)."""
    prefix = f"net.{name}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
