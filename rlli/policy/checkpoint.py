"""Saving and loading an actor: ``actor.safetensors`` (weights and schedule buffers) + ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rlli.policy.actors import build_actor


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or malformed (the message says which file)."""


def save_actor(folder: str | Path, actor: torch.nn.Module, meta: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in actor.state_dict().items()}
    tmp = folder / "actor.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.chmod(0o644)
    tmp.replace(folder / "actor.safetensors")  # never leave a half-written checkpoint behind
    (folder / "config.json").write_text(json.dumps({"actor": actor.config(), **meta}, indent=1))
    return folder


def load_actor(folder: str | Path) -> tuple[torch.nn.Module, dict]:
    folder = Path(folder)
    weights, config = folder / "actor.safetensors", folder / "config.json"
    for f in (weights, config):
        if not f.is_file():
            raise CheckpointError(f"no policy checkpoint: {f} is missing (train one with "
                                  f"`python -m rlli train policy`)")
    try:
        meta = json.loads(config.read_text())
        actor = build_actor(meta["actor"])
        actor.load_state_dict(load_file(str(weights)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, RuntimeError, OSError,
            SafetensorError) as e:
        raise CheckpointError(f"unreadable policy checkpoint in {folder}: {type(e).__name__}: {e}") from None
    actor.eval()
    return actor, meta
