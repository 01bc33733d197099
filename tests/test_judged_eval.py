"""Cross-evaluation under the trait judge and the LLM's reward model (`eval policy --judge`), and the judge's agreement
with people (`--store`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlli.network.qoe import trait_qoe
from rlli.policy.evaluate import evaluate_methods, judge_agreement
from rlli.policy.reward_model import RewardModel
from rlli.store.models import TRAIT_COLUMNS

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "policies"
METHODS = ("gddpg", "ddpg", "greedy", "no_sharing", "best_found")


def _rm(kind: str) -> RewardModel:
    rng = np.random.default_rng(0)
    t, q, d = rng.uniform(0, 1, (80, 5)), rng.uniform(0.9, 1.0, 80), np.exp(rng.uniform(-0.5, 3.5, 80))
    y = trait_qoe(t, q, d) if kind == "trait" else np.clip(9.0 - 0.25 * d, 1, 10)  # an impatient, trait-blind judge
    return RewardModel.fit(t, q, d, y, judge="llm/fake-judge" if kind != "trait" else "trait/parametric-v1")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    """gddpg / ddpg seed 0 from the shipped checkpoints, and a "-LI" arm that is the same G-DDPG actor recorded as
    trained on a reward model (so its paired difference to G-DDPG must be exactly 0 under any judge)."""
    root = tmp_path_factory.mktemp("policies")
    for arm in ("gddpg", "ddpg"):
        shutil.copytree(ASSETS / arm / "seed0", root / arm / "seed0")
    li = root / "gddpg_li" / "seed0"
    shutil.copytree(ASSETS / "gddpg" / "seed0", li)
    cfg = json.loads((li / "config.json").read_text())
    cfg["judge"] = "llm:llm/fake-judge via reward model (80 queries)"
    (li / "config.json").write_text(json.dumps(cfg))
    _rm("llm").save(root / "gddpg_li" / "reward_model.json")
    return root


@pytest.fixture(scope="module")
def result(policy_dir):
    rm = RewardModel.load(policy_dir / "gddpg_li" / "reward_model.json")
    return evaluate_methods(policy_dir, n_states=12, log=lambda m: None, methods=METHODS,
                            best_kw={"population": 8, "iterations": 3, "elite": 4, "restarts": 1},
                            judges={"trait": None, "llm": rm.qoe}, judge_names={"llm": "llm/fake-judge"})


def test_every_arm_is_scored_under_every_judge_with_what_it_learned_from(result):
    m = result["methods"]
    assert set(m) == {*METHODS, "gddpg_li"}
    assert m["gddpg_li"]["judge"] == "llm:llm/fake-judge via reward model (80 queries)"
    assert m["gddpg"]["judge"] == "trait/parametric-v1" and m["greedy"]["judge"] == "none (a fixed rule)"
    assert result["judges"] == {"trait": "trait/parametric-v1", "llm": "llm/fake-judge"}
    for k, row in m.items():
        assert set(row["by_judge"]) == {"trait", "llm"}
        for key in ("seeds", "iqm", "iqm_ci", "at_bounds", "personalisation", "judge"):
            assert key in row, (k, key)
    # the main table is the first judge's: the trait judge
    assert m["greedy"]["reward"] == pytest.approx(m["greedy"]["by_judge"]["trait"]["reward"])
    # the other judge really scores differently (a trait-blind, impatient judge)
    assert abs(m["greedy"]["by_judge"]["llm"]["reward"] - m["greedy"]["by_judge"]["trait"]["reward"]) > 0.5


def test_the_paired_li_difference_is_computed_on_the_same_rounds(result):
    for jn in ("trait", "llm"):
        d = result["cross_evaluation"][jn]["gddpg_li_minus_gddpg"]
        assert d["mean"] == 0.0 and d["wins"] == d["losses"] == 0 and d["p_seed_beats"] == 0.5  # the same actor


def test_a_missing_reward_model_is_a_clear_message(policy_dir, tmp_path, capsys):
    from rlli.commands.main import main

    empty = tmp_path / "p"
    shutil.copytree(policy_dir / "gddpg", empty / "gddpg")
    shutil.copytree(policy_dir / "ddpg", empty / "ddpg")
    assert main(["eval", "policy", "--judge", "llm", "--policy-dir", str(empty), "--states", "2"]) == 2
    err = capsys.readouterr().err
    assert "no reward model" in err and "Traceback" not in err


def _frame(people: int, with_agent: bool) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for g in range(8):
        truth = rng.integers(2, 10)
        for h in range(people):
            rows.append({"generation_id": f"g{g}", "rater_id": f"h{h}", "rater_kind": "human", "status": "ok",
                         "score": int(np.clip(truth + rng.integers(-1, 2), 1, 10)), "rater_name": "you",
                         "backend": None, "model": None, "mirrors_id": None,
                         **{t: 0.5 for t in TRAIT_COLUMNS}})
        if with_agent:
            rows.append({"generation_id": f"g{g}", "rater_id": "a1", "rater_kind": "agent", "status": "ok",
                         "score": int(truth), "rater_name": "open", "backend": "llm", "model": "fake-judge",
                         "mirrors_id": None, **{t: 0.7 for t in TRAIT_COLUMNS}})
    return pd.DataFrame(rows).astype({"score": "Int64"})


def test_agreement_with_people_or_a_plain_no():
    assert judge_agreement(_frame(0, True), "llm/fake-judge")["status"] == "no human ratings"
    assert judge_agreement(_frame(3, False), "llm/fake-judge")["status"].startswith("no ratings by llm/fake-judge")
    a = judge_agreement(_frame(3, True), "llm/fake-judge")
    assert a["status"] == "ok"
    r = a["pairings"]["preset"]
    assert r["n_humans"] == 3 and r["n_pairs"] == 24 and r["spearman"]["value"] > 0.7 and "alpha" in r


def test_a_store_that_is_not_there_is_said_so_and_not_created(tmp_path):
    from rlli.commands.policy import _agreement_with_people

    missing = tmp_path / "none.sqlite3"
    out = _agreement_with_people(f"sqlite:///{missing}", {"llm": "llm/fake-judge via its reward model"})
    assert out == {"status": f"no store at {missing}"} and not missing.exists()
    assert "only the trait judge" in _agreement_with_people(f"sqlite:///{missing}", {"trait": "trait/parametric-v1"})[
        "status"]
