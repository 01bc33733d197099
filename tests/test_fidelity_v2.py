"""Persona fidelity v2: the instrument shares no words with the persona text, the statistics are right, and the
parametric respondent (the noise-only check) recovers traits and slopes in the stated directions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rlli.personas.judge import TRAITS, BigFive

STOP = {"a", "an", "the", "and", "of", "in", "to", "at", "do", "don't", "not", "am", "have", "get", "is", "are", "with",
        "you", "your", "their", "things", "way", "who", "as", "this", "each", "every", "often", "most", "lot", "really"}


def words(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z']+", text.lower()) if w not in STOP and len(w) > 2}


def test_the_instrument_shares_no_word_with_the_persona_text():
    from rlli.personas.fidelity import inventory, inventory_messages
    from rlli.personas.population import sample_profiles
    from rlli.personas.templates import templates, trait_phrase

    inv = inventory()
    item_words = set().union(*(words(text) for text, _, _ in inv.items))
    t = templates()
    persona_words = set().union(*(words(v) for pair in t["traits"].values() for v in pair.values()),
                                words(" ".join(t["levels"]["words"])))
    assert not item_words & persona_words, item_words & persona_words
    for p in sample_profiles(50, seed=1):  # and the whole identity block each profile is given
        system, _ = inventory_messages(p, inv)
        assert trait_phrase(p) in system and not words(system) & item_words, words(system) & item_words


def test_the_tipi_and_the_persona_words_do_not_overlap_either():
    from rlli.personas.templates import templates
    from rlli.personas.tipi import questionnaire

    tipi = set().union(*(words(it.text) for it in questionnaire().items))
    t = templates()
    persona_words = set().union(*(words(v) for pair in t["traits"].values() for v in pair.values()))
    assert not tipi & persona_words, tipi & persona_words


def test_mini_ipip_scoring_and_keying():
    from rlli.personas.fidelity import InventoryError, inventory

    inv = inventory()
    assert len(inv.items) == 20 and inv.top == 5
    assert all(sum(t == trait for _, t, _ in inv.items) == 4 for trait in TRAITS)
    high = BigFive(1.0, 1.0, 1.0, 1.0, 1.0)
    assert inv.score(inv.ideal(high)).as_tuple() == (1.0,) * 5  # reverse keys undo themselves
    assert inv.score([3] * 20).as_tuple() == (0.5,) * 5
    with pytest.raises(InventoryError, match="item3: expected a whole number 1..5, got 6"):
        inv.check({f"item{i}": (6 if i == 3 else 2) for i in range(1, 21)})


def test_fisher_interval_and_mtmm_gap():
    from rlli.personas.fidelity import fisher_ci, mtmm

    lo, hi = fisher_ci(0.5, 103)  # se = 0.1 on z: atanh(.5) = .5493 -> tanh(.5493 -+ .196)
    assert lo == pytest.approx(np.tanh(0.5493 - 0.196), abs=2e-3) and hi == pytest.approx(np.tanh(0.5493 + 0.196), abs=2e-3)
    assert fisher_ci(None, 50) == (None, None) and fisher_ci(0.3, 3) == (None, None)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 5))
    same = mtmm(a, a + 0.1 * rng.normal(size=a.shape))
    halo = mtmm(a, np.repeat(a.mean(1, keepdims=True), 5, 1))  # every answer tracks one general factor
    assert same["gap"] > 0.9 and halo["gap"] < 0.1


def test_the_noise_only_respondent_recovers_traits_and_slopes_in_the_stated_directions():
    from rlli.personas.fidelity import run_fidelity

    r = run_fidelity(100, "trait", seed=0, behavioural=20)
    d = r.as_dict()
    assert d["profiles"] == 100 and d["valid_rate"] == 1.0 and d["instrument"] == "mini_ipip"
    assert d["norm_set"] == "gosling2003" and "only reflects that noise" in d["note"]
    for t in TRAITS:
        e = d["per_trait"][t]
        assert e["n"] == 100 and e["low"] < e["r"] < e["high"] and e["r"] > 0.6
    assert d["mtmm_gap"] > 0.5 and d["mtmm"]["discriminant"] < 0.2
    b = d["behavioural"]
    assert b["complete"] == 20 and b["delay_slope_vs_neuroticism"]["r"] < 0 < b["quality_slope_vs_conscientiousness"]["r"]
    again = run_fidelity(100, "trait", seed=0, behavioural=0)
    assert again.per_trait == r.per_trait and again.behavioural == {}
    other = run_fidelity(100, "trait", seed=0, behavioural=0, norm_set="web2014")
    assert other.norm_set == "web2014" and other.per_trait != r.per_trait


def test_bad_arguments_are_refused():
    from rlli.personas.fidelity import run_fidelity

    with pytest.raises(ValueError, match="profiles must be between 4 and 2000"):
        run_fidelity(2, "trait")
    with pytest.raises(ValueError, match="unknown respondent 'gpt'"):
        run_fidelity(10, "gpt", behavioural=0)
