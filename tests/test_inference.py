"""The numpy decision path (rlli/policy/inference.py) decides as the torch modules do: same noise in, same actions
out, the same best-of-N candidate kept; a checkpoint whose critic is missing falls back to one draw and says so."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlli.policy.actors import DiffusionActor, DoubleCritic, MLPActor
from rlli.policy.checkpoint import save_actor, save_critic
from rlli.policy.inference import InferenceError, load_fast
from rlli.policy.train import act

OBS, ACT, HIDDEN = 21, 6, 32
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "policies" / "gddpg" / "seed0"


def _checkpoint(folder: Path, kind: str, steps: int = 5, best_of: int = 8, critic: bool = True, seed: int = 0):
    """A small random checkpoint written the way training writes one."""
    torch.manual_seed(seed)
    actor = DiffusionActor(OBS, ACT, HIDDEN, steps) if kind == "gddpg" else MLPActor(OBS, ACT, HIDDEN)
    save_actor(folder, actor, {"obs_version": 2, "best_of": best_of, "residual": False})
    crit = DoubleCritic(OBS, ACT, HIDDEN)
    if critic:
        save_critic(folder, crit)
    return actor.eval(), crit.eval()


def _obs(b: int, dim: int = OBS, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (b, dim)).astype(np.float32)


@torch.inference_mode()
def _torch_decide(actor, critic, obs: np.ndarray, noise: np.ndarray, n: int):
    """train.act's best-of-N on the torch modules, from given noise: (actions, min(Q1, Q2) per candidate [n, B])."""
    b = obs.shape[0]
    rep = torch.as_tensor(obs).repeat(n, 1)
    a = actor.reverse(rep, torch.as_tensor(noise)).numpy().astype(np.float64)
    if n == 1:
        return a, None
    q = critic.q_min(rep, torch.as_tensor(a, dtype=torch.float32)).numpy().reshape(n, b)
    return a.reshape(n, b, -1)[q.argmax(axis=0), np.arange(b)], q


def test_torch_reference_is_train_act(tmp_path):
    """The reference below is train.act itself when fed train.act's own noise (so comparing with it compares with
    the torch path)."""
    actor, critic = _checkpoint(tmp_path, "gddpg")
    obs = _obs(5)
    noise = actor.draw_noise(8 * 5, torch.Generator().manual_seed(4)).numpy()
    ref, _ = _torch_decide(actor, critic, obs, noise, 8)
    assert np.array_equal(act(actor, obs, seed=4, critic=critic, best_of=8), ref)


