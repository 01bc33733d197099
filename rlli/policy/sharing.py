"""The sharing plan: at which step each member of a group forks from its anchor's trajectory.

This is an allocation decision, so it lives with the policy code. It reads what the backbone itself
predicts, never the prompts' words:

1. :func:`decide_forks` probes each group once (:mod:`rlli.diffusion.fork_probe`): after one shared
   step, every member's predicted clean image on the anchor's latent is compared with the anchor's
   (98th-percentile absolute difference, the *x0 disagreement*).
2. A :class:`ForkRule`, calibrated on generation runs (``python -m rlli calibrate``; shipped in
   ``assets/fork/``), maps that evidence to each member's predicted relative quality and rate of
   broken attributes for every possible number of shared steps, and so to the most steps the member
   may share (:attr:`MemberFork.max_shared_steps`).
3. :func:`member_plan` turns the decisions (and, optionally, a policy's own choice ``s_k <= max``)
   into the engine's per-member :class:`~rlli.diffusion.engine.GroupPlan` list.

A rule measured with another backbone, scheduler, step count, guidance scale or text model is not
used: :func:`load_fork_rule` returns no rule and a notice, and nothing is shared.

The round itself (group -> decide -> allocate -> plan -> run -> score) is one function,
:func:`rlli.service.run_round`; this module only decides.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlli.config import ASSETS, Settings, SettingsError
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request
from rlli.diffusion.fork_probe import ProbeGroup, x0_disagreement
from rlli.grouping import Group

DEFAULT_RULE = ASSETS / "fork" / "rule.json"
RULE_KIND = "rlli fork rule"
DEFAULT_BREAK_BUDGET = 0.02  # largest predicted share of members with an attribute broken by sharing


@dataclass(frozen=True)
class MemberFork:
    """The fork decision for one request of a round."""

    request_index: int  # index into the round's prompts
    group: int  # group index
    is_anchor: bool
    max_shared_steps: int  # the most steps this member may share, per the fork decision (0..N)
    quality: tuple[float, ...]  # predicted relative quality if it shares s steps, s = 0..N; non-increasing, [0] == 1
    evidence: dict  # what the decision read (x0 disagreement, similarity, ...), JSON-able


@dataclass(frozen=True)
class ForkDecision:
    """Every request's :class:`MemberFork`, and what deciding cost (denoiser passes, seconds)."""

    forks: list[MemberFork]
    passes: int
    wall_s: float


