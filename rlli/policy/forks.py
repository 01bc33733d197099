"""Where the policies read predicted quality: ONE place for training rounds and live rounds.

Live rounds take the sharing issue's :class:`~rlli.policy.sharing.MemberFork` list as it is (each
member's quality curve and its cap ``max_shared_steps``). Training rounds are sampled; their
quality curves come from :func:`training_curves`, today the per-variant-kind curves measured by
``python -m rlli calibrate`` (assets/calibration.json ``by_variant_kind``). When a fork rule with
per-bin curves ships, switch the one line in :func:`training_curves`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.network.state import kind_curves

try:  # the sharing issue's decision type (rlli/policy/sharing.py)
    from rlli.policy.sharing import MemberFork
except ImportError:  # pragma: no cover - the same fields, while that module cannot import

    @dataclass(frozen=True)
    class MemberFork:  # type: ignore[no-redef]
        request_index: int
        group: int
        is_anchor: bool
        max_shared_steps: int
        quality: tuple[float, ...]
        evidence: dict


def training_curves(calibration: str | Path, steps: int) -> dict[str, np.ndarray]:
    """Quality curves (s = 0..N) that training rounds draw their members' predictions from."""
    return kind_curves(calibration, steps)


def check_forks(forks: list, steps: int) -> None:
    """Raise ValueError unless the forks describe one round with N = ``steps``: unique request indices
    0..K-1, one anchor per group, caps within 0..N, quality curves of N + 1 values in [0, 1]."""
    if not forks:
        raise ValueError("a round needs at least one request")
    idx = sorted(f.request_index for f in forks)
    if idx != list(range(len(forks))):
        raise ValueError(f"request indices must be 0..{len(forks) - 1} once each, got {idx}")
    anchors: dict[int, int] = {}
    for f in forks:
        if not 0 <= int(f.max_shared_steps) <= steps:
            raise ValueError(f"request {f.request_index}: max_shared_steps {f.max_shared_steps} outside 0..{steps}")
        q = np.asarray(f.quality, dtype=float)
        if q.shape != (steps + 1,) or not np.all(np.isfinite(q)) or q.min() < 0 or q.max() > 1 + 1e-9:
            raise ValueError(f"request {f.request_index}: quality needs {steps + 1} values in [0, 1]")
        anchors[f.group] = anchors.get(f.group, 0) + int(bool(f.is_anchor))
    bad = [g for g, n in anchors.items() if n != 1]
    if bad:
        raise ValueError(f"groups {bad} need exactly one anchor each")


def forks_from_calibration(groups, steps: int, calibration: str | Path) -> list:
    """Stand-in fork decisions from the similarity quality table (assets/calibration.json), for rounds
    without a fork rule and for tests: a member's curve is q(similarity to its anchor, s / N) and it
    may share up to N steps (the policy weighs the drop); an anchor shares with its last member."""
    from rlli.policy.quality_table import QualityTable

    table = QualityTable.load(calibration)
    forks = []
    for gi, g in enumerate(groups):
        for k, sim in zip(g.members, g.similarity):
            if k == g.anchor or len(g.members) == 1:
                forks.append(MemberFork(k, gi, k == g.anchor, steps, (1.0,) * (steps + 1), {"reason": "anchor"}))
                continue
            q = [1.0] + [min(1.0, table.quality_at(float(sim), s / steps)) for s in range(1, steps + 1)]
            q = np.minimum.accumulate(np.asarray(q)).tolist()
            forks.append(MemberFork(k, gi, False, steps, tuple(q), {"similarity": round(float(sim), 4),
                                                                     "source": "calibration table"}))
    return sorted(forks, key=lambda f: f.request_index)
