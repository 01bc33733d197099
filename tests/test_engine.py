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


# --- split trees (issue 18) ---------------------------------------------------------------------------------------

from rlli.diffusion.engine import Start, TreePlan, expected_tree_passes, noise  # noqa: E402


def _walk(engine, plan, seed, segments):
    """The per-member fork written out with no engine batching: from ``seed``'s noise, each (prompt, from, to)
    segment one guided step at a time in a batch of one; returns (image, latent, scheduler) at the last step."""
    sched = engine.scheduler(plan)
    x = noise(seed, tuple(engine.backbone.latent_shape), "cpu") * sched.init_noise_sigma
    for prompt, a, b in segments:
        c, u = engine.encode([prompt])
        for i in range(a, b):
            t = sched.timesteps[i]
            out = engine.predict_guided(sched.scale_model_input(x, t), torch.stack([torch.as_tensor(t)]).reshape(-1), c, u,
                                        plan)
            x = sched.step(out, t, x).prev_sample
    return engine.backbone.decode(x)[0], x, sched


def _close(a, b, tol: int = 2) -> bool:
    """Equal within ``tol``/255: a batch-1 reference walk may round differently from the batched engine on the CPU."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= tol


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_one_level_tree_is_the_per_member_fork_exactly(tiny_sd, scheduler):
    """Bit for bit: the tree engine's one-level tree and the GroupPlan run (the same batched computation). Against
    each member's fork walked alone at batch 1, within 2/255: CPU kernels may round differently at another batch
    size (seen with ddim on a loaded 2-core machine), so batch-1 equality is not a property of the engine."""
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0, scheduler=scheduler)
    reqs = [Request(PROMPTS[0], 1), Request(PROMPTS[1], 2), Request(PROMPTS[2], 3), Request(PROMPTS[1], 4)]
    group = GroupPlan((0, 1, 2, 3), 0, member_steps=(5, 2, 5, 0))
    tree = TreePlan.one_level(group)
    assert tree.parents == (None, 0, 0, None) and tree.departures == (0, 2, 5, 0) and tree.depth == 1
    by_groups, by_tree = engine.run(reqs, [group], plan), engine.run_tree(reqs, [tree], plan)
    assert by_groups.denoiser_passes == by_tree.denoiser_passes == expected_tree_passes([tree], plan) \
        == expected_passes([group], plan)
    for k, s in [(1, 2), (2, 5)]:
        ref, _, _ = _walk(engine, plan, 1, [(PROMPTS[0], 0, s), (reqs[k].prompt, s, 6)])
        assert _close(by_tree.outputs[k].image, ref)
        assert by_tree.outputs[k].parent_index == 0 and by_tree.outputs[k].foreign_steps == s
    alone = _walk(engine, plan, 4, [(PROMPTS[1], 0, 6)])[0]
    assert _close(by_tree.outputs[3].image, alone)
    for a, b in zip(by_groups.outputs, by_tree.outputs):
        assert np.array_equal(a.image, b.image)
        assert (a.shared_steps, a.handoff_bytes, a.noise_seed, a.image_source) == \
            (b.shared_steps, b.handoff_bytes, b.noise_seed, b.image_source)


def test_a_sub_trunk_runs_on_its_own_prompt_after_leaving_the_anchor(tiny_sd, monkeypatch):
    """Member 2 rides member 1's branch: anchor's prompt for 2 steps, member 1's for 2 more, then its own; every
    step is still one batched call and the passes are each branch's own steps."""
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0)
    reqs = [Request(PROMPTS[0], 1, "a"), Request(PROMPTS[1], 2, "b"), Request(PROMPTS[2], 3, "c")]
    tree = TreePlan((0, 1, 2), 0, parents=(None, 0, 1), departures=(0, 2, 4))
    assert tree.depth == 2 and tree.serving() == {0: 2, 1: 4, 2: 0} and tree.shared_steps_of(1) == 4
    calls = []
    real = tiny_sd.predict
    monkeypatch.setattr(tiny_sd, "predict", lambda x, t, c: calls.append(x.shape[0]) or real(x, t, c))
    res = engine.run_tree(reqs, [tree], plan)
    monkeypatch.undo()
    assert len(calls) == plan.steps  # one batched call per step for every live branch
    assert res.denoiser_passes == expected_tree_passes([tree], plan) == 2 * (6 + 4 + 2)
    ref, _, _ = _walk(engine, plan, 1, [(PROMPTS[0], 0, 2), (PROMPTS[1], 2, 4), (PROMPTS[2], 4, 6)])
    c = res.outputs[2]
    assert _close(c.image, ref)
    assert (c.parent_index, c.foreign_steps, c.noise_seed, c.shared_steps) == (1, 4, 1, 4)
    assert c.path == ((0, 0, 2), (1, 2, 4), (2, 4, 6))
    b = res.outputs[1]
    assert (b.shared_steps, b.own_steps, b.foreign_steps, b.parent_index) == (4, 2, 2, 0)  # served c until step 4
    assert b.handoff_bytes == c.handoff_bytes == 4 * int(np.prod(tiny_sd.latent_shape))
    # a member leaving a parent whose own branch begins later takes the same latent from the parent's source
    early = engine.run_tree(reqs, [TreePlan((0, 1, 2), 0, parents=(None, 0, 1), departures=(0, 4, 2))], plan)
    assert early.outputs[2].parent_index == 0
    assert _close(early.outputs[2].image, _walk(engine, plan, 1, [(PROMPTS[0], 0, 2), (PROMPTS[2], 2, 6)])[0])


