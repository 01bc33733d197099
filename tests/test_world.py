import numpy as np

from rlli.diffusion.tiny import world


def test_render_is_seeded_and_in_range():
    scene = world.Scene("night", "rain", "water", "boat", "blue", "two", "left", "cold", "busy")
    a = world.render(scene, np.random.default_rng(1))
    b = world.render(scene, np.random.default_rng(1))
    c = world.render(scene, np.random.default_rng(2))
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_attributes_change_the_picture():
    base = world.Scene("day", "clear", "grass", "house", "red", "one", "centre", "neutral", "normal")
    img = world.render(base, np.random.default_rng(0))
    assert np.array_equal(world.render(base, np.random.default_rng(0)), img), "same scene and seed must render the same"
    for name, values in world.ATTRIBUTES.items():
        for v in values:
            if v == getattr(base, name):
                continue
            other = world.render(world.Scene(**{**base.__dict__, name: v}), np.random.default_rng(0))
            assert np.abs(other - img).mean() > 0.002, (name, v)


def test_held_out_split_is_disjoint_and_about_ten_percent():
    rng = np.random.default_rng(0)
    train = {world.random_scene(rng, "train") for _ in range(300)}
    test = {world.random_scene(rng, "test") for _ in range(300)}
    assert not any(world.is_held_out_combo(s) for s in train)
    assert all(world.is_held_out_combo(s) for s in test)
    combos = [world.Scene(t, "clear", g, o, c, "one", "left", "neutral", "normal")
              for t in world.ATTRIBUTES["time"] for g in world.ATTRIBUTES["ground"]
              for o in world.ATTRIBUTES["object"] for c in world.ATTRIBUTES["colour"]]
    share = np.mean([world.is_held_out_combo(s) for s in combos])
    assert 0.05 < share < 0.15


def test_captions_state_what_parse_reads_back():
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        for _ in range(500):
            scene = world.random_scene(rng, split)
            text, stated = world.caption(scene, rng, split)
            assert world.parse_prompt(text) == stated
            assert {"object", "colour", "count"} <= set(stated)
            assert all(getattr(scene, k) == v for k, v in stated.items())


def test_test_frames_never_appear_in_training_captions():
    rng = np.random.default_rng(4)
    caps = [world.caption(world.random_scene(rng), rng, "train")[0] for _ in range(500)]
    assert not any(c.startswith(("an illustration showing", "imagine")) for c in caps)


def test_parse_prompt_handles_free_text():
    assert world.parse_prompt("") == {}
    assert world.parse_prompt("<b>a crimson cottage</b> at dusk") == {"colour": "red", "time": "sunset"}
    p = world.parse_prompt("two lime green boats in a green field, cool-toned")
    assert p == {"count": "two", "colour": "green", "object": "boat", "ground": "grass", "warmth": "cold"}
    assert world.parse_prompt("an orange oak")["count"] == "one"
    assert "count" not in world.parse_prompt("red houses")


def test_a_persona_version_keeps_the_visitors_subject_and_adds_only_its_preferred_look():
    from rlli.diffusion.tiny.variants import persona_version

    v = persona_version("a red house on grass at sunset", {"warmth": "warm", "detail": "calm", "colour": "blue",
                                                           "time": "night"}, seed=3)
    stated = world.parse_prompt(v.text)
    assert v.added == {"warmth": "warm", "detail": "calm"} and v.written_by == "composed"
    assert {k: stated[k] for k in v.kept} == v.kept == world.parse_prompt("a red house on grass at sunset")
    assert stated["warmth"] == "warm" and stated["detail"] == "calm"  # read back by the world's own parser
    assert v.text.startswith("a red house on grass at sunset, ")
    assert persona_version("a red house on grass at sunset", {"warmth": "warm"}, seed=3) == \
        persona_version("a red house on grass at sunset", {"warmth": "warm"}, seed=3)
    same = persona_version("a calm red house, warm", {"warmth": "cold", "detail": "busy"})
    assert same.same_as_visitor and same.text == "a calm red house, warm"  # never overrides what the visitor said
    assert persona_version("a boat", {"warmth": "neutral", "detail": "any"}).text == "a boat"
    import pytest

    with pytest.raises(ValueError, match="empty"):
        persona_version("  ", {})
    with pytest.raises(ValueError, match="only"):
        persona_version("a boat", {"colour": "red"}, look=("colour",))
