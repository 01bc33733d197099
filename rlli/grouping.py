"""Prompts -> groups that share denoising steps, each with an anchor (its medoid).

Groups come from agglomerative clustering of the prompts' cosine similarities (MiniLM embeddings,
:mod:`rlli.text`) cut at a threshold (``linkage``: "complete" by default - every pair in a group is at least
``threshold`` similar; "average" asks that only on average). A group is a *topic*:
each member then forks from its anchor at its own step, decided by the backbone
(:mod:`rlli.policy.sharing`), so a loose group costs no quality. The threshold and linkage are
chosen for meaning on a labelled prompt set (:func:`threshold_sweep`, ``python -m rlli calibrate
--grouping``). The anchor is the member with the largest total similarity to the others (ties: the
earliest). Deterministic: the same prompts in the same order give the same groups. Groups are
ordered by their first member; members keep input order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from rlli.text import cosine_matrix, embed

LINKAGES = ("average", "complete", "single")
DEFAULT_LINKAGE = "complete"
LABELLED = Path(__file__).resolve().parent.parent / "assets" / "bench" / "grouping_labelled.json"


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


# ----------------------------------------------------------------------------- choosing the threshold

THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95


def pairwise_scores(labels: list[str], groups: list[Group]) -> dict:
    """Pairwise precision, recall and F1 of a grouping against labels (pairs in the same group vs same label)."""
    n = len(labels)
    found = np.zeros((n, n), bool)
    for g in groups:
        found[np.ix_(g.members, g.members)] = True
    lab = np.array(labels)
    truth = lab[:, None] == lab[None, :]
    upper = np.triu(np.ones((n, n), bool), 1)
    tp = int((found & truth & upper).sum())
    fp = int((found & ~truth & upper).sum())
    fn = int((~found & truth & upper).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "groups": len(groups)}


def load_labelled(path: str | Path = LABELLED) -> dict[str, list[tuple[str, str]]]:
    """Labelled prompt sets: {set name: [(prompt, topic label), ...]} (labels: same topic = should group)."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    return {name: [(row["prompt"], row["topic"]) for row in rows] for name, rows in d["sets"].items()}


def threshold_sweep(sets: dict[str, list[tuple[str, str]]], text_model: str = "",
                    thresholds: tuple[float, ...] = THRESHOLDS, linkages: tuple[str, ...] = LINKAGES) -> dict:
    """Pairwise P/R/F1 per set, threshold and linkage; recommended = the best mean F1 over the sets
    (ties: the higher threshold, then the linkage listed first)."""
    sims = {name: cosine_matrix(embed([p for p, _ in rows], text_model)) for name, rows in sets.items()}
    sweeps: dict[str, list[dict]] = {name: [] for name in sets}
    means = []
    for link in linkages:
        for t in thresholds:
            f1s = []
            for name, rows in sets.items():
                row = {"linkage": link, "threshold": t,
                       **pairwise_scores([lab for _, lab in rows], group_by_similarity(sims[name], t, link))}
                sweeps[name].append(row)
                f1s.append(row["f1"])
            means.append({"linkage": link, "threshold": t, "mean_f1": round(float(np.mean(f1s)), 4)})
    best = max(means, key=lambda m: (m["mean_f1"], m["threshold"], -linkages.index(m["linkage"])))
    return {"sets": {name: {"prompts": len(rows), "topics": len({lab for _, lab in rows})} for name, rows in sets.items()},
            "sweeps": sweeps, "mean_f1": means, "recommended": best}
