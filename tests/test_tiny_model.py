"""The embedded model: training smoke run with save/load round trip, and the shipped weights."""

import numpy as np
import pytest

from rlli.config import ASSETS
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, independent_groups
from rlli.diffusion.tiny.backbone import MissingWeights, TinyBackbone
from rlli.diffusion.tiny.train import TrainConfig, train


def test_training_smoke_run_checkpoints_resumes_and_loads(tmp_path):
    cfg = TrainConfig(minutes=0.03, images=48, batch=4, run_dir=str(tmp_path / "run"), out=str(tmp_path / "w"),
                      checkpoint_every_s=0.0)
    first = train(cfg, log=lambda m: None)
    assert first["steps"] >= 1 and (tmp_path / "run" / "checkpoint.pt").exists()
    cfg.minutes = 0.06
    logs = []
    second = train(cfg, log=logs.append)
    assert any(m.startswith("resumed at step") for m in logs)
    assert second["steps"] > first["steps"]
    backbone = TinyBackbone(tmp_path / "w")
    res = Engine(backbone).run([Request("a red house", 1)], independent_groups(1), Plan(steps=3))
    assert res.outputs[0].image.shape == (64, 64, 3)


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingWeights, match="rlli train tiny-t2i"):
        TinyBackbone(tmp_path)


@pytest.fixture(scope="module")
def shipped():
    return TinyBackbone(ASSETS / "tiny-t2i")


def test_shipped_model_is_small_and_deterministic(shipped):
    assert (ASSETS / "tiny-t2i" / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    engine, plan = Engine(shipped), Plan(steps=8)
    reqs = [Request("a red house on grass at sunset", 5), Request("two blue boats on a lake at night", 6)]
    a = engine.run(reqs, independent_groups(2), plan)
    b = engine.run(reqs, independent_groups(2), plan)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a.outputs, b.outputs))
    assert np.abs(a.outputs[0].image.astype(int) - a.outputs[1].image.astype(int)).mean() > 10


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "dpm", "unipc"])
def test_shipped_model_shares_exactly_for_identical_prompts(shipped, scheduler):
    engine, plan = Engine(shipped), Plan(steps=6, scheduler=scheduler)
    reqs = [Request("a yellow car on a street", 3), Request("a yellow car on a street", 9)]
    shared = engine.run(reqs, [GroupPlan((0, 1), 0, 4)], plan)
    solo = engine.run(reqs[:1], independent_groups(1), plan)
    for o in shared.outputs:
        assert np.abs(o.image.astype(int) - solo.outputs[0].image.astype(int)).max() <= 1


def test_a_member_finishes_with_its_own_prompt_after_the_hand_off(shipped):
    """With the prompt-sensitive shipped model: a member that forks after 2 of 8 steps must finish as its own
    prompt (blue), not as the anchor's (red) - the engine tests on random weights cannot see this."""
    from rlli.diffusion.fidelity import read_attributes

    engine, plan = Engine(shipped), Plan(steps=8)
    reqs = [Request("a red house on grass at sunset", 4), Request("a blue house on grass at sunset", 99)]
    res = engine.run(reqs, [GroupPlan((0, 1), 0, member_steps=(8, 2))], plan)
    anchor, member = res.outputs
    assert member.noise_seed == 4 and member.image_source == "forked"
    assert np.abs(anchor.image.astype(int) - member.image.astype(int)).mean() > 3
    colours = [f["colour"] for f in read_attributes(np.stack([anchor.image, member.image]))]
    assert colours == ["red", "blue"]
    # and it is exactly the anchor's first two steps followed by its own six
    alone = engine.run(reqs, [GroupPlan((0, 1), 0, 2)], plan).outputs[1]
    assert np.abs(alone.image.astype(int) - member.image.astype(int)).max() <= 1
