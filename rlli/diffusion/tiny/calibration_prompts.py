"""Calibration prompts from the embedded scene world: anchors with variants from a light edit to an
unrelated scene, and synthetic busy-service rounds.

Tied to the scene world's caption generator (:mod:`rlli.diffusion.tiny.world`); the fork rule's
fitting and checks (:mod:`rlli.calibration.pairs`) never read these words.
"""

from __future__ import annotations

import copy

import numpy as np


def variant(scene, n_changes: int, rng, among: list[str] | None = None):
    """The scene with ``n_changes`` randomly chosen attributes (of ``among``) set to other values."""
    from dataclasses import replace

    from rlli.diffusion.tiny import world

    pool = [k for k in (among or world.ATTRIBUTE_NAMES) if len(world.ATTRIBUTES[k]) > 1]
    names = list(rng.permutation(pool))[:n_changes]
    changes = {}
    for k in names:
        options = [v for v in world.ATTRIBUTES[k] if v != getattr(scene, k)]
        if k in ("warmth", "detail"):  # keep a stated look stated: neutral / normal have no words
            options = [v for v in options if v not in ("neutral", "normal")] or options
        changes[k] = options[rng.integers(len(options))]
    return replace(scene, **changes)


LIGHT_SUFFIXES = (", high quality", ", detailed", ", digital art", ", 4k", " please", ", simple")


def light_edit(text: str, rng) -> str:
    """The same request typed a little differently: an article dropped or added, or a style tag."""
    words = text.split()
    r = rng.random()
    if r < 0.35 and words[0] in ("a", "an", "one"):
        return " ".join(words[1:])
    if r < 0.6 and "on" in words[:-1]:
        i = words.index("on")
        if words[i + 1] not in ("the", "a"):
            return " ".join(words[:i + 1] + ["the"] + words[i + 1:])
    return text + LIGHT_SUFFIXES[rng.integers(len(LIGHT_SUFFIXES))]


def _same_words(scene, rng_state) -> str:
    """Caption ``scene`` with the very draws (stated attributes, words, order) an earlier caption made."""
    from rlli.diffusion.tiny import world

    return world.caption(scene, copy.deepcopy(rng_state), "train")[0]


VARIANT_KINDS = ("light edit", "rewording", "same scene, other attributes stated", "1 stated attribute changed",
                 "2 stated attributes changed", "1 attribute changed, new words", "unrelated")


def prompt_variants(scene, rng) -> tuple[str, list[str]]:
    """An anchor caption and seven variants, from the same request typed differently to an unrelated one:
    light edit, rewording (same attributes stated), the same scene with other attributes stated, one and two
    stated attributes changed in the same words, one attribute changed in new words, an unrelated scene."""
    from rlli.diffusion.tiny import world

    state = copy.deepcopy(rng)
    anchor, stated = world.caption(scene, rng, "train")
    same = {k: k in stated for k in world.ATTRIBUTE_NAMES}
    return anchor, [
        light_edit(anchor, rng),
        world.caption(scene, rng, "train", mentions=same)[0],
        world.caption(scene, rng, "train")[0],
        _same_words(variant(scene, 1, rng, list(stated)), state),
        _same_words(variant(scene, 2, rng, list(stated)), state),
        world.caption(variant(scene, 1, rng), rng, "train", mentions=same)[0],
        world.caption(world.random_scene(rng, "train"), rng, "train")[0],
    ]


def calibration_prompts(n_anchors: int, seed: int) -> list[tuple[str, list[str]]]:
    """Anchor captions of held-out scenes, each with its seven variants (:func:`prompt_variants`)."""
    from rlli.diffusion.tiny import world

    rng = np.random.default_rng(seed)
    return [prompt_variants(world.random_scene(rng, "test"), rng) for _ in range(n_anchors)]


def service_round(rng, n: int = 16) -> list[str]:
    """A synthetic busy-service round: 3-4 topics of 2-4 requests each (light edits of the first request,
    rewordings, looser captions of the same scene, one-attribute variants), the rest unrelated outliers."""
    from rlli.diffusion.tiny import world

    prompts: list[str] = []
    for _ in range(int(rng.integers(3, 5))):
        scene = world.random_scene(rng, "train")
        first, stated = world.caption(scene, rng, "train")
        same = {k: k in stated for k in world.ATTRIBUTE_NAMES}
        prompts.append(first)
        for _ in range(int(rng.integers(1, 4))):
            r = rng.random()
            if r < 0.4:
                prompts.append(light_edit(first, rng))
            elif r < 0.65:
                prompts.append(world.caption(scene, rng, "train", mentions=same)[0])
            elif r < 0.8:
                prompts.append(world.caption(scene, rng, "train")[0])
            else:
                prompts.append(world.caption(variant(scene, 1, rng, list(stated)), rng, "train", mentions=same)[0])
    while len(prompts) < n:
        prompts.append(world.caption(world.random_scene(rng, "train"), rng, "train")[0])
    return prompts[:n]


def calibration_sets(n_anchors: int, seed: int) -> list[tuple[str, list[str], list[str]]]:
    """(anchor, its seven variants, their kinds) for ``n_anchors`` held-out scenes."""
    return [(a, vs, list(VARIANT_KINDS)) for a, vs in calibration_prompts(n_anchors, seed)]
