"""The round orchestrator: prompts -> groups -> fork decisions -> allocation -> shared generation -> report.

The UI and the CLI call this layer; it runs the one round pipeline
(:func:`rlli.policy.sharing.round_from_settings`: group -> decide -> plan -> run), lets the allocation
policy (:func:`rlli.policy.api.allocate_round`, ``RLLI_POLICY``) choose every member's shared steps,
bandwidth and compute once the fork decisions are known, scores the images, and turns every failure the
user can cause into a :class:`PromptError` with a clear message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.engine import Engine, Output, Request, independent_groups
from rlli.grouping import group_prompts
from rlli.personas.judge import BigFive
from rlli.policy.api import AllocationReport, Policy, allocate_round, load_policy
from rlli.policy.sharing import MemberFork, independent_passes, round_from_settings
from rlli.prompts import PromptError, parse_prompts

MAX_SEED = 2**31 - 1
PHASES = ("grouping", "fork decision", "allocation", "generation", "scoring")  # in the order a round runs them


@dataclass
class GroupView:
    """One group as the page shows it."""

    number: int  # 1-based
    anchor: int  # request index
    members: list[int]
    similarity: list[float]  # each member's similarity to the anchor, in members' order
    member_steps: list[int]  # each member's fork step s_k, in members' order

    @property
    def prefix_steps(self) -> int:
        return max(self.member_steps, default=0)

    shared_steps = prefix_steps  # the name the store's group records use


@dataclass
class RoundReport:
    prompts: list[str]
    groups: list[GroupView]
    outputs: list[Output]
    forks: list[MemberFork]
    independent: list[Output] | None
    fidelity: list[float | None]
    fidelity_independent: list[float | None] | None
    accounting: dict
    notice: str | None = None
    settings: dict = field(default_factory=dict)
    allocation: AllocationReport | None = None  # the policy's allocation, and the same round unshared / equal split
    seed: int = 0  # the seed of the round's links (fading, distances, device compute)
    payload_bytes: int = 0  # one hand-off's latent, as the system model's payload

    @property
    def notices(self) -> list[str]:
        """What the page must say: a fork rule that does not fit, a policy that fell back."""
        out = [self.notice] if self.notice else []
        if self.allocation is not None and self.allocation.notice is not None:
            out.append(self.allocation.notice.message)
        return out

    def similarity_of(self, i: int) -> float:
        for g in self.groups:
            if i in g.members:
                return g.similarity[g.members.index(i)]
        return 1.0


def _fidelity(images: np.ndarray, prompts: list[str], backbone_name: str) -> list[float | None]:
    """Fidelity on the embedded model's world; nothing for other backbones or without the probe."""
    from rlli.diffusion.fidelity import fidelity_if_probe

    found = fidelity_if_probe(images, prompts) if backbone_name.startswith("tiny-t2i") else None
    return found or [None] * len(prompts)


def check_seed(seed, n_prompts: int) -> int:
    """The round's first seed; request i uses seed + i, so every one of them must fit in 0..2**31 - 1."""
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