# ----------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class ForkRule:
    """Evidence bins -> predicted relative quality and broken-attribute rate for each shared-step count.

    ``edges`` are the bins' lower edges on the evidence (x0 disagreement), ascending, the first 0;
    ``quality[b][s]`` and ``broken[b][s]`` hold, for s = 0..steps, the relative quality and the share
    of members with a stated attribute broken, measured on the calibration pairs in bin b (made
    monotone: worse with more shared steps and with more disagreement).
    """

    steps: int
    probe_step: int
    quantile: float
    edges: tuple[float, ...]
    quality: tuple[tuple[float, ...], ...]
    broken: tuple[tuple[float, ...], ...]
    measured_with: dict
    meta: dict = field(default_factory=dict, compare=False)
    tolerance: float | None = None  # the calibrated operating point (None: the caller's)
    break_budget: float | None = None

    def bin_of(self, evidence: float) -> int:
        if not math.isfinite(evidence):
            return len(self.edges) - 1
        return int(np.clip(np.searchsorted(self.edges, evidence, side="right") - 1, 0, len(self.edges) - 1))

    def quality_curve(self, evidence: float) -> tuple[float, ...]:
        return self.quality[self.bin_of(evidence)]

    def broken_curve(self, evidence: float) -> tuple[float, ...]:
        return self.broken[self.bin_of(evidence)]

    def max_steps(self, evidence: float, tolerance: float, break_budget: float = DEFAULT_BREAK_BUDGET) -> int:
        """Most shared steps whose bin's predicted quality (and every fewer steps') stays within ``tolerance``
        and whose predicted broken-attribute rate stays within ``break_budget``."""
        q, b = self.quality_curve(evidence), self.broken_curve(evidence)
        best = 0
        for s in range(1, self.steps + 1):
            if q[s] < 1.0 - tolerance - 1e-9 or b[s] > break_budget + 1e-9:
                break
            best = s
        return best

    @classmethod
    def from_dict(cls, d: dict) -> ForkRule:
        steps = int(d["steps"])
        ev = d["evidence"]
        quality = tuple(tuple(float(v) for v in row) for row in d["quality"])
        broken = tuple(tuple(float(v) for v in row) for row in d["broken"])
        edges = tuple(float(e) for e in d["edges"])
        if not quality or len(quality) != len(edges) or len(broken) != len(edges):
            raise ValueError("one quality and one broken row per evidence bin")
        if any(len(r) != steps + 1 for r in (*quality, *broken)):
            raise ValueError(f"every row needs {steps + 1} values (s = 0..{steps})")
        if list(edges) != sorted(edges) or edges[0] != 0.0:
            raise ValueError("bin edges must ascend from 0")
        op = d.get("operating_point") or {}
        tol, budget = op.get("tolerance"), op.get("break_budget")
        return cls(steps, int(ev["probe_step"]), float(ev["quantile"]), edges, quality, broken,
                   dict(d["measured_with"]), d, None if tol is None else float(tol),
                   None if budget is None else float(budget))

    def operating(self, tolerance: float, budget: float) -> tuple[float, float]:
        """The tolerance and budget a decision uses: the calibrated operating point, never looser than asked."""
        return (tolerance if self.tolerance is None else min(tolerance, self.tolerance),
                budget if self.break_budget is None else self.break_budget)


def measured_with(backbone_name: str, plan: Plan, text_model: str) -> dict:
    """What a rule must match to be used: backbone, scheduler, steps, guidance scale and text model."""
    from rlli.text import text_model_id

    return {"backbone": backbone_name, "scheduler": plan.scheduler, "steps": plan.steps,
            "guidance_scale": float(plan.guidance_scale), "text_model": text_model_id(text_model)}


def rule_mismatch(rule: ForkRule, expected: dict) -> str | None:
    """A sentence naming what differs between the rule's measurement and this configuration, or None."""
    diffs = [f"{k} {rule.measured_with.get(k)!r} (now {v!r})" for k, v in expected.items()
             if rule.measured_with.get(k) != v]
    if not diffs:
        return None
    return "the fork rule was measured with " + ", ".join(diffs)


def load_fork_rule(path: str | Path, expected: dict | None = None) -> tuple[ForkRule | None, str | None]:
    """The rule at ``path`` and None, or no rule and a notice saying why nothing will be shared.

    A missing file or a rule measured with another configuration gives a notice; a file that is not a
    fork rule raises :class:`~rlli.config.SettingsError` naming the file (never a JSON or key error).
    """
    p = Path(path)
    if not p.exists():
        return None, (f"no fork rule ({p.name} not found): nothing is shared; run `python -m rlli calibrate` "
                      "for this backbone")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(d, dict) or d.get("kind") != RULE_KIND:
            raise ValueError(f"not a fork rule (kind {d.get('kind') if isinstance(d, dict) else None!r})")
        rule = ForkRule.from_dict(d)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise SettingsError(f"the fork rule file {p.name} is malformed ({type(e).__name__}: {str(e)[:120]}); "
                            "rebuild it with `python -m rlli calibrate` or point RLLI_FORK_RULE at a good one") from None
    if expected is not None:
        why = rule_mismatch(rule, expected)
        if why:
            return None, why + ": nothing is shared; run `python -m rlli calibrate` for this configuration"
    return rule, None


def fork_rule_path(settings: Settings) -> Path:
    """The configured fork rule file (``RLLI_FORK_RULE`` once the settings have it; else the shipped one)."""
    return Path(settings.fork_rule)


