"""The shared-denoising engine: one round of many users' text-to-image requests.

For each group, the first ``s_g`` of ``N`` denoising steps run once on the group's anchor prompt,
starting from the anchor request's seed; the intermediate latent (and, for multistep schedulers,
the solver's history) is handed to every member, which finishes the remaining ``N - s_g`` steps
with its own prompt. A group with ``s_g = 0`` is plain independent generation from each member's
own seed.

Everything is batched in one loop over the N steps: at step i, one denoiser call serves every
group prefix still sharing (with its anchor's prompt) and every member branch already on its own
(with its own prompt), each with its own copy of the scheduler state; a member's branch starts
from its group's prefix at step s_g. Wall time per phase is each call's time split by its rows.
Classifier-free guidance doubles the batch, and every half is counted as one denoiser pass.
Latents stay in memory, keyed by group. The engine knows nothing of RL or networks: it takes
groups and a plan and returns images with exact accounting.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler

from rlli.diffusion.backbone import Backbone, Conditioning, cond_cat, cond_rows


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int = 0
    request_id: str = ""


@dataclass(frozen=True)
class GroupPlan:
    members: tuple[int, ...]  # indices into the round's requests
    anchor: int  # one of members: whose prompt and seed run the shared steps
    shared_steps: int

    def __post_init__(self):
        if self.anchor not in self.members:
            raise ValueError("the anchor must be a member of its group")


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


@dataclass
class Output:
    request_id: str
    prompt: str
    seed: int
    group: int
    anchor_prompt: str
    shared_steps: int
    own_steps: int
    handoff_bytes: int
    image: np.ndarray  # uint8 (H, W, 3)


@dataclass
class RoundResult:
    outputs: list[Output]
    denoiser_passes: int
    wall_s: dict[str, float] = field(default_factory=dict)  # encode, shared, branches, decode, total

    def accounting(self) -> dict:
        return {"denoiser_passes": self.denoiser_passes, "wall_s": {k: round(v, 3) for k, v in self.wall_s.items()},
                "handoff_bytes": sum(o.handoff_bytes for o in self.outputs)}


def expected_passes(groups: list[GroupPlan], plan: Plan) -> int:
    """Denoiser forward passes of a round: shared prefix once per group, own steps per member."""
    per = 2 if plan.cfg else 1
    return per * sum(g.shared_steps + len(g.members) * (plan.steps - g.shared_steps) for g in groups)


def independent_groups(n: int) -> list[GroupPlan]:
    return [GroupPlan(members=(i,), anchor=i, shared_steps=0) for i in range(n)]


def _noise(seed: int, shape: tuple[int, ...], device) -> torch.Tensor:
    """Seeded on the CPU (the same numbers on every device), then moved."""
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(int(seed))).to(device)


def _state_bytes(latent: torch.Tensor, scheduler) -> int:
    """Bytes a hand-off carries: the latent plus any multistep solver history."""
    total = latent.numel() * latent.element_size()
    history = [t for t in getattr(scheduler, "model_outputs", None) or [] if isinstance(t, torch.Tensor)]
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        history = history[1:]  # DPM-Solver++ shifts its oldest output out before using the history
    for t in history:
        total += t.numel() * t.element_size()
    last = getattr(scheduler, "last_sample", None)
    if isinstance(last, torch.Tensor):
        total += last.numel() * last.element_size()
    return total


class _Branch:
    """One latent with its own scheduler, walking the timesteps from ``start``."""

    def __init__(self, latent, scheduler, start: int, cond_row: int):
        self.latent, self.scheduler, self.step, self.cond_row = latent, scheduler, start, cond_row


class Engine:
    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def _advance(self, branches: list[_Branch], cond: Conditioning, uncond: Conditioning, plan: Plan) -> int:
        """One denoising step for every branch, in one batched call. Returns passes used."""
        ts = [b.scheduler.timesteps[b.step] for b in branches]
        x = torch.cat([b.scheduler.scale_model_input(b.latent, t) for b, t in zip(branches, ts)])
        t = torch.stack([torch.as_tensor(v) for v in ts]).reshape(-1).to(x.device)
        c = cond_rows(cond, [b.cond_row for b in branches])
        if plan.cfg:
            u = cond_rows(uncond, [0] * len(branches))
            out = self.backbone.predict(torch.cat([x, x]), torch.cat([t, t]), cond_cat([u, c]))
            out_u, out_c = out.chunk(2)
            out = out_u + plan.guidance_scale * (out_c - out_u)
        else:
            out = self.backbone.predict(x, t, c)
        for i, (b, ti) in enumerate(zip(branches, ts)):
            b.latent = b.scheduler.step(out[i:i + 1], ti, b.latent).prev_sample
            b.step += 1
        return len(branches) * (2 if plan.cfg else 1)

    def _scheduler(self, plan: Plan):
        s = self.backbone.make_scheduler(plan.scheduler)
        s.set_timesteps(plan.steps)
        return s

    @torch.no_grad()
    def run(self, requests: list[Request], groups: list[GroupPlan], plan: Plan) -> RoundResult:
        if not requests:
            return RoundResult([], 0, {"total": 0.0})
        covered = sorted(i for g in groups for i in g.members)
        if covered != list(range(len(requests))):
            raise ValueError("groups must cover every request exactly once")
        for g in groups:
            if not 0 <= g.shared_steps <= plan.steps:
                raise ValueError(f"shared steps {g.shared_steps} outside 0..{plan.steps}")
        t0 = time.perf_counter()
        wall: dict[str, float] = {}
        prompts = sorted({r.prompt for r in requests})
        row = {p: i for i, p in enumerate(prompts)}
        cond, uncond = self.backbone.encode(prompts)
        wall["encode"] = time.perf_counter() - t0
        shape = tuple(self.backbone.latent_shape)
        device = cond[next(iter(cond))].device
        passes = 0
        cost = {"shared": 0.0, "branches": 0.0}

        # One loop over the N steps. At step i the batch holds every group prefix still sharing
        # (i < s_g, anchor prompt) and every member branch already on its own (i >= s_g, own prompt):
        # all rows are at the same step, so each step is one batched denoiser call for the whole round.
        prefix: dict[int, _Branch] = {}
        branches: list[tuple[int, int, _Branch | None, int]] = []  # (request, group, branch, hand-off bytes)
        for gi, g in enumerate(groups):
            if g.shared_steps > 0:
                sched = self._scheduler(plan)
                lat = _noise(requests[g.anchor].seed, shape, device) * sched.init_noise_sigma
                prefix[gi] = _Branch(lat, sched, 0, row[requests[g.anchor].prompt])
            for k in g.members:
                b = None
                if g.shared_steps == 0:
                    sched = self._scheduler(plan)
                    b = _Branch(_noise(requests[k].seed, shape, device) * sched.init_noise_sigma, sched, 0,
                                row[requests[k].prompt])
                branches.append((k, gi, b, 0))
        for i in range(plan.steps + 1):
            for n, (k, gi, b, _) in enumerate(branches):
                if b is None and groups[gi].shared_steps == i:  # hand-off: the prefix's latent and state
                    p = prefix[gi]
                    own = _Branch(p.latent.clone(), copy.deepcopy(p.scheduler), i, row[requests[k].prompt])
                    branches[n] = (k, gi, own, _state_bytes(p.latent, p.scheduler))
            if i == plan.steps:  # groups that shared every step have just taken their hand-off
                break
            shared_rows = [b for gi, b in prefix.items() if i < groups[gi].shared_steps]
            own_rows = [b for _, _, b, _ in branches if b is not None]
            t_step = time.perf_counter()
            passes += self._advance(shared_rows + own_rows, cond, uncond, plan)
            dt = time.perf_counter() - t_step
            cost["shared"] += dt * len(shared_rows) / (len(shared_rows) + len(own_rows))
            cost["branches"] += dt * len(own_rows) / (len(shared_rows) + len(own_rows))
        wall["shared"], wall["branches"] = cost["shared"], cost["branches"]

        t3 = time.perf_counter()
        images = self.backbone.decode(torch.cat([b.latent for _, _, b, _ in branches]))
        wall["decode"] = time.perf_counter() - t3
        outputs: list[Output] = [None] * len(requests)  # type: ignore[list-item]
        for (k, gi, _, handoff), img in zip(branches, images):
            g, r = groups[gi], requests[k]
            outputs[k] = Output(r.request_id, r.prompt, r.seed, gi, requests[g.anchor].prompt, g.shared_steps,
                                plan.steps - g.shared_steps, handoff, img)
        wall["total"] = time.perf_counter() - t0
        return RoundResult(outputs, passes, wall)
