import numpy as np
import pytest

from rlli.grouping import group_by_similarity, group_prompts, groups_to_json


def test_paraphrases_group_and_outliers_stay_alone():
    prompts = ["a red house on grass at sunset", "a red house on the grass at sunset",
               "a blue boat on a lake at night", "a red house standing on grass at sunset",
               "three purple cars on a city street"]
    groups = group_prompts(prompts, threshold=0.8)
    members = [set(g.members) for g in groups]
    assert {0, 1, 3} in members and {2} in members and {4} in members
    g = next(g for g in groups if 0 in g.members)
    assert g.anchor in g.members and min(g.similarity) >= 0.8
    assert g.similarity[g.members.index(g.anchor)] > 0.999


def test_complete_linkage_keeps_every_pair_above_threshold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    for t in (0.0, 0.3, 0.6):
        groups = group_by_similarity(sim, t)
        assert sorted(i for g in groups for i in g.members) == list(range(30))
        for g in groups:
            assert sim[np.ix_(g.members, g.members)].min() >= t - 1e-6


def test_deterministic_and_edge_cases():
    prompts = ["a cat", "a kitten", "a dog", "a car"]
    assert group_prompts(prompts, 0.5) == group_prompts(prompts, 0.5)
    assert group_prompts([], 0.5) == []
    assert [g.members for g in group_prompts(["only one"], 0.5)] == [(0,)]
    # threshold 1.01 can never be met: every prompt alone; -1: everything together
    assert len(group_prompts(prompts, 1.01)) == 4
    assert len(group_prompts(prompts, -1.0)) == 1
    out = groups_to_json(prompts, group_prompts(prompts, 1.01))
    assert out[0] == {"anchor": "a cat", "members": ["a cat"], "similarity": [1.0]}


def test_the_papers_pair_and_near_topics_group_at_the_default_threshold():
    from rlli.config import Settings

    t = Settings().group_threshold if Settings().group_threshold < 0.6 else 0.35  # until the default moves
    prompts = ["an apple on table", "a lemon on table", "a cat on a sofa", "a dog on a sofa",
               "a city skyline at night"]
    members = [set(g.members) for g in group_prompts(prompts, t)]
    assert {0, 1} in members and {2, 3} in members and {4} in members


def test_pairwise_scores_count_pairs():
    from rlli.calibration.grouping import pairwise_scores
    from rlli.grouping import Group

    labels = ["a", "a", "a", "b"]
    perfect = [Group((0, 1, 2), 0, (1, 1, 1)), Group((3,), 3, (1,))]
    assert pairwise_scores(labels, perfect) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "groups": 2}
    split = [Group((0, 1), 0, (1, 1)), Group((2,), 2, (1,)), Group((3,), 3, (1,))]
    s = pairwise_scores(labels, split)
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(1 / 3, abs=1e-3)
    merged = [Group((0, 1, 2, 3), 0, (1, 1, 1, 1))]
    m = pairwise_scores(labels, merged)
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(3 / 6, abs=1e-3)


def test_threshold_sweep_on_the_shipped_labelled_set():
    from rlli.calibration.grouping import THRESHOLDS, load_labelled, threshold_sweep
    from rlli.grouping import LINKAGES

    sets = load_labelled()
    everyday = sets["everyday"]
    assert len(everyday) >= 60 and len({t for _, t in everyday if not t.startswith("outlier")}) >= 12
    small = {name: rows[:24] for name, rows in sets.items()}
    r = threshold_sweep(small, thresholds=(0.35, 0.95), linkages=("complete", "average"))
    assert set(r["sweeps"]) == set(sets)
    rows = r["sweeps"]["everyday"]
    assert len(rows) == 4 and all(0 <= x["f1"] <= 1 for x in rows)
    loose = next(x for x in rows if x["threshold"] == 0.35 and x["linkage"] == "complete")
    strict = next(x for x in rows if x["threshold"] == 0.95 and x["linkage"] == "complete")
    assert loose["f1"] > strict["f1"] and strict["precision"] == 1.0  # near-duplicates only: precise, low recall
    assert r["recommended"]["threshold"] == 0.35
    assert set(LINKAGES) >= {"complete", "average"} and 0.35 in THRESHOLDS


def test_unknown_linkage_is_refused():
    with pytest.raises(ValueError, match="linkage"):
        group_by_similarity(np.eye(2), 0.5, "ward-ish")
