import numpy as np
import pytest
import torch

from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, expected_passes, independent_groups

SCHEDULERS = ["ddim", "euler", "dpm", "unipc"]
PROMPTS = ["a red house on grass", "a blue boat at sea", "two green trees at night"]


def _max_diff(a, b):
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def _solo(engine, request, plan):
    return engine.run([request], independent_groups(1), plan).outputs[0].image


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_no_sharing_reproduces_independent_generation(tiny_sd, scheduler):
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0, scheduler=scheduler)
    reqs = [Request(p, seed=i + 7, request_id=str(i)) for i, p in enumerate(PROMPTS)]
    groups = [GroupPlan(members=(0, 1, 2), anchor=1, shared_steps=0)]
    res = engine.run(reqs, groups, plan)
    for r, out in zip(reqs, res.outputs):
        assert out.request_id == r.request_id and out.shared_steps == 0 and out.own_steps == 6
        assert _max_diff(out.image, _solo(engine, r, plan)) <= 1


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("shared", range(0, 7))
def test_group_with_one_prompt_matches_unshared(tiny_sd, scheduler, shared):
    """Members with the same prompt finish exactly as an unshared run of the anchor would."""
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0, scheduler=scheduler)
    reqs = [Request(PROMPTS[0], seed=s) for s in (3, 4, 5)]
    res = engine.run(reqs, [GroupPlan(members=(0, 1, 2), anchor=0, shared_steps=shared)], plan)
    for r, out in zip(reqs, res.outputs):
        ref = _solo(engine, reqs[0] if shared else r, plan)  # s = 0: each member from its own seed
        assert _max_diff(out.image, ref) <= 1
        assert out.shared_steps == shared and out.own_steps == 6 - shared


