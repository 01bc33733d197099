"""Saving and loading an actor: ``actor.safetensors`` (weights and schedule buffers) + ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rlli.policy.actors import DoubleCritic, build_actor


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


def save_critic(folder: str | Path, critic: torch.nn.Module) -> Path:
    """The twin critics beside the actor (``critic.safetensors``): for best-of-N decisions and fine-tuning."""
    folder = Path(folder)
    tmp = folder / "critic.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in critic.state_dict().items()}, str(tmp))
    tmp.chmod(0o644)
    tmp.replace(folder / "critic.safetensors")
    return folder / "critic.safetensors"


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


def load_critic(folder: str | Path, meta: dict) -> torch.nn.Module | None:
    """The saved twin critics of a checkpoint (``critic.safetensors``), or None where the checkpoint has none
    (older checkpoints) or it does not load: best-of-N then falls back to one draw."""
    path = Path(folder) / "critic.safetensors"
    if not path.is_file():
        return None
    try:
        a = meta["actor"]
        critic = DoubleCritic(int(a["obs_dim"]), int(a["act_dim"]), int(a.get("hidden", 256)))
        critic.load_state_dict(load_file(str(path)))
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError):
        return None
    return critic.eval()
