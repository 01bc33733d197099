"""The sequential-env trainer (rlli/policy/train_sequential.py): TD target, done masks, the advantage baseline,
checkpoints the evaluation loads and acts with, and clear messages for bad flags. Tiny configurations only."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from rlli.network.env import SequentialAllocationEnv
from rlli.network.params import SystemParams
from rlli.policy import train_sequential as ts
from rlli.policy.checkpoint import load_actor
from rlli.policy.evaluate import _learned_method, run_episode
from rlli.policy.forks import training_curves


def tiny(tmp_path, algo: str = "gddpg", **kw) -> ts.Args:
    cfg = dict(algo=algo, seed=0, iterations=6, rounds_per_iteration=4, learning_starts=8, batch_size=8, buffer_size=64,
               eval_every=3, hidden=16, denoise_steps=2, bc=1.0, best_of=2 if algo == "gddpg" else 1, episode_length=2,
               validation_episodes=2, progress=False, out=str(tmp_path / algo))
    cfg.update(kw)
    return ts.Args(**cfg)


def test_td_target_discounts_and_stops_at_the_episode_end():
    y = ts.td_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0]), 0.9)
    assert y.tolist() == pytest.approx([10.0, 2.0])


def test_the_loop_bootstraps_with_the_env_gamma_and_masks_episode_ends(tmp_path, monkeypatch):
    seen, real = [], ts.td_target

    def spy(reward, done, q_next, gamma):
        seen.append((gamma, done.clone()))
        return real(reward, done, q_next, gamma)

    monkeypatch.setattr(ts, "td_target", spy)
    ts.train(tiny(tmp_path, iterations=12), log=lambda m: None)
    assert seen, "the critic never computed a TD target"
    assert {g for g, _ in seen} == {SequentialAllocationEnv(SystemParams(), training_curves(20)).gamma}
    done = torch.cat([d for _, d in seen])
    assert set(done.tolist()) == {0.0, 1.0}  # episodes of 2 rounds: every second transition is terminal
    assert 0.25 < float(done.mean()) < 0.75


def test_the_advantage_baseline_ignores_what_the_actions_move():
    p = SystemParams()
    env = SequentialAllocationEnv(p, training_curves(p.steps))
    env.reset(seed=3)
    st = env.state
    drained = ts.replace(st, battery=np.full_like(st.battery, 0.1), backlog_s=np.full_like(st.backlog_s, 5.0))
    assert ts.exogenous_reference(drained, p, None) == pytest.approx(ts.exogenous_reference(st, p, None))


@pytest.mark.parametrize("algo", ["gddpg", "ddpg"])
def test_checkpoint_loads_and_acts_in_the_sequential_env(tmp_path, algo):
    out = ts.train(tiny(tmp_path, algo), log=lambda m: None)
    folder = tmp_path / algo
    assert out["folder"] == str(folder)
    actor, meta = load_actor(folder)
    assert meta["env"] == "sequential" and meta["obs_version"] == 2 and meta["judge"] == "trait/parametric-v1"
    assert meta["env_params"]["gamma"] == pytest.approx(0.9) and meta["iterations_done"] == 6
    assert (folder / "critic.safetensors").is_file()
    rows = list(csv.DictReader((folder / "curve.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [3, 6] and all(np.isfinite(float(r["return"])) for r in rows)
    assert json.loads((folder / "train.json").read_text())["validation"]["return"] == pytest.approx(
        meta["validation"]["return"])
    p = SystemParams()
    env = SequentialAllocationEnv(p, training_curves(p.steps), episode_length=3)
    ep = run_episode(env, _learned_method(folder), seed=11)
    assert np.isfinite(ep["return"]) and ep["qoe"] > 0


def test_same_seed_same_policy(tmp_path):
    ts.train(tiny(tmp_path, out=str(tmp_path / "a")), log=lambda m: None)
    ts.train(tiny(tmp_path, out=str(tmp_path / "b")), log=lambda m: None)
    a, _ = load_actor(tmp_path / "a")
    b, _ = load_actor(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_init_starts_from_the_checkpoint(tmp_path):
    ts.train(tiny(tmp_path, out=str(tmp_path / "a")), log=lambda m: None)
    # no update before learning starts: the fine-tuned run's deployed actor is the checkpoint it started from
    ts.train(tiny(tmp_path, out=str(tmp_path / "b"), init=str(tmp_path / "a"), iterations=1, eval_every=1,
                  learning_starts=1000), log=lambda m: None)
    a, _ = load_actor(tmp_path / "a")
    b, meta = load_actor(tmp_path / "b")
    assert meta["init"]["folder"] == str(tmp_path / "a") and meta["init"]["env"] == "sequential"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_init_from_another_layout_is_a_clear_message(tmp_path, capsys):
    ts.train(tiny(tmp_path, "ddpg"), log=lambda m: None)
    with pytest.raises(SystemExit):
        ts.main(["--algo", "gddpg", "--init", str(tmp_path / "ddpg"), "--out", str(tmp_path / "x"), "--no-progress",
                 "--iterations", "1", "--episode-length", "1"])  # bounded, should the check ever let it train
    assert "a ddpg checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--query-budget", "10"], "--query-budget: the reward-model (-LI) path is one-round only"),
    (["--algo", "ppo"], "invalid choice: 'ppo'"),
    (["--obs-version", "1"], "needs --obs-version 2"),
    (["--episode-length", "0"], "must be positive: --episode-length"),
    (["--server-ghz", "-5"], "must be positive: --server-ghz"),
    (["--best-of", "0"], "must be positive: --best-of"),
    (["--judge", "llm"], "the sequential trainer learns from the trait judge (--judge trait)"),
    (["--reward-model", "rm.json"], "--reward-model: the reward-model (-LI) path is one-round only"),
])
def test_bad_flags_get_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        ts.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
