"""`train policy` with a judge through a reward model (--judge/--query-budget/--reward-model), --init, --actor-lr."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from rlli.policy import judged

FAST = ["--iterations", "2", "--no-progress", "--minutes", "5"]


@pytest.fixture(autouse=True)
def fixed_ranges(monkeypatch):
    monkeypatch.setattr(judged, "design_ranges", lambda p=None: ((0.9, 1.0), (0.6, 34.5)))


def _main(argv):
    from rlli.commands.main import main

    return main(argv)


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_a_non_positive_query_budget_gets_a_clear_message(budget, capsys, tmp_path):
    assert _main(["train", "policy", "--judge", "llm", "--query-budget", budget, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--query-budget must be a positive number of judge queries" in err
    assert "Traceback" not in err and not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("flag", ["--actor-lr", "--critic-lr"])
def test_a_non_positive_learning_rate_is_refused(flag, capsys):
    assert _main(["train", "policy", flag, "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run on the trait judge through the reward-model pipeline (the -LI arm's control)."""
    import pytest as _pytest

    mp = _pytest.MonkeyPatch()
    mp.setattr(judged, "design_ranges", lambda p=None: ((0.9, 1.0), (0.6, 34.5)))
    root = tmp_path_factory.mktemp("li")
    out = root / "run"
    rc = _main(["train", "policy", "--judge", "trait", "--query-budget", "24", "--query-cache",
                str(root / "q.json"), "--out", str(out), "--best-of", "2", "--actor-lr", "2e-4", "--critic-lr", "5e-4",
                *FAST])
    mp.undo()
    assert rc == 0
    return root, out


def test_the_checkpoint_records_its_judge_and_keeps_the_reward_model_beside_it(trained):
    from rlli.policy.reward_model import RewardModel

    _, out = trained
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["judge"] == "trait:trait/parametric-v1 via reward model (24 queries)"
    assert cfg["reward_model"]["file"] == "reward_model.json" and cfg["reward_model"]["info"]["budget"] == 24
    assert cfg["reward_model"]["figures"]["holdout"]["n"] == 6
    assert cfg["args"]["actor_lr"] == 2e-4 and cfg["args"]["critic_lr"] == 5e-4
    assert RewardModel.load(out / "reward_model.json").judge == "trait/parametric-v1"


def test_a_saved_reward_model_trains_without_asking_again(trained, capsys):
    root, out = trained
    again = root / "again"
    assert _main(["train", "policy", "--reward-model", str(out / "reward_model.json"), "--out", str(again),
                  *FAST]) == 0
    assert json.loads((again / "config.json").read_text())["judge"] == json.loads(
        (out / "config.json").read_text())["judge"]
    assert "asking" not in capsys.readouterr().out
    assert _main(["train", "policy", "--reward-model", str(root / "missing.json"), "--out", str(root / "x")]) == 2
    assert "cannot read the reward model" in capsys.readouterr().err


def test_init_starts_from_a_checkpoint(trained, capsys):
    root, out = trained
    tuned = root / "tuned"
    # two iterations stay inside the random warm-up (no update): the saved actor is the one it started from
    assert _main(["train", "policy", "--init", str(out), "--out", str(tuned), "--best-of", "2", "--seed", "5",
                  *FAST]) == 0
    a, b = load_file(str(out / "actor.safetensors")), load_file(str(tuned / "actor.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    c, d = load_file(str(out / "critic.safetensors")), load_file(str(tuned / "critic.safetensors"))
    assert all((c[k] == d[k]).all() for k in c)
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["init"]["folder"] == str(out) and cfg["init"]["judge"].startswith("trait:trait/parametric-v1")
    fresh = root / "fresh"
    assert _main(["train", "policy", "--out", str(fresh), "--seed", "5", *FAST]) == 0  # same seed without --init
    assert not all((a[k] == load_file(str(fresh / "actor.safetensors"))[k]).all() for k in a)
    capsys.readouterr()
    assert _main(["train", "policy", "--algo", "ddpg", "--init", str(out), "--out", str(root / "bad"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "--init" in err and "gddpg checkpoint" in err and "Traceback" not in err
