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
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, Start, TreePlan
from rlli.diffusion.fork_probe import ProbeGroup, x0_disagreement
from rlli.diffusion.trunks import KeptTrunk, TrunkCache, trunk_key
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
    # the split tree (decide_forks(..., split_tree=True)): whose branch this member leaves at max_shared_steps
    # (None: the group's anchor, or nobody when it shares nothing), and the tree's depth for its group
    parent: int | None = None
    tree_depth: int = 1


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
    # the held-out guarantee (rlli.calibration.guarantee): its bins' lower edges and each bin's most shared steps
    # with a one-sided 95% Clopper-Pearson bound on the broken rate within the budget; a cap only when enforced
    guarantee_edges: tuple[float, ...] = ()
    guarantee_steps: tuple[int, ...] = ()
    guarantee_enforced: bool = False

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
        cap = self.guaranteed_steps(evidence) if self.guarantee_enforced else self.steps
        for s in range(1, cap + 1):
            if q[s] < 1.0 - tolerance - 1e-9 or b[s] > break_budget + 1e-9:
                break
            best = s
        return best

    def guaranteed_steps(self, evidence: float) -> int:
        """The held-out guarantee's most shared steps for this evidence (0 without a guarantee section)."""
        if not self.guarantee_edges:
            return 0
        if not math.isfinite(evidence):
            return self.guarantee_steps[-1]
        i = int(np.clip(np.searchsorted(self.guarantee_edges, evidence, side="right") - 1, 0,
                        len(self.guarantee_edges) - 1))
        return self.guarantee_steps[i]

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
        g = d.get("guarantee") or {}
        g_edges = tuple(float(e) for e in g.get("edges", ()))
        g_steps = tuple(int(r["max_steps"]) for r in g.get("bins", ()))
        if len(g_edges) != len(g_steps) or any(not 0 <= x <= steps for x in g_steps):
            raise ValueError("the guarantee needs one bin (max_steps in 0..steps) per edge")
        return cls(steps, int(ev["probe_step"]), float(ev["quantile"]), edges, quality, broken,
                   dict(d["measured_with"]), d, None if tol is None else float(tol),
                   None if budget is None else float(budget), g_edges, g_steps, bool(g.get("enforced", False)))

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
                 notice: str | None = None, split_tree: bool = False) -> ForkDecision:
    """One :class:`MemberFork` per request (in request order), from the backbone's own predictions.

    Groups of one, and every group when ``rule`` is None, are not probed and share nothing (cost 0).
    Otherwise each group with two or more members costs ``c * probe_step + len(members)`` passes.
    With ``split_tree`` the same probe's pairwise x0 disagreements also decide sub-trunks
    (:func:`plan_split_tree`): a member's ``parent`` is then the request whose branch it leaves at
    ``max_shared_steps``; use :func:`tree_plan` (not :func:`member_plan`) to build the engine's plan.
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
        parents: dict[int, int | None] = {k: g.anchor for k in g.members}
        deps: dict[int, int] = {}
        depth = 1
        if split_tree and len(g.members) > 2:
            parents, deps = plan_split_tree(g.members, g.anchor,
                                            lambda i, j: rule.max_steps(probe.between(i, j), tolerance, budget))
            depth = TreePlan(g.members, g.anchor, tuple(parents[k] for k in g.members),
                             tuple(deps[k] for k in g.members)).depth
        for k, sim in zip(g.members, g.similarity):
            if len(g.members) == 1:
                forks[k] = _no_share(k, gi, True, n, {"reason": "alone in its group"})
                continue
            if k == g.anchor:
                forks[k] = _no_share(k, gi, True, n, {"reason": "the anchor"})
                continue
            p = parents[k] if parents[k] is not None else g.anchor
            d = probe.disagreement[k] if p == g.anchor else probe.between(k, p)
            ev = {"x0_disagreement": round(probe.disagreement[k], 4), "probe_step": rule.probe_step,
                  "quantile": rule.quantile, "evidence_bin": rule.bin_of(d), "similarity": round(float(sim), 4),
                  "predicted_broken_at_max": None}
            s_max = deps[k] if k in deps else rule.max_steps(d, tolerance, budget)
            if p != g.anchor:
                ev.update(parent=p, x0_disagreement_parent=round(d, 4))
            ev["predicted_broken_at_max"] = round(rule.broken_curve(d)[s_max], 4)
            forks[k] = MemberFork(k, gi, False, s_max, tuple(rule.quality_curve(d)), ev,
                                  parent=None if s_max == 0 or p == g.anchor else p, tree_depth=depth)
    return ForkDecision(forks, probe.passes, probe.wall_s)  # type: ignore[arg-type]


def _tree(members, anchor, parents: dict, deps: dict) -> TreePlan:
    return TreePlan(tuple(members), anchor, tuple(parents[k] for k in members), tuple(deps[k] for k in members))


def _violations(tree: TreePlan, limit) -> list[tuple[int, int]]:
    """(node, allowed step) for each segment some member rides past its limit with that segment's prompt: the node
    that ends the segment (the next branch on the member's path) must leave by the allowed step."""
    out = []
    for k in tree.members:
        path = tree.path(k)
        for (x, _, end), (nxt, _, _) in zip(path, path[1:]):
            if x != k and end > limit(k, x):
                out.append((nxt, limit(k, x)))
    return out


def plan_split_tree(members: tuple[int, ...], anchor: int, limit, max_moves: int | None = None
                    ) -> tuple[dict[int, int | None], dict[int, int]]:
    """A split tree for one group: ``parents`` and departure steps per member.

    Starts from the per-member fork (every member leaves the anchor's branch at ``limit(k, anchor)``), then moves
    members, one at a time and the best move first, onto another member's branch (a sub-trunk) when that saves
    steps in all. ``limit(i, j)`` is the most steps i may share with j's prompt (the fork rule read on the probe's
    pairwise x0 disagreement). A tree is admissible when every member, on every segment of its path driven by
    another request's prompt, leaves that segment no later than its limit with that prompt; a move that
    breaks this for anyone shortens the departures that end the offending segments (never lengthens any).
    """
    parents: dict[int, int | None] = {k: None for k in members}
    deps: dict[int, int] = {k: 0 for k in members}
    for k in members:
        if k != anchor:
            s = int(limit(k, anchor))
            if s > 0:
                parents[k], deps[k] = anchor, s

    def repaired(par, dep):
        for _ in range(4 * len(members) + 4):
            bad = _violations(_tree(members, anchor, par, dep), limit)
            if not bad:
                return par, dep
            for node, allowed in bad:
                if dep[node] > allowed:
                    dep[node] = allowed
                    if allowed == 0:
                        par[node] = None
        return None

    def descendants(k, par):
        out, todo = set(), [k]
        while todo:
            x = todo.pop()
            for y in members:
                if par[y] == x and y not in out:
                    out.add(y)
                    todo.append(y)
        return out

    for _ in range(max_moves if max_moves is not None else 2 * len(members)):
        total = sum(deps.values())
        best = None
        for k in members:
            if k == anchor:
                continue
            below = descendants(k, parents)
            for c in members:
                if c in (k, parents[k]) or c in below:
                    continue
                s = int(limit(k, c))
                if s <= deps[c] or s <= deps[k]:  # c's branch must exist, and k must gain
                    continue
                par, dep = dict(parents), dict(deps)
                par[k], dep[k] = c, s
                fixed = repaired(par, dep)
                if fixed is None:
                    continue
                gain = sum(fixed[1].values()) - total
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, fixed)
        if best is None:
            break
        parents, deps = best[1]
    return parents, deps


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


