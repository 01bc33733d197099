"""THE round: requests -> groups -> fork decisions -> allocation -> member plans -> engine -> scores -> report.

:func:`run_round` is the one place a round runs. The app (through the session layer), the Shared round tab,
``bench sharing``, ``bench round`` and the tests all call it. It is one straight function: each stage takes
what the stage before returned and nothing reaches back up; the report it returns is frozen (typed records,
no string-keyed dicts to edit afterwards).

A round reads its settings (steps, scheduler, guidance, fork rule, tolerance, grouping threshold) from the
one :class:`~rlli.config.Settings` object; the allocation policy is a :class:`~rlli.policy.api.Policy` or a
name (``RLLI_POLICY`` by default; ``fork_max`` gives every member its fork maximum with equal shares).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.engine import Engine, Output, Request, expected_passes, independent_groups
from rlli.grouping import Group, group_prompts
from rlli.personas.judge import BigFive
from rlli.policy.api import AllocationReport, Policy, UserAllocation, allocate_round, get_policy
from rlli.policy.sharing import MemberFork, decide_round, fork_rule_path, generate_round, load_fork_rule, measured_with

MAX_SEED = 2**31 - 1


class Phase(StrEnum):
    """The phases of a round, in the order they run; one name for progress bars, timings and JSON."""

    GROUPING = "grouping"
    FORK_DECISION = "fork_decision"
    ALLOCATION = "allocation"
    GENERATION = "generation"
    SCORING = "scoring"
    STORAGE = "storage"  # the session layer's, after the round: the store

    @property
    def label(self) -> str:
        """How a person reads it: 'fork decision'."""
        return self.value.replace("_", " ")


ROUND_PHASES: tuple[Phase, ...] = (Phase.GROUPING, Phase.FORK_DECISION, Phase.ALLOCATION, Phase.GENERATION,
                                   Phase.SCORING)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RoundGroup:
    """One group of the round. ``index`` is 0-based everywhere; pages show ``number`` (index + 1)."""

    index: int
    anchor: int  # request index of the medoid prompt whose trajectory the group shares
    members: tuple[int, ...]  # request indices
    similarity: tuple[float, ...]  # each member's cosine similarity to the anchor, in members' order
    fork_steps: tuple[int, ...]  # each member's steps run on the server before its hand-off (the anchor's = the prefix)
    depth: int = 1  # levels of the split tree (1: every member leaves the anchor's trunk)

    @property
    def prefix_steps(self) -> int:
        """Steps the group's prefix runs once on the anchor's prompt: max_k s_k."""
        return max(self.fork_steps, default=0)

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def min_similarity(self) -> float:
        return min(self.similarity, default=1.0)


@dataclass(frozen=True)
class RequestResult:
    """What one request of the round got: its engine output, the evidence of its fork decision, its allocation,
    its fidelity, and (when the round compares) its independent twin."""

    index: int
    prompt: str
    seed: int
    group: int  # RoundGroup.index
    output: Output
    fork: MemberFork
    allocation: UserAllocation
    fidelity: float | None = None
    independent: Output | None = None
    fidelity_independent: float | None = None

    @property
    def fork_step(self) -> int:
        """s_k: the steps this member took from its group's prefix (0 = its own seed and steps)."""
        return self.output.shared_steps

    @property
    def is_anchor(self) -> bool:
        return self.output.anchor_index == self.index

    @property
    def image(self) -> np.ndarray:
        return self.output.image


@dataclass(frozen=True)
class EngineWall:
    """Seconds the engine spent: prompt encoding, shared prefixes, members' own steps, decoding, in all."""

    encode: float = 0.0
    shared: float = 0.0
    branches: float = 0.0
    decode: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class Accounting:
    """Exact cost of the round: denoiser passes (the fork decision's probe included), bytes handed off, seconds."""

    passes: int  # everything: generation + fork decision
    passes_generation: int
    passes_fork_decision: int
    passes_independent: int  # the same requests generated without sharing (c * N each)
    handoff_bytes: int
    phases_s: dict[str, float]  # Phase value -> seconds, in the order they ran
    engine_wall_s: EngineWall
    backbone: str
    steps: int
    scheduler: str
    calibrated: bool  # a fork rule measured for this configuration was used
    policy: str
    wall_independent_s: float | None = None  # when the round compares
    passes_trunk_probe: int = 0  # of passes_fork_decision: probing trunks kept from earlier rounds
    trunk_cache: dict | None = None  # the kept trunks' counts after this round (hits, evictions, bytes), if any

    @property
    def passes_saved(self) -> int:
        return self.passes_independent - self.passes

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.passes / self.passes_independent if self.passes_independent else 0.0

    @property
    def wall_s(self) -> float:
        return float(sum(self.phases_s.values()))