class StudioService:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self._policies: dict[str, Policy] = {}

    def backbone(self):
        return get_backbone(self.settings)

    def policy(self, name: str | None = None) -> Policy:
        """The allocation policy by name (default ``RLLI_POLICY``), loaded once; a learned one that cannot load
        falls back to greedy with a notice that every report carries."""
        name = name or self.settings.policy
        if name not in self._policies:
            self._policies[name] = load_policy(name, self.settings)
        return self._policies[name]

    def run_round(self, text: str, seed: int = 0, compare: bool = False) -> RoundReport:
        """Prompts pasted one per line; request i uses seed + i."""
        s = self.settings
        prompts = parse_prompts(text, s.max_prompts, s.max_prompt_chars)
        seed = check_seed(seed, len(prompts))
        requests = [Request(p, seed=seed + i, request_id=str(i)) for i, p in enumerate(prompts)]
        return self.run_requests(requests, compare=compare)

    def run_requests(self, requests: list[Request], traits: list[BigFive] | None = None, compare: bool = False,
                     policy: str | None = None, on_phase: Callable[[str], None] | None = None) -> RoundReport:
        """One round of ``requests`` (prompts already checked): the fork decisions, then the policy's allocation
        for users with these Big-Five ``traits`` (default: population-average users), then generation.

        ``on_phase(name)`` is told when each phase starts (:data:`PHASES`, in order), for progress bars."""
        s = self.settings
        phase = on_phase or (lambda name: None)
        prompts = [r.prompt for r in requests]
        backbone = self.backbone()
        engine = Engine(backbone)
        plan = plan_from(s)
        traits = traits or [BigFive()] * len(requests)
        payload = int(np.prod(backbone.latent_shape)) * 4  # the hand-off latent in float32
        seed = requests[0].seed
        chosen: dict[str, AllocationReport] = {}
        policy_ = self.policy(policy)

        phases: dict[str, float] = {}

        def choose(groups, decision) -> dict[int, int]:
            phase("allocation")
            t = time.perf_counter()
            chosen["report"] = allocate_round(groups, decision.forks, traits, s, seed, payload, policy_)
            phases["allocation"] = time.perf_counter() - t
            phase("generation")
            return chosen["report"].allocation.shared_steps()

        phase("grouping")
        t = time.perf_counter()
        groups = group_prompts(prompts, s.group_threshold, s.text_model)
        phases["grouping"] = time.perf_counter() - t
        phase("fork decision")
        rnd = round_from_settings(s, engine, requests, plan, groups=groups, choose=choose)
        phases["fork_decision"] = rnd.decision.wall_s
        phases["generation"] = rnd.result.wall_s.get("total", 0.0)
        outputs = rnd.result.outputs
        phase("scoring")
        t = time.perf_counter()
        fid = _fidelity(np.stack([o.image for o in outputs]), prompts, backbone.name)
        phases["scoring"] = time.perf_counter() - t
        accounting = {"denoiser_passes": rnd.passes,
                      "denoiser_passes_generation": rnd.result.denoiser_passes,
                      "denoiser_passes_fork_decision": rnd.decision.passes,
                      "denoiser_passes_independent": independent_passes(len(prompts), plan),
                      "wall_s": {**{k: round(v, 3) for k, v in rnd.result.wall_s.items()},
                                 "fork_decision": round(rnd.decision.wall_s, 3), "round": round(rnd.wall_s, 3)},
                      "handoff_bytes": sum(o.handoff_bytes for o in outputs),
                      "backbone": backbone.name, "steps": plan.steps, "scheduler": plan.scheduler,
                      "calibrated": rnd.notice is None,
                      "anchors_image": [i for i, o in enumerate(outputs) if o.is_anchors_image]}
        indep, fid_i = None, None
        if compare:
            res = Engine(backbone).run(requests, independent_groups(len(requests)), plan)  # pays its own encoding
            indep = res.outputs
            fid_i = _fidelity(np.stack([o.image for o in indep]), prompts, backbone.name)
            accounting["wall_independent_s"] = round(res.wall_s["total"], 3)
            accounting["denoiser_passes_independent"] = res.denoiser_passes
        views = [GroupView(gi + 1, p.anchor, list(p.members), [round(x, 3) for x in g.similarity], list(p.member_steps))
                 for gi, (g, p) in enumerate(zip(rnd.groups, rnd.plans))]
        alloc = chosen["report"]
        accounting["policy"] = alloc.allocation.policy
        accounting["phases_s"] = {k: round(v, 4) for k, v in phases.items()}
        accounting["energy_j"] = {"policy": round(alloc.allocation.energy_j, 3),
                                  "no_sharing": round(alloc.no_sharing.energy_j, 3),
                                  "equal_split": round(alloc.equal.energy_j, 3)}
        return RoundReport(prompts, views, outputs, rnd.decision.forks, indep, fid, fid_i, accounting, rnd.notice,
                           s.public_dict(), alloc, seed, payload)