def tree_plan(groups: list[Group], forks: list[MemberFork], choice: dict[int, int] | None = None,
              hits: dict[int, KeptTrunkHit] | None = None) -> list[TreePlan]:
    """The engine's split-tree plan: member k leaves its parent's path (``forks[k].parent``, else its anchor) at
    ``choice[k]`` steps (default its maximum). A choice above a member's ``max_shared_steps`` raises ValueError;
    any smaller choice stays admissible (shortening a departure never lengthens anyone's shared segment).
    With one-level forks (no parents) this is exactly :func:`member_plan`'s plan. A request in ``hits`` (from
    :func:`kept_trunk_starts`) starts at the largest kept step within its choice (see :func:`starts_for`)."""
    choice, hits = choice or {}, hits or {}
    out = []
    for g in groups:
        parents, deps = [], []
        for k in g.members:
            f = forks[k]
            if k in hits:
                s = int(choice.get(k, f.max_shared_steps))
                if not 0 <= s <= f.max_shared_steps:
                    raise ValueError(f"request {k} may share at most {f.max_shared_steps} steps, not {s}")
                parents.append(None)
                deps.append(max((x for x in hits[k].trunk.steps() if x <= s), default=0))
                continue
            if k == g.anchor:
                parents.append(None)
                deps.append(0)
                continue
            s = int(choice.get(k, f.max_shared_steps))
            if not 0 <= s <= f.max_shared_steps:
                raise ValueError(f"request {k} may share at most {f.max_shared_steps} steps, not {s}")
            parents.append(None if s == 0 else (f.parent if f.parent is not None else g.anchor))
            deps.append(s)
        out.append(TreePlan(g.members, g.anchor, tuple(parents), tuple(deps)))
    return out


