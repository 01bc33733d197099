"""The shared-denoising engine: one round of many users' text-to-image requests.

Within a group, member k forks from the anchor's trajectory at its own step ``s_k`` (0 <= s_k <= N):
the group's prefix runs ``max_k s_k`` steps once on the anchor's prompt, starting from the anchor
request's seed; member k takes the prefix's latent (and, for multistep schedulers, the solver's
history) at step ``s_k`` and finishes the remaining ``N - s_k`` steps with its own prompt. A member
with ``s_k = 0`` is plain independent generation from its own seed. Denoiser passes per round:
``c * sum_g [max_k s_k + sum_k (N - s_k)]`` with ``c = 2`` under classifier-free guidance.

Everything is batched in one loop over the N steps: at step i, one denoiser call serves every
group prefix still running (with its anchor's prompt) and every member branch already on its own
(with its own prompt), each with its own copy of the scheduler state. Wall time per phase is each
call's time split by its rows. Latents stay in memory, keyed by group. The engine knows nothing of
RL or networks: it takes groups and a per-member plan and returns images with exact accounting.

Only deterministic samplers run here: a stochastic one would draw from the global RNG, so the same
seed would no longer give the same image, and a shared prefix would no longer be shareable.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rlli.diffusion.backbone import Backbone, Conditioning, cond_cat, cond_rows

IMAGE_OWN = "own"  # no shared steps: the member's own seed, prompt and steps
IMAGE_FORKED = "forked"  # the anchor's first s_k steps (anchor's seed), then the member's own steps
IMAGE_ANCHORS = "anchor's image"  # shared every step: the anchor's finished image, whatever the prompt


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int = 0
    request_id: str = ""


@dataclass(frozen=True)
class GroupPlan:
    """One group's plan: its members, its anchor, and the step at which each member forks.

    Give either ``shared_steps`` (one value for every member) or ``member_steps`` (one per member,
    in the order of ``members``). After construction ``member_steps`` is always set and
    ``shared_steps`` is the prefix length, ``max_k s_k``.
    """

    members: tuple[int, ...]  # indices into the round's requests
    anchor: int  # one of members: whose prompt and seed run the shared steps
    shared_steps: int = 0
    member_steps: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.anchor not in self.members:
            raise ValueError("the anchor must be a member of its group")
        if self.member_steps is None:
            object.__setattr__(self, "member_steps", (int(self.shared_steps),) * len(self.members))
        else:
            if len(self.member_steps) != len(self.members):
                raise ValueError("member_steps needs one value per member")
            object.__setattr__(self, "member_steps", tuple(int(s) for s in self.member_steps))
            object.__setattr__(self, "shared_steps", max(self.member_steps))

    def steps_of(self, request: int) -> int:
        return self.member_steps[self.members.index(request)]


@dataclass(frozen=True)
class Plan:
    steps: int = 20
    guidance_scale: float = 2.0
    scheduler: str = "ddim"

    def __post_init__(self):
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000, not {self.steps}")
        if self.guidance_scale < 0:
            raise ValueError("the guidance scale cannot be negative")

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1.0

    @property
    def passes_per_step(self) -> int:
        return 2 if self.cfg else 1


@dataclass
class Output:
    request_id: str
    prompt: str
    seed: int  # the request's own seed
    group: int
    anchor_prompt: str
    shared_steps: int  # this member's s_k
    own_steps: int  # N - s_k
    handoff_bytes: int
    image: np.ndarray  # uint8 (H, W, 3)
    noise_seed: int = 0  # the seed the starting noise came from: the anchor's when s_k > 0
    anchor_index: int = 0  # the request whose prompt and seed ran the group's shared steps
    anchor_request_id: str = ""
    image_source: str = IMAGE_OWN  # IMAGE_OWN, IMAGE_FORKED or IMAGE_ANCHORS

    @property
    def is_anchors_image(self) -> bool:
        """True when this member received the anchor's finished image for a different prompt."""
        return self.image_source == IMAGE_ANCHORS


@dataclass
class RoundResult:
    outputs: list[Output]
    denoiser_passes: int
    wall_s: dict[str, float] = field(default_factory=dict)  # encode, shared, branches, decode, total

    def accounting(self) -> dict:
        return {"denoiser_passes": self.denoiser_passes, "wall_s": {k: round(v, 3) for k, v in self.wall_s.items()},
                "handoff_bytes": sum(o.handoff_bytes for o in self.outputs)}


def expected_passes(groups: list[GroupPlan], plan: Plan) -> int:
    """Denoiser forward passes of a round: each prefix (max_k s_k) once, each member's own N - s_k steps."""
    return plan.passes_per_step * sum(g.shared_steps + sum(plan.steps - s for s in g.member_steps) for g in groups)


def independent_groups(n: int) -> list[GroupPlan]:
    return [GroupPlan(members=(i,), anchor=i, shared_steps=0) for i in range(n)]


