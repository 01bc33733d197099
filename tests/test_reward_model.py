"""The learned reward model (rlli/policy/reward_model.py): fit, QoE scale, monotonicity, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlli.network.qoe import trait_qoe
from rlli.policy.reward_model import QOE_RANGE, RewardModel, score_to_qoe


def _queries(n: int = 160, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, (n, 5))
    q = rng.uniform(0.6, 1.0, n)
    d = np.exp(rng.uniform(0.0, np.log(30.0), n))
    return t, q, d, np.clip(trait_qoe(t, q, d), 1, 10)


@pytest.fixture(scope="module")
def model():
    t, q, d, s = _queries()
    return RewardModel.fit(t, q, d, s, judge="trait/parametric-v1", info={"design": "test"})


def test_fit_learns_the_judge_and_reports_held_out_figures(model):
    h = model.figures["holdout"]
    assert h["n"] == 40 and model.figures["train"] == 120
    assert h["r2"] > 0.6 and h["spearman"] > 0.8 and h["mae"] < h["mae_constant"]
    t, q, d, s = _queries(200, seed=1)  # new points: the model tracks the judge it was fitted on
    desc = model.describe(t, q, d, reference=lambda *a: trait_qoe(*a))
    assert desc["spearman_vs_reference"] > 0.8 and desc["std"] > 0.5


def test_qoe_has_the_trait_judges_shape_and_scale(model):
    traits = np.random.default_rng(2).uniform(0, 1, (7, 8, 5))
    out = model.qoe(traits, np.full((7, 8), 1.0), np.full((7, 8), 5.0))
    assert out.shape == (7, 8)
    assert QOE_RANGE[0] <= out.min() and out.max() <= QOE_RANGE[1]
    assert model.qoe(traits[0, 0], 0.9, 3.0).shape == ()
    np.testing.assert_allclose(score_to_qoe([1, 5.5, 10]), [1, 5.5, 10])


def test_monotone_in_quality_and_delay(model):
    rng = np.random.default_rng(3)
    traits = rng.uniform(0, 1, (50, 1, 5))
    qs, ds = np.linspace(0.5, 1.0, 21), np.geomspace(0.5, 60.0, 21)
    by_q = model.qoe(traits, qs[None, :], np.full((50, 21), 8.0))
    by_d = model.qoe(traits, np.full((50, 21), 0.95), ds[None, :])
    assert (np.diff(by_q, axis=1) >= -1e-12).all()  # never falls as quality rises
    assert (np.diff(by_d, axis=1) <= 1e-12).all()  # never rises as the wait grows
    assert (by_d[:, 0] - by_d[:, -1]).mean() > 1.0  # and the wait does matter


def test_monotone_even_when_the_answers_are_not():
    t, q, d, _ = _queries(120)
    noisy = np.clip(1 + 9 * np.random.default_rng(4).uniform(0, 1, 120), 1, 10)  # answers unrelated to q, d
    m = RewardModel.fit(t, q, d, noisy)
    qs = np.linspace(0.5, 1.0, 30)
    y = m.qoe(np.full((30, 5), 0.5), qs, np.full(30, 4.0))
    assert (np.diff(y) >= -1e-12).all()


def test_save_load_round_trip_is_json_and_exact(model, tmp_path):
    path = model.save(tmp_path / "reward_model.json")
    d = json.loads(path.read_text())  # plain JSON, no pickle
    assert d["judge"] == "trait/parametric-v1" and len(d["queries"]["score"]) == 160
    assert d["figures"]["holdout"]["n"] == 40 and d["info"] == {"design": "test"}
    back = RewardModel.load(path)
    t, q, dl, _ = _queries(64, seed=9)
    np.testing.assert_array_equal(back.qoe(t, q, dl), model.qoe(t, q, dl))
    d["fingerprint"][0] += 0.5  # a file whose refit does not reproduce it is refused
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="does not reproduce"):
        RewardModel.load(path)


@pytest.mark.parametrize("bad", ["not json", json.dumps({"format": "other"})])
def test_load_refuses_what_is_not_a_reward_model(tmp_path, bad):
    p = tmp_path / "rm.json"
    p.write_text(bad)
    with pytest.raises(ValueError, match="reward model"):
        RewardModel.load(p)


def test_bad_queries_give_clear_errors():
    t, q, d, s = _queries(10)
    with pytest.raises(ValueError, match="one entry per query"):
        RewardModel.fit(t, q[:5], d, s)
    with pytest.raises(ValueError, match="non-finite"):
        RewardModel.fit(t, q, d, np.where(np.arange(10) == 3, np.nan, s))
    with pytest.raises(ValueError, match="1..10"):
        RewardModel.fit(t, q, d, s + 20)
    with pytest.raises(ValueError, match="at least 2"):
        RewardModel.fit(t[:1], q[:1], d[:1], s[:1])