def test_matches_the_diffusers_pipeline(tiny_sd_path, tiny_sd):
    """Our own loop equals StableDiffusionPipeline's for an unshared request."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_path)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(PROMPTS[1], num_inference_steps=5, guidance_scale=3.0, height=32, width=32,
               generator=torch.Generator().manual_seed(11), output_type="np").images[0]
    ours = _solo(Engine(tiny_sd), Request(PROMPTS[1], seed=11), Plan(steps=5, guidance_scale=3.0))
    assert _max_diff(ours, (ref * 255).round().astype(np.uint8)) <= 1


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_forward_pass_count_matches_formula(tiny_sd, guidance):
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=guidance)
    reqs = [Request(p, seed=i) for i, p in enumerate(PROMPTS + ["a yellow car on a street"])]
    groups = [GroupPlan((0, 3), 0, 4), GroupPlan((1,), 1, 0), GroupPlan((2,), 2, 2)]
    res = engine.run(reqs, groups, plan)
    per = 2 if guidance > 1 else 1
    assert res.denoiser_passes == expected_passes(groups, plan) == per * ((4 + 2 * 2) + 6 + (2 + 4))
    assert res.denoiser_passes < expected_passes(independent_groups(4), plan)


def test_handoff_bytes_count_the_latent_and_solver_history(tiny_sd):
    engine = Engine(tiny_sd)
    reqs = [Request(PROMPTS[0], 0), Request(PROMPTS[1], 1)]
    latent_bytes = 4 * int(np.prod(tiny_sd.latent_shape))  # float32
    ddim = engine.run(reqs, [GroupPlan((0, 1), 0, 3)], Plan(steps=6, scheduler="ddim"))
    assert {o.handoff_bytes for o in ddim.outputs} == {latent_bytes}
    dpm = engine.run(reqs, [GroupPlan((0, 1), 0, 3)], Plan(steps=6, scheduler="dpm"))
    assert {o.handoff_bytes for o in dpm.outputs} == {2 * latent_bytes}  # second order: one past output
    one = engine.run(reqs, [GroupPlan((0, 1), 0, 1)], Plan(steps=6, scheduler="dpm"))
    assert {o.handoff_bytes for o in one.outputs} == {2 * latent_bytes}  # after one step its output is the history
    solo = engine.run(reqs, independent_groups(2), Plan(steps=6))
    assert all(o.handoff_bytes == 0 for o in solo.outputs)


def test_seeds_make_runs_identical_and_sharing_changes_images(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0)
    reqs = [Request(PROMPTS[0], 1), Request(PROMPTS[2], 2)]
    groups = [GroupPlan((0, 1), 0, 3)]
    a, b = engine.run(reqs, groups, plan), engine.run(reqs, groups, plan)
    for x, y in zip(a.outputs, b.outputs):
        assert np.array_equal(x.image, y.image)
    solo = engine.run(reqs, independent_groups(2), plan)
    assert _max_diff(a.outputs[1].image, solo.outputs[1].image) > 1  # the member took the anchor's start
    assert set(a.wall_s) >= {"encode", "shared", "branches", "decode", "total"}


@pytest.mark.parametrize("groups,match", [
    (lambda: [GroupPlan((0,), 0, 0)], "cover"),
    (lambda: [GroupPlan((0, 1), 0, 9)], "shared steps"),
    (lambda: [GroupPlan((0, 1), 0, member_steps=(2, -1))], "shared steps"),
    (lambda: [GroupPlan((0, 1), 5, 1)], "anchor"),
    (lambda: [GroupPlan((0, 1), 0, member_steps=(1,))], "one value per member"),
])
def test_bad_plans_are_refused(tiny_sd, groups, match):
    engine = Engine(tiny_sd)
    reqs = [Request("a", 0), Request("b", 1)]
    with pytest.raises(ValueError, match=match):
        engine.run(reqs, groups(), Plan(steps=4))


def test_an_empty_round_is_empty(tiny_sd):
    assert Engine(tiny_sd).run([], [], Plan()).outputs == []


def test_stochastic_samplers_and_wrong_timestep_counts_are_refused(tiny_sd, monkeypatch):
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    engine = Engine(tiny_sd)
    req = [Request("a", 0)]
    cfg = tiny_sd.scheduler_config
    monkeypatch.setattr(tiny_sd, "make_scheduler", lambda kind: EulerAncestralDiscreteScheduler.from_config(cfg))
    with pytest.raises(ValueError, match="adds noise at every step"):
        engine.run(req, independent_groups(1), Plan(steps=3))
    monkeypatch.setattr(tiny_sd, "make_scheduler",
                        lambda kind: DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="sde-dpmsolver++"))
    with pytest.raises(ValueError, match="sde-dpmsolver"):
        engine.run(req, independent_groups(1), Plan(steps=3))
    from diffusers import DDIMScheduler

    class Short(DDIMScheduler):
        def set_timesteps(self, n, device=None):
            super().set_timesteps(n, device)
            self.timesteps = self.timesteps[:-1]

    monkeypatch.setattr(tiny_sd, "make_scheduler", lambda kind: Short.from_config(cfg))
    with pytest.raises(ValueError, match="exactly one per step"):
        engine.run(req, independent_groups(1), Plan(steps=3))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_each_member_forks_at_its_own_step(tiny_sd, scheduler):
    """A group with per-member fork steps gives each member what a two-request group at its step gives."""
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0, scheduler=scheduler)
    reqs = [Request(PROMPTS[0], 1), Request(PROMPTS[1], 2), Request(PROMPTS[2], 3), Request(PROMPTS[1], 4)]
    group = GroupPlan((0, 1, 2, 3), 0, member_steps=(5, 2, 5, 0))
    res = engine.run(reqs, [group], plan)
    assert group.shared_steps == 5
    assert res.denoiser_passes == expected_passes([group], plan) == 2 * (5 + 1 + 4 + 1 + 6)
    for k, s in [(1, 2), (2, 5)]:
        pair = engine.run([reqs[0], reqs[k]], [GroupPlan((0, 1), 0, s)], plan).outputs[1]
        assert _max_diff(res.outputs[k].image, pair.image) <= 1
        assert (res.outputs[k].shared_steps, res.outputs[k].own_steps) == (s, 6 - s)
    assert _max_diff(res.outputs[3].image, _solo(engine, reqs[3], plan)) <= 1  # s = 0: its own seed
    assert _max_diff(res.outputs[0].image, _solo(engine, reqs[0], plan)) <= 1


def test_outputs_say_whose_noise_and_which_anchor(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=4)
    reqs = [Request(PROMPTS[0], 10, "a"), Request(PROMPTS[1], 11, "b"), Request(PROMPTS[2], 12, "c"),
            Request(PROMPTS[0], 13, "d")]
    res = engine.run(reqs, [GroupPlan((0, 1, 2, 3), 2, member_steps=(4, 2, 4, 0))], plan)
    a, b, c, d = res.outputs
    assert (a.noise_seed, a.anchor_index, a.anchor_request_id, a.image_source) == (12, 2, "c", "anchor's image")
    assert a.is_anchors_image and a.anchor_prompt == PROMPTS[2]
    assert (b.noise_seed, b.image_source) == (12, "forked")
    assert (c.noise_seed, c.image_source) == (12, "forked")  # the anchor's own trajectory
    assert (d.noise_seed, d.image_source, d.handoff_bytes) == (13, "own", 0)
    assert a.seed == 10 and b.seed == 11


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_mixed_round_keeps_every_branch_on_its_own_timestep(tiny_sd, scheduler):
    """Branches at different steps share one batched call; each must still equal its own run."""
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0, scheduler=scheduler)
    reqs = [Request(PROMPTS[0], 1), Request(PROMPTS[0], 2), Request(PROMPTS[1], 3), Request(PROMPTS[2], 4)]
    groups = [GroupPlan((0, 1), 0, 3), GroupPlan((2,), 2, 0), GroupPlan((3,), 3, 0)]
    res = engine.run(reqs, groups, plan)
    for k in (0, 1):
        assert _max_diff(res.outputs[k].image, _solo(engine, reqs[0], plan)) <= 1
    for k in (2, 3):
        assert _max_diff(res.outputs[k].image, _solo(engine, reqs[k], plan)) <= 1