def break_budget(settings: Settings) -> float:
    return float(settings.share_break_budget)


# ----------------------------------------------------------------------------- deciding


def _no_share(k: int, gi: int, is_anchor: bool, steps: int, evidence: dict) -> MemberFork:
    if is_anchor:  # an anchor sharing with itself loses nothing
        return MemberFork(k, gi, True, steps, (1.0,) * (steps + 1), evidence)
    return MemberFork(k, gi, False, 0, (1.0,) + (0.0,) * steps, evidence)


def decide_forks(engine: Engine, requests: list[Request], groups: list[Group], plan: Plan, rule: ForkRule | None,
                 tolerance: float, budget: float = DEFAULT_BREAK_BUDGET,
                 notice: str | None = None) -> ForkDecision:
    """One :class:`MemberFork` per request (in request order), from the backbone's own predictions.

    Groups of one, and every group when ``rule`` is None, are not probed and share nothing (cost 0).
    Otherwise each group with two or more members costs ``c * probe_step + len(members)`` passes.
    """
    n = plan.steps
    forks: list[MemberFork | None] = [None] * len(requests)
    if rule is None or rule.steps != n:
        why = notice or "no fork rule for this configuration"
        for gi, g in enumerate(groups):
            for k in g.members:
                forks[k] = _no_share(k, gi, k == g.anchor, n, {"reason": why})
        return ForkDecision(forks, 0, 0.0)  # type: ignore[arg-type]
    tolerance, budget = rule.operating(tolerance, budget)
    probe = x0_disagreement(engine, requests, [ProbeGroup(g.members, g.anchor) for g in groups], plan,
                            probe_step=rule.probe_step, quantile=rule.quantile)
    for gi, g in enumerate(groups):
        for k, sim in zip(g.members, g.similarity):
            if len(g.members) == 1:
                forks[k] = _no_share(k, gi, True, n, {"reason": "alone in its group"})
                continue
            if k == g.anchor:
                forks[k] = _no_share(k, gi, True, n, {"reason": "the anchor"})
                continue
            d = probe.disagreement[k]
            ev = {"x0_disagreement": round(d, 4), "probe_step": rule.probe_step, "quantile": rule.quantile,
                  "evidence_bin": rule.bin_of(d), "similarity": round(float(sim), 4),
                  "predicted_broken_at_max": None}
            s_max = rule.max_steps(d, tolerance, budget)
            ev["predicted_broken_at_max"] = round(rule.broken_curve(d)[s_max], 4)
            forks[k] = MemberFork(k, gi, False, s_max, tuple(rule.quality_curve(d)), ev)
    return ForkDecision(forks, probe.passes, probe.wall_s)  # type: ignore[arg-type]


def member_plan(groups: list[Group], forks: list[MemberFork], choice: dict[int, int] | None = None) -> list[GroupPlan]:
    """The engine's per-member plan: member k shares ``choice[k]`` steps (default: its maximum).

    A choice above a member's ``max_shared_steps`` raises ValueError. The anchor forks where its last
    member does, so the prefix runs ``max_k s_k`` steps once.
    """
    choice = choice or {}
    out = []
    for g in groups:
        steps = {}
        for k in g.members:
            f = forks[k]
            if k == g.anchor:
                continue
            s = int(choice.get(k, f.max_shared_steps))
            if not 0 <= s <= f.max_shared_steps:
                raise ValueError(f"request {k} may share at most {f.max_shared_steps} steps, not {s}")
            steps[k] = s
        steps[g.anchor] = max(steps.values(), default=0)
        out.append(GroupPlan(members=g.members, anchor=g.anchor, member_steps=tuple(steps[k] for k in g.members)))
    return out


__all__ = ["MemberFork", "ForkDecision", "ForkRule", "decide_forks", "member_plan", "load_fork_rule", "measured_with",
           "rule_mismatch", "fork_rule_path", "break_budget", "DEFAULT_RULE", "RULE_KIND", "DEFAULT_BREAK_BUDGET"]