# ----------------------------------------------------------------------------- trunks kept across rounds


@dataclass(frozen=True)
class KeptTrunkHit:
    """A request that starts from a trunk kept from an earlier round."""

    request_index: int
    trunk: KeptTrunk
    step: int  # the most steps the probe allows, at a step the trunk kept
    evidence: float  # x0 disagreement between the request's and the trunk's prompts on the trunk's own latent
    age_s: float

    def origin(self) -> dict:
        return {"entry": self.trunk.entry, "prompt": self.trunk.prompt, "request_id": self.trunk.request_id,
                "seed": self.trunk.seed, "age_s": round(self.age_s, 3), "x0_disagreement": round(self.evidence, 4)}


def rule_id(rule: ForkRule | None) -> str:
    """What a kept trunk's key records of the fork rule: its measurement and operating point."""
    if rule is None:
        return "no rule"
    m = rule.measured_with
    return f"{m.get('date', '')}|{rule.probe_step}|{rule.quantile}|{rule.tolerance}|{rule.break_budget}|{len(rule.edges)}"


def cache_key(backbone_name: str, plan: Plan, rule: ForkRule | None, seed_policy: str = "request seed") -> tuple:
    return trunk_key(backbone_name, plan, seed_policy, rule_id(rule))


def kept_steps(rule: ForkRule, tolerance: float, budget: float) -> set[int]:
    """The steps worth keeping: every share the rule can allow (one per evidence bin), and the probe's step."""
    tolerance, budget = rule.operating(tolerance, budget)
    return {s for s in (rule.max_steps(e, tolerance, budget) for e in rule.edges) if s > 0} | {rule.probe_step}


def lonely_requests(groups: list[Group], forks: list[MemberFork]) -> list[int]:
    """Requests that share nothing this round and whose branch nobody leaves: the ones a kept trunk can start."""
    serving = {f.parent for f in forks if f.parent is not None and f.max_shared_steps > 0}
    serving |= {g.anchor for g in groups if any(k != g.anchor and forks[k].max_shared_steps > 0 and forks[k].parent is None
                                                for k in g.members)}
    return [f.request_index for f in forks if f.request_index not in serving
            and (f.max_shared_steps == 0 or f.is_anchor)]