@dataclass(frozen=True)
class RoundReport:
    round_id: str
    seed: int  # the seed of the round's links (fading, distances, device compute): the first request's
    requests: tuple[RequestResult, ...]
    groups: tuple[RoundGroup, ...]
    accounting: Accounting
    allocation: AllocationReport
    traits: tuple[BigFive, ...]
    payload_bytes: int  # one hand-off's latent (float32), as the system model's payload
    notices: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.requests]

    @property
    def outputs(self) -> list[Output]:
        return [r.output for r in self.requests]

    @property
    def forks(self) -> list[MemberFork]:
        return [r.fork for r in self.requests]

    @property
    def compared(self) -> bool:
        return all(r.independent is not None for r in self.requests)

    def group_of(self, request_index: int) -> RoundGroup:
        return self.groups[self.requests[request_index].group]

    def similarity_of(self, request_index: int) -> float:
        g = self.group_of(request_index)
        return g.similarity[g.members.index(request_index)]

    @property
    def shared_members(self) -> int:
        """Requests that took at least one step computed for another prompt (a trunk in this round or a kept one)."""
        return sum(1 for r in self.requests if r.output.foreign_steps > 0)


# ----------------------------------------------------------------------------- the round


def check_seed(seed, n_prompts: int) -> int:
    """The round's first seed; request i uses seed + i, so every one of them must fit in 0..2**31 - 1."""
    from rlli.prompts import PromptError

    try:
        value = int(seed)
        if value != float(seed):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise PromptError("The seed must be a whole number.") from None
    if not 0 <= value <= MAX_SEED - (n_prompts - 1):
        raise PromptError(f"The seed must be between 0 and {MAX_SEED - (n_prompts - 1)} for {n_prompts} prompt(s) "
                          "(request i uses seed + i).")
    return value


def requests_from(prompts: Sequence[str], seed: int = 0) -> list[Request]:
    """Requests for checked prompts: request i uses seed + i (its own noise)."""
    first = check_seed(seed, len(prompts))
    return [Request(p, seed=first + i, request_id=str(i)) for i, p in enumerate(prompts)]


def _fidelity(backbone, images: list[np.ndarray], prompts: list[str]) -> list[float | None]:
    """Fidelity where the backbone has its own world (an attribute reader); nothing otherwise."""
    world = getattr(backbone, "world", None)
    found = world.fidelity(np.stack(images), prompts) if world is not None and images else None
    return list(found) if found else [None] * len(prompts)