@pytest.mark.parametrize("steps", [5, 1])
def test_diffusion_chain_matches_torch_on_the_same_noise(tmp_path, steps):
    actor, critic = _checkpoint(tmp_path, "gddpg", steps=steps)
    fast = load_fast(tmp_path)
    assert fast.best_of == 8 and fast.fallback is None
    obs = _obs(40)
    noise = fast.draw_noise(8 * 40, seed=7)
    assert noise.shape == (steps, 8 * 40, ACT)
    ref, q_ref = _torch_decide(actor, critic, obs, noise, 8)
    cand_ref, _ = _torch_decide(actor, critic, np.tile(obs, (8, 1)), noise, 1)  # every candidate, in the same rows
    cand = fast.actor.reverse(obs, noise, repeat=8)
    # float32 either way, different BLAS: rounding only. One step (T = 1) multiplies the network's output by
    # sqrt(1 / abar - 1) (12.45 for this schedule), and so the rounding too.
    tol = 1e-5 * max(1.0, float(actor.sqrt_recipm1_ac[0])) if steps == 1 else 1e-5
    assert np.abs(cand - cand_ref).max() <= tol
    q = fast.critic.q_min(obs, cand, repeat=8).reshape(8, 40)
    assert np.abs(q - q_ref).max() <= 1e-5
    # the same candidate kept wherever the critic's top two are not a near tie
    top2 = np.sort(q_ref, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4
    assert clear.mean() > 0.9
    assert np.array_equal(q.argmax(axis=0)[clear], q_ref.argmax(axis=0)[clear])
    out = fast.act(obs, noise=noise)
    assert out.dtype == np.float64 and out.shape == (40, ACT)
    assert np.abs(out - ref)[clear].max() <= tol


def test_ddpg_matches_torch(tmp_path):
    actor, _ = _checkpoint(tmp_path, "ddpg", best_of=1, critic=False)
    fast = load_fast(tmp_path)
    obs = _obs(30)
    ref = act(actor, obs)
    assert np.abs(fast.act(obs, seed=0) - ref).max() <= 1e-5
    assert np.array_equal(fast.act(obs, seed=0), fast.act(obs, seed=1))  # deterministic: no noise drawn


def test_residual_base_is_added_and_clipped_as_train_act(tmp_path):
    actor, critic = _checkpoint(tmp_path, "gddpg")
    fast = load_fast(tmp_path)
    obs = _obs(6)
    base = np.random.default_rng(3).uniform(-1.0, 1.0, (6, ACT))
    noise = fast.draw_noise(8 * 6, seed=2)
    with torch.inference_mode():
        rep = torch.as_tensor(obs).repeat(8, 1)
        cand = np.clip(np.tile(base, (8, 1)) + actor.reverse(rep, torch.as_tensor(noise)).numpy().astype(np.float64), -1, 1)
        q = critic.q_min(rep, torch.as_tensor(cand, dtype=torch.float32)).numpy().reshape(8, 6)
    ref = cand.reshape(8, 6, -1)[q.argmax(axis=0), np.arange(6)]
    assert np.abs(fast.act(obs, base=base, noise=noise) - ref).max() <= 1e-5


def test_seeded_decisions_repeat_and_differ_across_seeds(tmp_path):
    _checkpoint(tmp_path, "gddpg")
    fast = load_fast(tmp_path)
    obs = _obs(1)
    assert np.array_equal(fast.act(obs, seed=11), fast.act(obs, seed=11))
    assert not np.array_equal(fast.act(obs, seed=11), fast.act(obs, seed=12))
    assert np.array_equal(fast.act(obs, seed=11), fast.act(obs, noise=fast.draw_noise(8, seed=11)))


def test_missing_critic_falls_back_to_one_draw_and_says_so(tmp_path, caplog):
    actor, _ = _checkpoint(tmp_path, "gddpg", critic=False)
    with caplog.at_level(logging.WARNING, logger="rlli.policy.inference"):
        fast = load_fast(tmp_path)
    assert fast.best_of == 1 and fast.critic is None
    assert "critic" in fast.fallback and "one draw" in fast.fallback and "best of 8" in fast.fallback
    assert any("critic.safetensors is missing" in r.getMessage() for r in caplog.records)
    obs = _obs(4)
    noise = fast.draw_noise(4, seed=5)
    assert noise.shape == (5, 4, ACT)
    ref, _ = _torch_decide(actor, None, obs, noise, 1)
    assert np.abs(fast.act(obs, noise=noise) - ref).max() <= 1e-5


def test_unreadable_critic_falls_back_too(tmp_path):
    _checkpoint(tmp_path, "gddpg")
    (tmp_path / "critic.safetensors").write_bytes(b"not a safetensors file")
    fast = load_fast(tmp_path)
    assert fast.best_of == 1 and "unreadable critic" in fast.fallback


def test_bad_checkpoints_raise_a_clear_error(tmp_path):
    with pytest.raises(InferenceError, match="config.json is missing"):
        load_fast(tmp_path / "nowhere")
    _checkpoint(tmp_path, "gddpg")
    cfg = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(cfg.replace(f'"obs_dim": {OBS}', f'"obs_dim": {OBS + 1}'))
    with pytest.raises(InferenceError, match=r"net.state_mlp.0.weight has shape \(32, 21\), expected \(32, 22\)"):
        load_fast(tmp_path)
    fast_dir = tmp_path / "ok"
    _checkpoint(fast_dir, "gddpg")
    with pytest.raises(ValueError, match=rf"observations must be \[B, {OBS}\]"):
        load_fast(fast_dir).act(np.zeros((1, OBS + 2), np.float32), seed=0)


@pytest.mark.skipif(not (SHIPPED / "critic.safetensors").is_file(), reason="no shipped G-DDPG checkpoint")
def test_shipped_gddpg_decides_as_torch_and_without_torch(tmp_path):
    from rlli.policy.checkpoint import load_actor, load_critic

    actor, meta = load_actor(SHIPPED)
    critic = load_critic(SHIPPED, meta)
    fast = load_fast(SHIPPED)
    obs = _obs(32, int(meta["obs_dim"]))
    n = fast.best_of
    noise = fast.draw_noise(n * 32, seed=3)
    ref, q_ref = _torch_decide(actor, critic, obs, noise, n)
    top2 = np.sort(q_ref, axis=0)[-2:] if n > 1 else np.array([np.zeros(32), np.ones(32)])
    clear = top2[1] - top2[0] > 1e-4
    assert np.abs(fast.act(obs, noise=noise) - ref)[clear].max() <= 1e-5
    # a decision needs numpy and safetensors only
    copy = tmp_path / "ckpt"
    shutil.copytree(SHIPPED, copy)
    code = ("import sys, numpy as np; from rlli.policy.inference import load_fast; "
            f"f = load_fast({str(copy)!r}); f.act(np.zeros((1, f.actor.obs_dim), np.float32), seed=0); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_deployed_policy_decides_through_the_numpy_path(tmp_path):
    """load_policy's learned policy is the numpy path (the same actions as load_fast on the same round and seed); a
    checkpoint without its critic loads with a notice that says best-of-N became one draw."""
    from rlli.config import Settings
    from rlli.network.allocation import action_dim
    from rlli.network.params import SystemParams
    from rlli.network.state import encode, obs_dim
    from rlli.policy.api import load_policy
    from rlli.policy.evaluate import heldout_states

    s = Settings(policy_k_max=4)
    p = SystemParams.from_settings(s)
    o, a = obs_dim(4, 2), action_dim(4)
    folder = tmp_path / "gddpg"
    torch.manual_seed(0)
    save_actor(folder, DiffusionActor(o, a, HIDDEN, 5), {"obs_version": 2, "best_of": 8, "obs_dim": o})
    save_critic(folder, DoubleCritic(o, a, HIDDEN))
    st = heldout_states(p, 1, k_range=(4, 4))
    policy = load_policy("gddpg", s, folder=folder)
    assert policy.notice is None and policy.sampled
    assert np.array_equal(policy.actions(st, p, 3), load_fast(folder).act(encode(st, p, 2), seed=3))
    (folder / "critic.safetensors").unlink()
    degraded = load_policy("gddpg", s, folder=folder)
    assert degraded.fast.best_of == 1
    assert "best of 8 needs the checkpoint's critic" in degraded.notice.message