def noise(seed: int, shape: tuple[int, ...], device) -> torch.Tensor:
    """Seeded on the CPU (the same numbers on every device), then moved."""
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(int(seed))).to(device)


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def state_bytes(latent: torch.Tensor, scheduler) -> int:
    """Bytes a hand-off carries: the latent plus the solver history the next step still reads.

    Multistep solvers (DPM-Solver++, UniPC) keep ``solver_order`` slots of past model outputs, filled
    from the end; the next step shifts the oldest slot out before it reads the rest, so only the
    slots after the first can matter - and of those only the ones already filled.
    """
    total = _tensor_bytes(latent)
    slots = list(getattr(scheduler, "model_outputs", None) or [])
    for t in slots[1:]:
        if isinstance(t, torch.Tensor):
            total += _tensor_bytes(t)
    last = getattr(scheduler, "last_sample", None)
    if isinstance(last, torch.Tensor):
        total += _tensor_bytes(last)
    return total


STOCHASTIC_MARKS = ("Ancestral", "SDE", "DDPM", "LCM", "TCD")  # samplers that draw fresh noise every step


def check_deterministic(scheduler) -> None:
    """Refuse samplers that add fresh noise per step: they draw from the global RNG, so a seed no longer fixes
    the image and a shared prefix no longer stands for the member's own run."""
    kind = type(scheduler).__name__
    algorithm = str(scheduler.config.get("algorithm_type", ""))
    if any(mark in kind for mark in STOCHASTIC_MARKS) or "sde" in algorithm:
        raise ValueError(f"{kind}{f' ({algorithm})' if algorithm else ''} adds noise at every step; the engine runs "
                         "only deterministic samplers (ddim, euler, dpm, unipc), so that a seed fixes the image")


class _Branch:
    """One latent with its own scheduler, walking the timesteps from ``step``."""

    def __init__(self, latent, scheduler, step: int, cond_row: int):
        self.latent, self.scheduler, self.step, self.cond_row = latent, scheduler, step, cond_row


@dataclass
class _Member:
    """One request's place in the round: its group, fork step, and (once it has one) its own branch."""

    request: int
    group: int
    fork: int
    branch: _Branch | None = None
    handoff_bytes: int = 0