def test_a_kept_trunk_start_resumes_exactly_and_says_where_it_came_from(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=6, guidance_scale=3.0, scheduler="dpm")
    _, latent, sched = _walk(engine, plan, 9, [(PROMPTS[0], 0, 3)])
    start = Start(latent, sched, 3, 9, {"entry": "e1", "request_id": "old", "age_s": 12.0})
    reqs = [Request(PROMPTS[1], 5, "new")]
    res = engine.run_tree(reqs, [TreePlan((0,), 0, (None,), (3,))], plan, starts={0: start})
    out = res.outputs[0]
    assert _close(out.image, _walk(engine, plan, 9, [(PROMPTS[0], 0, 3), (PROMPTS[1], 3, 6)])[0])
    assert res.denoiser_passes == 2 * 3 and out.noise_seed == 9 and out.seed == 5
    assert out.start_origin["request_id"] == "old" and out.path[0] == ("kept:e1", 0, 3)
    assert out.image_source == "forked"
    _, done, sched_n = _walk(engine, plan, 9, [(PROMPTS[0], 0, 6)])
    whole = Start(done, sched_n, 6, 9, {"entry": "e2", "prompt": PROMPTS[0]})
    full = engine.run_tree(reqs, [TreePlan((0,), 0, (None,), (6,))], plan, starts={0: whole}).outputs[0]
    assert full.image_source == "anchor's image" and full.own_steps == 0  # an earlier request's finished image
    with pytest.raises(ValueError, match="kept trunk"):
        engine.run_tree(reqs, [TreePlan((0,), 0, (None,), (3,))], plan)


@pytest.mark.parametrize("parents, departures, match", [
    ((None, 0), (0, 0), "step 0"), ((1, 0), (2, 2), "no parent"), ((None, 2), (0, 2), "another member"),
    ((None, 2, 1), (0, 2, 3), "cycle")])
def test_malformed_trees_are_refused(parents, departures, match):
    members = tuple(range(len(parents)))
    with pytest.raises(ValueError, match=match):
        TreePlan(members, 0, parents, departures)


# Golden values (diffusers' habit): the shipped embedded model, float32, DDIM, 4 steps, guidance 2, seed 0, one
# forked member (shares 2 steps with the anchor). Recorded on an Intel Xeon (AMX) CPU at commit 096d590's
# engine and equal bit for bit with the tree engine; tolerance 3/255 per pixel for other CPUs' float32 kernels.
GOLDEN_PROMPTS = ("a red house on grass at sunset", "a blue house on grass at sunset")
GOLDEN_SLICE = {0: [[205, 217, 192], [217, 211, 209], [209, 211, 221]],  # the anchor: the red house's wall
                1: [[152, 177, 172], [177, 180, 190], [149, 147, 160]]}  # forked member (unshared: about 20-36)
GOLDEN_AT = (slice(42, 45), slice(18, 21), 0)


def test_golden_slice_on_the_shipped_model():
    from rlli.config import ASSETS
    from rlli.diffusion.tiny.backbone import TinyBackbone

    engine, plan = Engine(TinyBackbone(ASSETS / "tiny-t2i")), Plan(steps=4, guidance_scale=2.0)
    reqs = [Request(GOLDEN_PROMPTS[0], 0), Request(GOLDEN_PROMPTS[1], 0)]
    res = engine.run(reqs, [GroupPlan((0, 1), 0, member_steps=(2, 2))], plan)
    for k, expected in GOLDEN_SLICE.items():
        img = res.outputs[k].image
        assert img.shape == (64, 64, 3)
        got = img[GOLDEN_AT].astype(int)
        assert np.abs(got - np.array(expected)).max() <= 3, got.tolist()
