"""Where the policies read predicted quality: ONE source, the shipped fork rule.

Live rounds take the sharing issue's :class:`~rlli.policy.sharing.MemberFork` list as it is (each
member's quality curve from the rule's evidence bin and its cap ``max_shared_steps``). Sampled rounds
(training, the environments, evaluation) draw each member's bin from :func:`training_curves`: the same
rule (``assets/fork/rule.json``, ``RLLI_FORK_RULE``), its per-bin quality curves and the caps the fork
decision gives at the rule's operating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.network.state import MemberCurves

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


def training_curves(steps: int, rule: str | Path | None = None, weights=None) -> MemberCurves:
    """Quality curves (s = 0..N) and caps that sampled rounds draw their members from: the fork rule's bins
    (default the configured rule, ``RLLI_FORK_RULE``, else ``assets/fork/rule.json``), at the rule's operating
    point. ``weights``: how often each bin occurs (default: equally often, as the bins are quantiles of the
    calibration pairs' evidence)."""
    from rlli.policy.sharing import DEFAULT_RULE

    if rule is None:
        try:
            from rlli.config import Settings

            rule = Path(Settings().fork_rule)
        except (ValueError, OSError):  # settings that do not load must not stop training: the shipped rule
            rule = DEFAULT_RULE
    return MemberCurves.load(rule, steps, weights=weights)


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


def forks_from_rule(groups, steps: int, evidence: dict[int, float], rule: str | Path | None = None) -> list:
    """Fork decisions for a round from given x0 disagreements (request index -> evidence) through the fork rule,
    as :func:`rlli.policy.sharing.decide_forks` makes them after its probe: for tests and sampled live-like
    rounds without running the backbone. Anchors and members of groups of one share with nobody."""
    from rlli.policy.sharing import DEFAULT_RULE, load_fork_rule

    fr, why = load_fork_rule(rule or DEFAULT_RULE)
    if fr is None:
        raise FileNotFoundError(why)
    if fr.steps != steps:
        raise ValueError(f"the fork rule is for N = {fr.steps}, not {steps}")
    tol, budget = fr.operating(1.0, 1.0)
    forks = []
    for gi, g in enumerate(groups):
        for k in g.members:
            if k == g.anchor or len(g.members) == 1:
                forks.append(MemberFork(k, gi, True, steps, (1.0,) * (steps + 1), {"reason": "anchor"}))
                continue
            d = float(evidence[k])
            forks.append(MemberFork(k, gi, False, fr.max_steps(d, tol, budget), tuple(fr.quality_curve(d)),
                                    {"x0_disagreement": d, "evidence_bin": fr.bin_of(d), "source": "fork rule"}))
    return sorted(forks, key=lambda f: f.request_index)