class Engine:
    """Runs rounds on one backbone. Prompt encodings are kept per engine (a round's fork decision and its
    generation encode the same prompts once); make a new engine per round to bound them."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self._encoded: dict[str, Conditioning] = {}
        self._uncond: Conditioning | None = None

    def encode(self, prompts: list[str]) -> tuple[Conditioning, Conditioning]:
        """Conditioning rows for ``prompts`` (in order) and the unconditional one, each prompt encoded once."""
        todo = sorted({p for p in prompts if p not in self._encoded})
        if todo or self._uncond is None:
            cond, uncond = self.backbone.encode(todo or [prompts[0]])
            for i, p in enumerate(todo):
                self._encoded[p] = cond_rows(cond, [i])
            self._uncond = uncond
        return cond_cat([self._encoded[p] for p in prompts]), self._uncond

    def predict_guided(self, x: torch.Tensor, t: torch.Tensor, c: Conditioning, uncond: Conditioning,
                       plan: Plan) -> torch.Tensor:
        """The model output for a batch, with classifier-free guidance when the plan asks for it."""
        if not plan.cfg:
            return self.backbone.predict(x, t, c)
        u = cond_rows(uncond, [0] * x.shape[0])
        out_u, out_c = self.backbone.predict(torch.cat([x, x]), torch.cat([t, t]), cond_cat([u, c])).chunk(2)
        return out_u + plan.guidance_scale * (out_c - out_u)

    def _advance(self, branches: list[_Branch], cond: Conditioning, uncond: Conditioning, plan: Plan) -> int:
        """One denoising step for every branch, in one batched call. Returns passes used."""
        ts = [b.scheduler.timesteps[b.step] for b in branches]
        x = torch.cat([b.scheduler.scale_model_input(b.latent, t) for b, t in zip(branches, ts)])
        t = torch.stack([torch.as_tensor(v) for v in ts]).reshape(-1).to(x.device)
        out = self.predict_guided(x, t, cond_rows(cond, [b.cond_row for b in branches]), uncond, plan)
        for i, (b, ti) in enumerate(zip(branches, ts)):
            b.latent = b.scheduler.step(out[i:i + 1], ti, b.latent).prev_sample
            b.step += 1
        return len(branches) * plan.passes_per_step

    def scheduler(self, plan: Plan):
        """A fresh deterministic scheduler set to exactly ``plan.steps`` timesteps."""
        s = self.backbone.make_scheduler(plan.scheduler)
        check_deterministic(s)
        s.set_timesteps(plan.steps)
        if len(s.timesteps) != plan.steps:
            raise ValueError(f"the {plan.scheduler} scheduler made {len(s.timesteps)} timesteps for "
                             f"{plan.steps} steps; the engine needs exactly one per step")
        return s

    def start(self, seed: int, plan: Plan, cond_row: int, device) -> _Branch:
        """A branch at step 0: the seed's noise scaled for the scheduler."""
        sched = self.scheduler(plan)
        return _Branch(noise(seed, tuple(self.backbone.latent_shape), device) * sched.init_noise_sigma, sched, 0,
                       cond_row)

    @staticmethod
    def _check(requests: list[Request], groups: list[GroupPlan], plan: Plan) -> None:
        covered = sorted(i for g in groups for i in g.members)
        if covered != list(range(len(requests))):
            raise ValueError("groups must cover every request exactly once")
        for g in groups:
            for s in g.member_steps:
                if not 0 <= s <= plan.steps:
                    raise ValueError(f"shared steps {s} outside 0..{plan.steps}")

    def _setup(self, requests, groups, plan, row, device) -> tuple[dict[int, _Branch], list[_Member]]:
        prefix: dict[int, _Branch] = {}
        members: list[_Member] = []
        for gi, g in enumerate(groups):
            if g.shared_steps > 0:
                prefix[gi] = self.start(requests[g.anchor].seed, plan, row[requests[g.anchor].prompt], device)
            for k, s in zip(g.members, g.member_steps):
                m = _Member(k, gi, s)
                if s == 0:
                    m.branch = self.start(requests[k].seed, plan, row[requests[k].prompt], device)
                members.append(m)
        return prefix, members

    def _hand_off(self, step: int, prefix: dict[int, _Branch], members: list[_Member], requests, row) -> None:
        """Members forking at ``step`` take their prefix's latent and a copy of its scheduler state."""
        for m in members:
            if m.branch is None and m.fork == step:
                p = prefix[m.group]
                m.branch = _Branch(p.latent.clone(), copy.deepcopy(p.scheduler), step, row[requests[m.request].prompt])
                m.handoff_bytes = state_bytes(p.latent, p.scheduler)

    def _outputs(self, requests, groups, plan, members, images) -> list[Output]:
        outputs: list[Output] = [None] * len(requests)  # type: ignore[list-item]
        for m, img in zip(members, images):
            g, r = groups[m.group], requests[m.request]
            a = requests[g.anchor]
            if m.fork == 0:
                source = IMAGE_OWN
            elif m.fork == plan.steps and r.prompt != a.prompt:
                source = IMAGE_ANCHORS
            else:
                source = IMAGE_FORKED
            outputs[m.request] = Output(
                request_id=r.request_id, prompt=r.prompt, seed=r.seed, group=m.group, anchor_prompt=a.prompt,
                shared_steps=m.fork, own_steps=plan.steps - m.fork, handoff_bytes=m.handoff_bytes, image=img,
                noise_seed=a.seed if m.fork > 0 else r.seed, anchor_index=g.anchor, anchor_request_id=a.request_id,
                image_source=source)
        return outputs

    @torch.no_grad()
    def run(self, requests: list[Request], groups: list[GroupPlan], plan: Plan) -> RoundResult:
        if not requests:
            return RoundResult([], 0, {"total": 0.0})
        self._check(requests, groups, plan)
        t0 = time.perf_counter()
        wall: dict[str, float] = {}
        prompts = sorted({r.prompt for r in requests})
        row = {p: i for i, p in enumerate(prompts)}
        cond, uncond = self.encode(prompts)
        wall["encode"] = time.perf_counter() - t0
        device = cond[next(iter(cond))].device
        prefix, members = self._setup(requests, groups, plan, row, device)
        passes, cost = 0, {"shared": 0.0, "branches": 0.0}
        # At step i the batch holds every prefix still running (i < max_k s_k, anchor prompt) and every
        # member branch already on its own (own prompt): one batched denoiser call per step for the round.
        for i in range(plan.steps + 1):
            self._hand_off(i, prefix, members, requests, row)
            if i == plan.steps:  # members that shared every step have just taken their hand-off
                break
            shared_rows = [b for gi, b in prefix.items() if i < groups[gi].shared_steps]
            own_rows = [m.branch for m in members if m.branch is not None]
            t_step = time.perf_counter()
            passes += self._advance(shared_rows + own_rows, cond, uncond, plan)
            dt = time.perf_counter() - t_step
            cost["shared"] += dt * len(shared_rows) / (len(shared_rows) + len(own_rows))
            cost["branches"] += dt * len(own_rows) / (len(shared_rows) + len(own_rows))
        wall["shared"], wall["branches"] = cost["shared"], cost["branches"]
        t3 = time.perf_counter()
        images = self.backbone.decode(torch.cat([m.branch.latent for m in members]))
        wall["decode"] = time.perf_counter() - t3
        wall["total"] = time.perf_counter() - t0
        return RoundResult(self._outputs(requests, groups, plan, members, images), passes, wall)
