"""Choosing the grouping threshold (``python -m rlli calibrate --grouping``): pairwise precision, recall and F1
of :func:`rlli.grouping.group_by_similarity` per threshold and linkage on labelled prompt sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlli.config import ASSETS
from rlli.grouping import LINKAGES, Group, group_by_similarity
from rlli.text import cosine_matrix, embed

LABELLED = ASSETS / "bench" / "grouping_labelled.json"

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
