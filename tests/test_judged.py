"""Training on a judge through a reward model fitted on a query budget (rlli/policy/judged.py, --judge/--query-budget)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlli.network.qoe import trait_qoe
from rlli.personas.judge import BigFive, Persona, Rating
from rlli.personas.trait_judge import TraitJudge
from rlli.policy import judged
from rlli.policy.judged import ask, fit_reward_model, query_design

PRESETS = [Persona("calm", BigFive(0.5, 0.9, 0.3, 0.8, 0.1)), Persona("edgy", BigFive(0.9, 0.2, 0.8, 0.2, 0.9))]
Q_RANGE, D_RANGE = (0.9, 1.0), (0.6, 34.5)


@pytest.fixture(autouse=True)
def fixed_ranges(monkeypatch):  # the design's ranges measured on the training rounds: fixed here (saves seconds)
    monkeypatch.setattr(judged, "design_ranges", lambda p=None: (Q_RANGE, D_RANGE))


class FakeJudge:
    """A judge that answers like the trait judge and counts what it was asked; ``fail`` maps a query index in call
    order to what it returns instead (None, a failed Rating, garbage), ``crash_after`` raises on a later batch."""

    backend, model = "fake", "counting-v1"

    def __init__(self, fail=None, crash_after: int | None = None):
        self.asked: list[tuple[Persona, float, float]] = []
        self.fail = fail or {}
        self.crash_after = crash_after
        self.inner = TraitJudge()

    def rate(self, persona, delivery):
        i = len(self.asked)
        self.asked.append((persona, delivery.quality, delivery.delay_s))
        if i in self.fail:
            return self.fail[i]
        return self.inner.rate(persona, delivery)

    def rate_many(self, pairs):
        if self.crash_after is not None and len(self.asked) >= self.crash_after:
            raise ConnectionError("the endpoint went away")
        return [self.rate(p, d) for p, d in pairs]


def test_the_design_respects_the_budget_fills_the_ranges_and_nests():
    qs = query_design(60, PRESETS, Q_RANGE, D_RANGE)
    assert len(qs) == 60
    assert query_design(25, PRESETS, Q_RANGE, D_RANGE) == qs[:25]  # a larger budget keeps the smaller one's queries
    q = np.array([x.quality for x in qs])
    d = np.array([x.delay_s for x in qs])
    assert Q_RANGE[0] <= q.min() and q.max() <= Q_RANGE[1] and D_RANGE[0] <= d.min() and d.max() <= D_RANGE[1]
    assert np.ptp(q) > 0.07 and np.ptp(np.log(d)) > 0.8 * np.log(D_RANGE[1] / D_RANGE[0])  # spread, not clumped
    assert 0.4 <= (q == 1.0).mean() <= 0.6 and q[q < 1].max() <= 0.99  # the unshared quality, most users' case
    names = [x.persona.name for x in qs]
    assert names.count("calm") == 10 and names.count("edgy") == 10 and names.count("sampled") == 40
    t = np.array([x.persona.traits.as_tuple() for x in qs if x.persona.name == "sampled"])
    assert (t.std(0) > 0.2).all()  # sampled profiles cover each trait
    assert len({(x.persona.traits, x.quality, x.delay_s) for x in qs}) == 60


@pytest.mark.parametrize("budget", [0, -5])
def test_a_non_positive_budget_is_refused(budget):
    with pytest.raises(ValueError, match="positive number of judge queries"):
        query_design(budget, PRESETS, Q_RANGE, D_RANGE)


def test_the_cache_resumes_and_asks_only_what_is_missing(tmp_path):
    cache = tmp_path / "queries.json"
    qs = query_design(40, PRESETS, Q_RANGE, D_RANGE)
    crashing = FakeJudge(crash_after=16)  # answers two batches of 8, then the endpoint dies
    first = ask(crashing, qs[:30], cache, log=lambda m: None)
    assert len(crashing.asked) == 16 and first.answered == 16 and first.failed == 14
    j = FakeJudge()
    again = ask(j, qs, cache, log=lambda m: None)  # a larger budget after the crash
    assert len(j.asked) == 24 and again.cached == 16 and again.asked == 24 and again.answered == 40
    asked = {(p.traits, q, d) for p, q, d in j.asked}
    assert asked == {(x.persona.traits, x.quality, x.delay_s) for x in qs[16:]}
    j2 = FakeJudge()
    assert ask(j2, qs, cache, log=lambda m: None).answered == 40 and j2.asked == []
    other = FakeJudge()  # another judge model does not read this one's answers
    other.model = "counting-v2"
    ask(other, qs[:8], cache, log=lambda m: None)
    assert len(other.asked) == 8


def test_two_runs_sharing_a_cache_keep_each_others_answers(tmp_path, monkeypatch):
    cache = tmp_path / "queries.json"
    qs = query_design(16, PRESETS, Q_RANGE, D_RANGE)
    a, b = FakeJudge(), FakeJudge()
    b.model = "counting-v2"
    real_read = judged._read_cache
    # run b read the cache before run a wrote its answers (two processes at once)
    monkeypatch.setattr(judged, "_read_cache", lambda path, log: {})
    ask(a, qs, cache, log=lambda m: None)
    ask(b, qs, cache, log=lambda m: None)
    monkeypatch.setattr(judged, "_read_cache", real_read)
    a2, b2 = FakeJudge(), FakeJudge()
    b2.model = "counting-v2"
    assert ask(a2, qs, cache, log=lambda m: None).cached == 16 and a2.asked == []
    assert ask(b2, qs, cache, log=lambda m: None).cached == 16 and b2.asked == []


def test_garbled_and_missing_answers_are_counted_not_fatal(tmp_path):
    class Garbage:
        score, status, extras = "seven", "ok", {}

    class OutOfRange:
        score, status, extras = 42, "ok", {}

    bad = {0: None, 1: Rating(None, "no JSON", "invalid", "fake", "counting-v1"), 2: Garbage(), 3: OutOfRange(),
           4: Rating(None, "down", "unavailable", "fake", "counting-v1")}
    j = FakeJudge(fail=bad)
    logs: list[str] = []
    model = fit_reward_model(j, 48, tmp_path / "q.json", presets=PRESETS, log=logs.append)
    assert model.info["answered"] == 43 and model.info["failed"] == 5
    assert model.info["statuses"] == {"ok": 43, "garbled": 3, "invalid": 1, "unanswered": 1}
    assert any("43 of 48 queries answered" in m for m in logs)
    j2 = FakeJudge()  # the rerun asks again only the transient failure (unavailable), not the garbled ones
    fit_reward_model(j2, 48, tmp_path / "q.json", presets=PRESETS, log=lambda m: None)
    assert len(j2.asked) == 1


def test_too_few_answers_is_an_error_that_says_so(tmp_path):
    j = FakeJudge(fail={i: Rating(None, "no JSON", "invalid", "fake", "counting-v1") for i in range(12)})
    with pytest.raises(RuntimeError, match="only 8 of 20 queries got a valid answer"):
        fit_reward_model(j, 20, tmp_path / "q.json", presets=PRESETS, log=lambda m: None)


def test_the_trait_judge_through_the_pipeline_gives_back_the_trait_judge(tmp_path):
    model = fit_reward_model(TraitJudge(), 160, tmp_path / "q.json", presets=PRESETS, log=lambda m: None)
    assert model.judge == "trait/parametric-v1" and model.info["target"] == "expected"
    assert model.info["expected_scores"] == 160  # the trait judge's continuous QoE, not its rounded score
    h = model.figures["holdout"]
    assert h["spearman"] > 0.85 and h["mae"] < 0.5 * h["mae_constant"]
    rng = np.random.default_rng(0)
    t, q, d = rng.uniform(0, 1, (300, 5)), rng.uniform(0.9, 1.0, 300), np.exp(rng.uniform(0, np.log(30), 300))
    assert np.corrcoef(model.qoe(t, q, d), trait_qoe(t, q, d))[0, 1] > 0.85
    assert judged.judge_label("trait", model) == "trait:trait/parametric-v1 via reward model (160 queries)"


def test_an_old_table_cache_is_read_not_crashed_on(tmp_path):
    qs = query_design(8, PRESETS, Q_RANGE, D_RANGE)
    j = FakeJudge()
    keys = [judged.cache_key("fake/counting-v1", x.persona, x.quality, x.delay_s) for x in qs]
    (tmp_path / "q.json").write_text(json.dumps({keys[0]: 7, keys[1]: None, keys[2]: "??"}))
    got = ask(j, qs, tmp_path / "q.json", log=lambda m: None)
    assert len(j.asked) == 5 and got.answers[0]["score"] == 7.0 and got.failed == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert ask(FakeJudge(), qs, tmp_path / "bad.json", log=lambda m: None).answered == 8


def test_the_fit_profiles_the_model_against_the_trait_judge(tmp_path):
    class Flat(FakeJudge):  # a judge that says 7 whatever it is asked: its reward model must look constant
        def rate(self, persona, delivery):
            self.asked.append((persona, delivery.quality, delivery.delay_s))
            return Rating(7, "fine", "ok", self.backend, self.model)

    logs: list[str] = []
    prof = fit_reward_model(Flat(), 40, tmp_path / "q.json", presets=PRESETS, log=logs.append).info["profile"]
    assert prof["std"] < 1e-6 and prof["reference_std"] > 0.5 and prof["users"] > 100
    assert prof["changes"]["delay 1 -> 30"]["reward_model"] == 0.0 and prof["changes"]["delay 1 -> 30"]["trait_judge"] < -1
    assert any("QoE sd 0.00" in m for m in logs)
    real = fit_reward_model(TraitJudge(), 144, tmp_path / "q.json", presets=PRESETS, log=lambda m: None)
    assert real.info["profile"]["spearman_vs_reference"] > 0.8