def kept_trunk_starts(engine: Engine, requests: list[Request], groups: list[Group], forks: list[MemberFork],
                      plan: Plan, rule: ForkRule | None, tolerance: float, budget: float, cache: TrunkCache | None,
                      key: tuple, embeddings, min_similarity: float, limit: int = 2
                      ) -> tuple[list[MemberFork], dict[int, KeptTrunkHit], int]:
    """For every request that shares nothing this round, probe the closest kept trunks (by prompt embedding,
    at least ``min_similarity``) with the same x0 disagreement the fork rule was calibrated on - the request's
    and the trunk's prompt, both conditional, on the trunk's own latent after the probe step - and start it at
    the largest kept step the rule allows. Returns the forks (hits get ``max_shared_steps`` = that step and the
    evidence), the hits, and the probe's passes (2 conditional passes per probed trunk)."""
    import torch

    from rlli.diffusion.backbone import cond_rows
    from rlli.diffusion.fork_probe import _x0

    if cache is None or rule is None or rule.steps != plan.steps:
        return list(forks), {}, 0
    tolerance, budget = rule.operating(tolerance, budget)
    alone = lonely_requests(groups, forks)
    candidates = [(k, c) for k in alone for c in cache.candidates(key, embeddings[k], min_similarity, limit)]
    if not candidates:
        for _ in alone:
            cache.miss()
        return list(forks), {}, 0
    prompts = sorted({requests[k].prompt for k, _ in candidates} | {c.prompt for _, c in candidates})
    row = {p: i for i, p in enumerate(prompts)}
    cond, _ = engine.encode(prompts)
    xs, ts, rows, scheds = [], [], [], []
    for k, c in candidates:
        lat, sch = c.latents[c.probe_step]
        t = sch.timesteps[c.probe_step]
        x = sch.scale_model_input(lat, t).to(cond[next(iter(cond))].device)
        for p in (c.prompt, requests[k].prompt):
            xs.append(x)
            ts.append(torch.as_tensor(t))
            rows.append(row[p])
            scheds.append(sch)
    x = torch.cat(xs)
    t = torch.stack(ts).reshape(-1).to(x.device)
    with torch.no_grad():
        pred = engine.backbone.predict(x, t, cond_rows(cond, rows))
    passes = len(rows)
    cache.stats.probe_passes += passes
    x0 = [_x0(scheds[i], x[i:i + 1], pred[i:i + 1], t[i])[0] for i in range(len(rows))]
    best: dict[int, tuple[int, float, KeptTrunk]] = {}
    for j, (k, c) in enumerate(candidates):
        d = float(torch.quantile((x0[2 * j + 1] - x0[2 * j]).abs().flatten().float(), rule.quantile))
        allowed = rule.max_steps(d, tolerance, budget)
        step = max((s for s in c.steps() if s <= allowed), default=0)
        if step > 0 and (k not in best or step > best[k][0]):
            best[k] = (step, d, c)
    out, hits = list(forks), {}
    for k in alone:
        if k not in best:
            cache.miss()
            continue
        step, d, c = best[k]
        hits[k] = KeptTrunkHit(k, c, step, d, cache.hit(c))
        f = forks[k]
        out[k] = MemberFork(k, f.group, f.is_anchor, step, tuple(rule.quality_curve(d)),
                            {**f.evidence, "kept_trunk": hits[k].origin()}, parent=None, tree_depth=f.tree_depth)
    return out, hits, passes


def starts_for(trees: list[TreePlan], hits: dict[int, KeptTrunkHit]) -> dict[int, Start]:
    """The engine's starts for the hits that the plan still starts from a kept trunk (departure > 0)."""
    out = {}
    for t in trees:
        for k in t.members:
            d = t.departure_of(k)
            if k in hits and t.parent_of(k) is None and d > 0:
                h = hits[k]
                lat, sch = h.trunk.latents[d]
                out[k] = Start(lat, sch, d, h.trunk.seed, dict(h.origin(), step=d))
    return out


def trunks_to_keep(trees: list[TreePlan], starts: dict[int, Start], steps: set[int]) -> dict[int, set[int]]:
    """Roots that ran from their own noise: keep their latents at ``steps`` (run_tree's ``keep``)."""
    return {k: set(steps) for t in trees for k in t.members
            if t.parent_of(k) is None and t.departure_of(k) == 0 and k not in starts}


