"""Prompts -> groups that share denoising steps, each with an anchor (its medoid).

Groups come from agglomerative clustering of the prompts' cosine similarities (MiniLM embeddings,
:mod:`rlli.text`) cut at a threshold (``linkage``: "complete" by default - every pair in a group is at least
``threshold`` similar; "average" asks that only on average). A group is a *topic*:
each member then forks from its anchor at its own step, decided by the backbone
(:mod:`rlli.policy.sharing`), so a loose group costs no quality. The threshold and linkage are
chosen for meaning on a labelled prompt set (:func:`rlli.calibration.grouping.threshold_sweep`, ``python -m rlli calibrate
--grouping``). The anchor is the member with the largest total similarity to the others (ties: the
earliest). Deterministic: the same prompts in the same order give the same groups. Groups are
ordered by their first member; members keep input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from rlli.text import cosine_matrix, embed

LINKAGES = ("average", "complete", "single")
DEFAULT_LINKAGE = "complete"


@dataclass(frozen=True)
class Group:
    members: tuple[int, ...]  # indices into the prompts
    anchor: int
    similarity: tuple[float, ...]  # each member's cosine similarity to the anchor

    @property
    def min_similarity(self) -> float:
        return min(self.similarity)


def group_by_similarity(sim: np.ndarray, threshold: float, linkage_method: str = DEFAULT_LINKAGE) -> list[Group]:
    if linkage_method not in LINKAGES:
        raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, not {linkage_method!r}")
    n = sim.shape[0]
    if n == 0:
        return []
    if n == 1:
        labels = np.array([1])
    else:
        dist = np.clip(1.0 - sim, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        dist = (dist + dist.T) / 2
        tree = linkage(squareform(dist, checks=False), method=linkage_method)
        labels = fcluster(tree, t=1.0 - threshold + 1e-9, criterion="distance")
    groups, seen = [], {}
    for i, lab in enumerate(labels):
        seen.setdefault(lab, []).append(i)
    for members in sorted(seen.values(), key=lambda m: m[0]):
        sub = sim[np.ix_(members, members)]
        anchor = members[int(np.argmax(sub.sum(axis=1)))]
        groups.append(Group(tuple(members), anchor, tuple(float(sim[anchor, m]) for m in members)))
    return groups


def group_prompts(prompts: list[str], threshold: float, text_model: str = "",
                  linkage_method: str = DEFAULT_LINKAGE) -> list[Group]:
    """Group prompts whose meanings are at least ``threshold`` cosine-similar (see the module)."""
    if not prompts:
        return []
    return group_by_similarity(cosine_matrix(embed(list(prompts), text_model)), threshold, linkage_method)


def groups_to_json(prompts: list[str], groups: list[Group]) -> list[dict]:
    return [{"anchor": prompts[g.anchor], "members": [prompts[m] for m in g.members],
             "similarity": [round(s, 4) for s in g.similarity]} for g in groups]
