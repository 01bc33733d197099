"""TIPI scoring on known answer sets (Gosling, Rentfrow & Swann 2003: items 2, 4, 6, 8, 10 reverse-keyed)."""

import pytest

from rlli.personas.judge import TRAITS
from rlli.personas.tipi import TipiError, ideal_answers, questionnaire, scale_scores, score


def test_ten_items_two_per_trait_and_the_reverse_keyed_ones():
    q = questionnaire()
    assert [it.number for it in q.items] == list(range(1, 11))
    assert {t: sum(it.trait == t for it in q.items) for t in TRAITS} == dict.fromkeys(TRAITS, 2)
    # reverse-keyed toward the TIPI's own scales: 2, 4, 6, 8, 10 (item 4 reverses emotional stability,
    # so toward neuroticism the reversed one is item 9)
    toward_tipi = {it.number for it in q.items if it.reverse != (it.trait == "neuroticism")}
    assert toward_tipi == {2, 4, 6, 8, 10}
    assert q.items[0].text == "Extraverted, enthusiastic." and q.items[9].text == "Conventional, uncreative."


@pytest.mark.parametrize("answers, expected", [
    # all 4s: the middle of every scale
    ([4] * 10, dict.fromkeys(TRAITS, 0.5)),
    # agree with every positive item, disagree with every reversed one: max O C E A, max emotional stability
    ([7, 1, 7, 1, 7, 1, 7, 1, 7, 1], {"openness": 1, "conscientiousness": 1, "extraversion": 1, "agreeableness": 1,
                                      "neuroticism": 0}),
    # agree with everything: every scale = mean(7, 8-7) = 4 -> 0.5
    ([7] * 10, dict.fromkeys(TRAITS, 0.5)),
    # a worked case: E=(5+(8-3))/2=5, A=((8-2)+6)/2=6, C=(6+(8-2))/2=6, ES=((8-5)+3)/2=3 -> N=5, O=(7+(8-1))/2=7
    ([5, 2, 6, 5, 7, 3, 6, 2, 3, 1], {"extraversion": 4 / 6, "agreeableness": 5 / 6, "conscientiousness": 5 / 6,
                                      "neuroticism": 4 / 6, "openness": 1.0}),
])
def test_known_answer_sets(answers, expected):
    got = score(answers)
    for t, v in expected.items():
        assert getattr(got, t) == pytest.approx(v), t


def test_scale_scores_are_on_the_one_to_seven_scale():
    s = scale_scores([5, 2, 6, 5, 7, 3, 6, 2, 3, 1])
    assert s == {"openness": 7.0, "conscientiousness": 6.0, "extraversion": 5.0, "agreeableness": 6.0, "neuroticism": 5.0}


def test_whole_number_strings_and_floats_are_accepted():
    assert score(["4"] * 9 + [4.0]) == score([4] * 10)


@pytest.mark.parametrize("answers, match", [
    ([4] * 9, "10 items; got 9"),
    ([4] * 11, "10 items; got 11"),
    ([4] * 9 + [8], "answer 10 must be a whole number from 1 to 7"),
    ([0] + [4] * 9, "answer 1 must be"),
    ([4.5] + [4] * 9, "answer 1 must be"),
    (["x"] + [4] * 9, "answer 1 is not a number"),
    ([True] + [4] * 9, "answer 1 must be"),
    (None, "list of ten answers"),
])
def test_bad_answers_are_refused_with_the_reason(answers, match):
    with pytest.raises(TipiError, match=match):
        score(answers)


def test_an_ideal_respondent_is_recovered_within_the_scales_rounding():
    from rlli.personas import load_presets

    for p in load_presets():
        got = score(ideal_answers(p.traits))
        for t in TRAITS:
            assert abs(getattr(got, t) - getattr(p.traits, t)) <= 1 / 12 + 1e-9, (p.name, t)


def test_a_persons_profile_from_their_answers():
    from rlli.personas.tipi import persona_from_tipi

    p = persona_from_tipi([7, 1, 7, 1, 7, 1, 7, 1, 7, 1])
    assert (p.name, p.instrument) == ("you", "tipi") and p.traits.neuroticism == 0 and p.traits.openness == 1
    with pytest.raises(TipiError):
        persona_from_tipi([7] * 3)