def record_trunks(cache: TrunkCache | None, key: tuple, requests: list[Request], keep: dict[int, set[int]], result,
                  embeddings, probe_step: int) -> int:
    """Put this round's kept latents into the cache; returns how many trunks were kept."""
    if cache is None:
        return 0
    n = 0
    for k, steps in keep.items():
        lat = {s: result.kept[(k, s)] for s in steps if (k, s) in result.kept}
        if probe_step in lat and cache.put(key, requests[k].prompt, embeddings[k], requests[k].seed,
                                           requests[k].request_id, probe_step, lat) is not None:
            n += 1
    return n


# ----------------------------------------------------------------------------- what the round function calls


@dataclass
class RoundSharing:
    """The fork decision of a round with split trees and kept trunks (:func:`decide_round`), for the allocation and
    then :func:`generate_round`. ``decision.forks`` already reflect kept-trunk hits; ``decision.passes`` counts the
    fork probe and the kept-trunk probe."""

    decision: ForkDecision
    hits: dict
    passes_cache_probe: int
    key: tuple
    embeddings: object  # per request, for the trunk cache (None without one)
    keep_steps: set


def decide_round(engine: Engine, requests: list[Request], groups: list[Group], plan: Plan, settings: Settings,
                 rule: ForkRule | None, notice: str | None = None, cache: TrunkCache | None = None,
                 split_tree: bool = True) -> RoundSharing:
    """The fork decision (split trees when ``split_tree``), then, for requests that share nothing, a kept trunk."""
    tol, budget = settings.quality_tolerance, break_budget(settings)
    decision = decide_forks(engine, requests, groups, plan, rule, tol, budget, notice, split_tree=split_tree)
    hits, cache_passes, emb, key, keep = {}, 0, None, (), set()
    if cache is not None and rule is not None and rule.steps == plan.steps:
        from rlli.text import embed

        emb = embed([r.prompt for r in requests], settings.text_model)
        key = cache_key(engine.backbone.name, plan, rule)
        forks, hits, cache_passes = kept_trunk_starts(engine, requests, groups, decision.forks, plan, rule, tol, budget,
                                                      cache, key, emb, settings.group_threshold)
        decision = ForkDecision(forks, decision.passes + cache_passes, decision.wall_s)
        keep = kept_steps(rule, tol, budget)
    return RoundSharing(decision, hits, cache_passes, key, emb, keep)


def generate_round(engine: Engine, requests: list[Request], groups: list[Group], plan: Plan, sharing: RoundSharing,
                   choice: dict[int, int] | None = None, cache: TrunkCache | None = None, probe_step: int = 1):
    """Build the tree plan within ``choice``, run it (one batched loop), and keep this round's trunks. Returns the
    engine's RoundResult and the trees (``trees[g].shared_steps_of(k)`` = member k's server-side steps)."""
    trees = tree_plan(groups, sharing.decision.forks, choice, sharing.hits)
    starts = starts_for(trees, sharing.hits)
    keep = trunks_to_keep(trees, starts, sharing.keep_steps) if cache is not None and sharing.keep_steps else {}
    result = engine.run_tree(requests, trees, plan, starts, keep)
    if keep:
        record_trunks(cache, sharing.key, requests, keep, result, sharing.embeddings, probe_step)
    return result, trees


__all__ = ["MemberFork", "RoundSharing", "decide_round", "generate_round",
           "tree_plan", "plan_split_tree", "KeptTrunkHit", "kept_trunk_starts", "starts_for",
           "trunks_to_keep", "record_trunks", "kept_steps", "cache_key", "lonely_requests", "ForkDecision", "ForkRule",
           "decide_forks", "member_plan",
           "load_fork_rule", "measured_with", "rule_mismatch", "fork_rule_path", "break_budget", "DEFAULT_RULE", "RULE_KIND",
           "DEFAULT_BREAK_BUDGET"]
