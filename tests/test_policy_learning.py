"""Issue 16: the degenerate-actor diagnosis (at_bounds, clamped x0), behaviour cloning, best-of-N by the critic."""

import json

import numpy as np
import pytest
import torch

from rlli.network.allocation import action_dim, action_for
from rlli.network.params import SystemParams
from rlli.network.state import obs_dim, sample_states
from rlli.policy.actors import DiffusionActor, MLPActor
from rlli.policy.checkpoint import load_actor, load_critic
from rlli.policy.forks import training_curves
from rlli.policy.train import Args, act, at_bounds, train

P3 = SystemParams(k_max=3)


def test_at_bounds_counts_the_entries_of_used_slots_at_a_bound():
    st = sample_states(np.random.default_rng(0), 8, P3, training_curves(P3.steps))
    assert at_bounds(st, action_for(st, np.zeros_like(st.max_shared))) == 1.0  # no sharing: -1 steps, +1 shares
    a = np.zeros((st.batch, action_dim(P3.k_max)))
    assert at_bounds(st, a) == 0.0
    a[:, :P3.k_max] = np.where(st.mask, 1.0, 0.0)  # bandwidth of every used slot at +1: one entry in three
    assert at_bounds(st, a) == pytest.approx(1 / 3)
    a[:, :P3.k_max] = np.where(st.mask, 0.0, 1.0)  # empty slots at a bound do not count
    assert at_bounds(st, a) == 0.0


def test_clamp_share_sees_a_saturated_chain():
    torch.manual_seed(0)
    actor = DiffusionActor(10, 6, 32, 5)
    obs = torch.randn(64, 10)
    fresh = actor.clamp_share(obs, torch.Generator().manual_seed(0))
    with torch.no_grad():  # a noise net whose eps is huge: every predicted x0 leaves [-1, 1]
        actor.net.mid[-1].bias.fill_(50.0)
    assert fresh < 0.9
    assert actor.clamp_share(obs, torch.Generator().manual_seed(0)) == 1.0
    assert MLPActor(10, 6, 32).clamp_share(obs) == 0.0


@pytest.mark.parametrize("kind", ["gddpg", "ddpg"])
def test_behaviour_cloning_pulls_the_actor_to_its_target(kind):
    torch.manual_seed(0)
    actor = DiffusionActor(4, 3, 64, 5) if kind == "gddpg" else MLPActor(4, 3, 64)
    obs = torch.randn(256, 4)
    target = torch.tensor([[0.6, -0.4, 0.2]]).repeat(256, 1)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)

    def err() -> float:
        with torch.no_grad():
            return float((actor(obs, torch.Generator().manual_seed(1)) - target).abs().mean())

    before = err()
    for _ in range(300):
        loss = actor.bc_loss(obs, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert err() < 0.1 < before


class _PreferZero(torch.nn.Module):
    """A critic that scores an action by minus its squared norm: the best candidate is the one nearest 0."""

    def q_min(self, obs, a):
        return -(a**2).sum(-1)


def test_best_of_n_keeps_the_candidate_the_critic_scores_highest():
    torch.manual_seed(0)
    actor = DiffusionActor(5, 4, 32, 3)
    obs = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    one = act(actor, obs, seed=3)
    best = act(actor, obs, seed=3, critic=_PreferZero(), best_of=16)
    assert best.shape == one.shape
    cands = act(actor, np.tile(obs, (16, 1)), seed=3).reshape(16, 6, 4)  # the same 16 draws, in the same order
    norms = (cands**2).sum(-1)
    assert np.allclose(best, cands[norms.argmin(0), np.arange(6)])
    assert np.all((best**2).sum(-1) <= (one**2).sum(-1) + 1e-9)
    assert np.array_equal(act(actor, obs, seed=3, critic=None, best_of=16), one)  # no critic: one draw


def test_training_with_behaviour_cloning_logs_the_diagnosis_and_saves_the_critic(tmp_path):
    args = Args(algo="gddpg", seed=0, iterations=40, learning_starts=256, eval_every=20, eval_rounds=32, hidden=32,
                bc=1.0, best_of=4, denoise_steps=2, out=str(tmp_path), progress=False)
    result = train(args, p=P3, log=lambda m: None)
    rows = (tmp_path / "curve.csv").read_text().splitlines()
    head = rows[0].split(",")
    assert head[-2:] == ["at_bounds", "clamp_share"] and len(rows) == 3
    assert 0.0 <= float(rows[-1].split(",")[-2]) <= 1.0 and 0.0 <= float(rows[-1].split(",")[-1]) <= 1.0
    assert 0.0 <= result["at_bounds"] <= 1.0
    actor, meta = load_actor(tmp_path)
    assert meta["obs_version"] == 2 and meta["best_of"] == 4 and meta["obs_dim"] == obs_dim(P3.k_max, 2)
    assert meta["args"]["bc"] == 1.0 and meta["judge"] == "trait/parametric-v1"
    critic = load_critic(tmp_path, meta)
    assert critic is not None
    q = critic.q_min(torch.zeros(2, meta["obs_dim"]), torch.zeros(2, meta["act_dim"]))
    assert q.shape == (2,) and torch.isfinite(q).all()
    json.loads((tmp_path / "train.json").read_text())


def test_bad_training_flags_are_refused():
    with pytest.raises(ValueError, match="obs-version"):
        Args(obs_version=3)
    with pytest.raises(ValueError, match="bc"):
        Args(bc=-1.0)
    with pytest.raises(ValueError, match="best-of"):
        Args(best_of=0)