def run_round(requests: Sequence[Request], settings: Settings | None = None, *,
              traits: Sequence[BigFive] | None = None, policy: Policy | str | None = None, compare: bool = False,
              on_phase: Callable[[Phase], None] | None = None, backbone=None,
              groups: Sequence[Group] | None = None, trunks=None, split_tree: bool = True) -> RoundReport:
    """Run one round of ``requests`` (prompts already checked; request i's seed is its own noise).

    ``traits``: each request's Big-Five (default: population-average users); ``policy``: the allocation
    policy or its name (default ``settings.policy``); ``compare``: also generate every request independently
    (its twin) in the same run; ``on_phase(phase)`` hears each :class:`Phase` as it starts; ``backbone`` and
    ``groups`` fix those parts (tests, calibration); by default the configured backbone and the app's
    grouping. ``trunks`` (a :class:`rlli.diffusion.trunks.TrunkCache` owned by the caller) lets a request that
    shares with nobody in this round start from a trunk kept from an earlier round; ``split_tree`` lets members
    that agree with each other more than with the anchor leave it together as a sub-trunk.
    """
    s = settings or Settings()
    requests = list(requests)
    if not requests:
        raise ValueError("a round needs at least one request")
    tell = on_phase or (lambda phase: None)
    traits = tuple(traits) if traits is not None else (BigFive(),) * len(requests)
    if len(traits) != len(requests):
        raise ValueError(f"{len(requests)} requests but {len(traits)} trait vectors")
    backbone = backbone if backbone is not None else get_backbone(s)
    policy = policy if isinstance(policy, Policy) else get_policy(policy, s)
    engine, plan = Engine(backbone), plan_from(s)
    prompts = [r.prompt for r in requests]
    payload = int(np.prod(backbone.latent_shape)) * 4  # the hand-off latent in float32
    seed = int(requests[0].seed)
    timings: dict[str, float] = {}

    tell(Phase.GROUPING)
    t = time.perf_counter()
    groups = list(groups) if groups is not None else group_prompts(prompts, s.group_threshold, s.text_model)
    timings[Phase.GROUPING] = time.perf_counter() - t

    tell(Phase.FORK_DECISION)
    t = time.perf_counter()
    rule, rule_notice = load_fork_rule(fork_rule_path(s), measured_with(backbone.name, plan, s.text_model))
    sharing = decide_round(engine, requests, groups, plan, s, rule, rule_notice, cache=trunks, split_tree=split_tree)
    decision = sharing.decision
    timings[Phase.FORK_DECISION] = time.perf_counter() - t

    tell(Phase.ALLOCATION)
    t = time.perf_counter()
    allocation = allocate_round(groups, decision.forks, list(traits), s, seed, payload, policy)
    choice = {u.request_index: u.shared_steps for u in allocation.allocation.users
              if not decision.forks[u.request_index].is_anchor}
    # a request alone in this round that starts from a trunk kept from an earlier round takes the kept step the
    # probe allowed (the system model prices it as a lone user: the kept steps cost this round nothing)
    choice.update({k: hit.step for k, hit in sharing.hits.items()})
    timings[Phase.ALLOCATION] = time.perf_counter() - t

    tell(Phase.GENERATION)
    t = time.perf_counter()
    result, trees = generate_round(engine, requests, groups, plan, sharing, choice, cache=trunks,
                                   probe_step=rule.probe_step if rule is not None else 1)
    timings[Phase.GENERATION] = time.perf_counter() - t

    tell(Phase.SCORING)
    t = time.perf_counter()
    fidelity = _fidelity(backbone, [o.image for o in result.outputs], prompts)
    twins: list[Output | None] = [None] * len(requests)
    fidelity_twins: list[float | None] = [None] * len(requests)
    wall_independent = None
    if compare:
        indep = Engine(backbone).run(requests, independent_groups(len(requests)), plan)  # pays its own encoding
        twins, wall_independent = list(indep.outputs), float(indep.wall_s["total"])
        fidelity_twins = _fidelity(backbone, [o.image for o in indep.outputs], prompts)
    timings[Phase.SCORING] = time.perf_counter() - t

    group_of = {k: gi for gi, g in enumerate(groups) for k in g.members}
    users = {u.request_index: u for u in allocation.allocation.users}
    records = tuple(RequestResult(i, r.prompt, int(r.seed), group_of[i], result.outputs[i], decision.forks[i], users[i],
                                  fidelity[i], twins[i], fidelity_twins[i]) for i, r in enumerate(requests))
    round_groups = tuple(RoundGroup(gi, g.anchor, tuple(g.members), tuple(round(float(x), 4) for x in g.similarity),
                                    tuple(tr.shared_steps_of(k) for k in g.members), tr.depth)
                         for gi, (g, tr) in enumerate(zip(groups, trees)))
    accounting = Accounting(
        passes=decision.passes + result.denoiser_passes, passes_generation=result.denoiser_passes,
        passes_fork_decision=decision.passes, passes_independent=expected_passes(independent_groups(len(requests)), plan),
        handoff_bytes=sum(o.handoff_bytes for o in result.outputs),
        phases_s={str(k): round(v, 4) for k, v in timings.items()},
        engine_wall_s=EngineWall(**{k: round(float(v), 4) for k, v in result.wall_s.items()}),
        backbone=backbone.name, steps=plan.steps, scheduler=plan.scheduler, calibrated=rule is not None,
        policy=allocation.allocation.policy,
        wall_independent_s=None if wall_independent is None else round(wall_independent, 4),
        passes_trunk_probe=sharing.passes_cache_probe, trunk_cache=None if trunks is None else trunks.snapshot())
    notices = tuple(n for n in (rule_notice, allocation.notice.message if allocation.notice else None) if n)
    return RoundReport(uuid.uuid4().hex, seed, records, round_groups, accounting, allocation, traits, payload,
                       notices, s.public_dict())


def reallocate(report: RoundReport, policy: Policy | str, settings: Settings | None = None,
               traits: Sequence[BigFive] | None = None) -> AllocationReport:
    """The allocation another policy would give the same round (same fork decisions, links and personas).
    The images stay those the round made; only the allocation and its figures are recomputed. ``traits``
    replaces the requesters' Big-Five (one per request): "what if this user were more neurotic"."""
    s = settings or Settings()
    policy = policy if isinstance(policy, Policy) else get_policy(policy, s)
    if traits is None and policy.name == report.allocation.allocation.policy:
        return report.allocation
    traits = tuple(report.traits if traits is None else traits)
    if len(traits) != len(report.traits):
        raise ValueError(f"{len(report.traits)} requests but {len(traits)} trait vectors")
    groups = [Group(g.members, g.anchor, g.similarity) for g in report.groups]
    return allocate_round(groups, report.forks, list(traits), s, report.seed, report.payload_bytes, policy)


__all__ = ["Accounting", "EngineWall", "Phase", "ROUND_PHASES", "RequestResult", "RoundGroup", "RoundReport",
           "check_seed", "reallocate", "requests_from", "run_round"]
