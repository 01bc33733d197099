import numpy as np

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
