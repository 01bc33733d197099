"""The parametric persona judge."""

import numpy as np
import pytest

from rlli.network.qoe import trait_qoe, trait_weights
from rlli.personas.judge import BigFive, Delivery, Judge, Persona
from rlli.personas.trait_judge import TraitJudge, look_features, look_from_text

AVERAGE = BigFive()
CAREFUL = BigFive(openness=0.2, conscientiousness=0.95, extraversion=0.5, agreeableness=0.5, neuroticism=0.2)
CAREFREE = BigFive(openness=0.9, conscientiousness=0.05, extraversion=0.5, agreeableness=0.5, neuroticism=0.2)
ANXIOUS = BigFive(neuroticism=0.95, agreeableness=0.2)
CALM = BigFive(neuroticism=0.05, agreeableness=0.8)


def qoe(traits: BigFive, q: float, d: float) -> float:
    return float(trait_qoe(np.array(traits.as_tuple()), q, d))


def test_follows_the_protocol_and_is_deterministic():
    j = TraitJudge()
    assert isinstance(j, Judge) and (j.backend, j.model) == ("trait", "parametric-v1")
    d = Delivery("two red boats", "two red boats on water at sunset", quality=0.9, delay_s=6.0)
    r1, r2 = j.rate(Persona("p", AVERAGE), d), j.rate(Persona("p", AVERAGE), d)
    assert r1.status == "ok" and 1 <= r1.score <= 10 and r1.score == r2.score and r1.reason == r2.reason
    assert r1.score == int(np.rint(qoe(AVERAGE, 0.9, 6.0)))
    slow = Delivery("two red boats", "two red boats on water at sunset", quality=0.5, delay_s=40.0)
    pairs = [(Persona("a", ANXIOUS), d), (Persona("c", CALM), slow)]
    assert [r.score for r in j.rate_many(pairs)] == [j.rate(p, x).score for p, x in pairs]  # in order


def test_better_quality_and_shorter_waits_score_higher():
    for t in (AVERAGE, CAREFUL, CAREFREE, ANXIOUS):
        assert qoe(t, 1.0, 5.0) > qoe(t, 0.8, 5.0) > qoe(t, 0.6, 5.0)
        assert qoe(t, 0.9, 2.0) > qoe(t, 0.9, 10.0) > qoe(t, 0.9, 30.0)
    assert qoe(AVERAGE, 1.0, 0.0) <= 10 and qoe(AVERAGE, 0.0, 1e6) >= 1


def test_traits_shift_what_matters():
    # conscientious people lose more for the same quality drop than careless, open ones
    assert qoe(CAREFUL, 1.0, 5.0) - qoe(CAREFUL, 0.8, 5.0) > qoe(CAREFREE, 1.0, 5.0) - qoe(CAREFREE, 0.8, 5.0)
    # neurotic, disagreeable people lose more for the same extra wait than calm, agreeable ones
    assert qoe(ANXIOUS, 0.9, 2.0) - qoe(ANXIOUS, 0.9, 15.0) > qoe(CALM, 0.9, 2.0) - qoe(CALM, 0.9, 15.0)
    w = trait_weights(np.array([CAREFUL.as_tuple(), CAREFREE.as_tuple()]))
    assert np.allclose(w.sum(1), 1) and w[0, 0] > w[1, 0]


def test_look_matters_by_openness():
    colourful = Delivery("x", "", 1.0, 5.0, extras={"colourfulness": 0.9, "brightness": 0.5})
    plain = Delivery("x", "", 1.0, 5.0, extras={"colourfulness": 0.1, "brightness": 0.5})
    j = TraitJudge()
    open_p = Persona("o", BigFive(openness=1.0))
    closed_p = Persona("c", BigFive(openness=0.0))
    assert "look" in j.rate(open_p, colourful).reason
    assert float(j.rate(open_p, colourful).reason.split()[1][:-1]) > float(j.rate(open_p, plain).reason.split()[1][:-1])
    assert float(j.rate(closed_p, plain).reason.split()[1][:-1]) > float(j.rate(closed_p, colourful).reason.split()[1][:-1])


def test_vectorised_form_matches_the_judge():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, (50, 5))
    q, d = rng.uniform(0.3, 1, 50), rng.uniform(0, 30, 50)
    v = trait_qoe(t, q, d)
    j = TraitJudge()
    for i in range(50):
        r = j.rate(Persona("p", BigFive.from_sequence(t[i])), Delivery("p", "", float(q[i]), float(d[i])))
        assert r.score == int(np.clip(np.rint(v[i]), 1, 10))


@pytest.mark.parametrize("q,d", [(float("nan"), 1.0), (0.9, float("inf")), (0.9, -1.0)])
def test_invalid_deliveries_get_no_score(q, d):
    r = TraitJudge().rate(Persona("p", AVERAGE), Delivery("p", "", q, d))
    assert r.score is None and r.status == "invalid"


def test_look_features():
    grey = np.full((8, 8, 3), 128, np.uint8)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    c_grey, b_grey = look_features(grey)
    c_red, _ = look_features(red)
    assert c_grey == 0.0 and b_grey == pytest.approx(128 / 255) and c_red > 0.5
    with pytest.raises(ValueError, match="RGB"):
        look_features(np.zeros((8, 8)))
    assert look_from_text("") == (0.5, 0.5)
    assert look_from_text("a bright red and yellow boat on a sunny day")[0] > look_from_text("a house at night")[0]
    assert look_from_text("a sunny day")[1] > look_from_text("a dark night in the rain")[1]


def test_utilities_follow_the_documented_formulas():
    from rlli.network.qoe import utilities

    careful = np.array(BigFive(conscientiousness=1.0).as_tuple())
    careless = np.array(BigFive(conscientiousness=0.0).as_tuple())
    assert utilities(careless, 0.8, 0.0)[0] == pytest.approx(0.6)
    assert utilities(careful, 0.8, 0.0)[0] == pytest.approx(0.6**3)
    avg = np.array(AVERAGE.as_tuple())  # patience 10 s x (1.25 + 0.25 - 0.375) = 11.25 s
    assert utilities(avg, 1.0, 11.25)[1] == pytest.approx(np.exp(-1.0))
    assert utilities(avg, 1.0, 0.0, np.array([0.5, 0.5]))[2] == pytest.approx(1.0)
