"""The shipped attribute probe and the fidelity metric built on it."""

import numpy as np

from rlli.diffusion.fidelity import fidelity, fidelity_batch, read_attributes, score
from rlli.diffusion.tiny import world
from rlli.diffusion.tiny.probe import render_set


def test_probe_reads_held_out_renders():
    images, labels = render_set(300, seed=12345, split="test")
    found = read_attributes(images)
    acc = np.mean([[f[k] == world.ATTRIBUTES[k][lab[i]] for i, k in enumerate(world.ATTRIBUTE_NAMES)]
                   for f, lab in zip(found, labels)])
    assert acc >= 0.95


def test_fidelity_rewards_the_right_prompt_and_not_a_wrong_one():
    rng = np.random.default_rng(7)
    right, wrong = [], []
    for _ in range(40):
        scene = world.random_scene(rng, "test")
        img = (world.render(scene, rng) * 255).astype(np.uint8)
        text, _ = world.caption(scene, rng, "test")
        other = world.Scene(**{**scene.__dict__, "colour": "green" if scene.colour != "green" else "red",
                               "object": "car" if scene.object != "car" else "tree"})
        right.append(fidelity(img, text))
        wrong.append(fidelity(img, world.caption(other, rng, "test")[0]))
    assert np.mean(right) > 0.9 and np.mean(wrong) < np.mean(right) - 0.2


def test_prompts_without_world_words_have_no_fidelity():
    img = np.zeros((64, 64, 3), np.uint8)
    assert fidelity(img, "something entirely different") is None
    assert fidelity_batch(np.stack([img, img]), ["", "a red house"])[0] is None
    assert score({}, {"colour": "red"}) is None
    assert score({"colour": "red", "object": "car"}, {"colour": "red", "object": "tree"}) == 0.5
