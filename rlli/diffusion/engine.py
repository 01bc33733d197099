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

A group can also run as a *split tree* (:class:`TreePlan`): every request has its own branch, and a
request with a parent starts from the latent its parent's path holds at its departure step, so
members that still agree ride a sub-trunk (another member's branch) after they leave the anchor's.
A one-level tree is exactly the per-member fork above (:meth:`TreePlan.one_level`; ``run`` uses it).
A tree's root may also start from a latent kept from an earlier round (:class:`Start`).
Passes per round: ``c * sum_k (N - d_k)`` over requests, ``d_k`` the step its own branch starts.

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
    shared_steps: int  # steps the server ran for this request before its hand-off (its s_k; a trunk's last fork)
    own_steps: int  # N - shared_steps
    handoff_bytes: int
    image: np.ndarray  # uint8 (H, W, 3)
    noise_seed: int = 0  # the seed the starting noise came from: the anchor's (or the tree root's) when shared
    anchor_index: int = 0  # the request whose prompt and seed ran the group's shared steps (the tree's root)
    anchor_request_id: str = ""
    image_source: str = IMAGE_OWN  # IMAGE_OWN, IMAGE_FORKED or IMAGE_ANCHORS
    parent_index: int | None = None  # the request whose branch this one left (None: its own seed, or a kept trunk)
    foreign_steps: int = 0  # steps run on other prompts before its own branch began (d_k)
    path: tuple = ()  # (whose prompt: request index or a kept trunk's id, from step, to step) per segment
    start_origin: dict | None = None  # a trunk kept from an earlier round this request started from

    @property
    def is_anchors_image(self) -> bool:
        """True when this member received the anchor's finished image for a different prompt."""
        return self.image_source == IMAGE_ANCHORS


@dataclass(frozen=True)
class TreePlan:
    """One group run as a split tree.

    Every request in ``members`` has its own branch. ``parents[i]`` is the request whose *path* member i
    leaves at step ``departures[i]`` (taking the latent that path holds at that step), or None: the
    member starts from its own seed at step 0 (``departures[i] == 0``) or from a :class:`Start` given
    to the run (``departures[i]`` = the start's step). A parent whose own branch begins after the
    departure step hands over its own parent's latent (the same latent), so a policy may shorten any
    member's departure freely. ``anchor`` is the root whose prompt and seed run the first steps.
    """

    members: tuple[int, ...]
    anchor: int
    parents: tuple[int | None, ...]
    departures: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "members", tuple(int(k) for k in self.members))
        object.__setattr__(self, "parents", tuple(None if p is None else int(p) for p in self.parents))
        object.__setattr__(self, "departures", tuple(int(d) for d in self.departures))
        if not len(self.members) == len(self.parents) == len(self.departures):
            raise ValueError("a tree needs one parent and one departure step per member")
        if self.anchor not in self.members:
            raise ValueError("the anchor must be a member of its group")
        if self.parent_of(self.anchor) is not None:
            raise ValueError("the anchor is the tree's root: it has no parent")
        for k, p, d in zip(self.members, self.parents, self.departures):
            if d < 0:
                raise ValueError(f"request {k} departs at a negative step")
            if p is not None and (p not in self.members or p == k):
                raise ValueError(f"request {k}'s parent {p} is not another member of its tree")
            if p is not None and d == 0:
                raise ValueError(f"request {k} departs its parent at step 0: give it no parent instead")
        for k in self.members:  # every path ends at a root
            seen, x = {k}, self.parent_of(k)
            while x is not None:
                if x in seen:
                    raise ValueError("a tree's parents form a cycle")
                seen.add(x)
                x = self.parent_of(x)

    @classmethod
    def one_level(cls, group: GroupPlan) -> TreePlan:
        """Today's per-member fork as a tree: every member with s_k > 0 leaves the anchor's branch at s_k."""
        parents, deps = [], []
        for k, s in zip(group.members, group.member_steps):
            if k == group.anchor or s == 0:
                parents.append(None)
                deps.append(0)
            else:
                parents.append(group.anchor)
                deps.append(s)
        return cls(group.members, group.anchor, tuple(parents), tuple(deps))

    def parent_of(self, k: int) -> int | None:
        return self.parents[self.members.index(k)]

    def departure_of(self, k: int) -> int:
        return self.departures[self.members.index(k)]

    def source(self, k: int) -> int | None:
        """The request whose branch member k copies at its departure: its parent, or the nearest ancestor whose
        branch already runs at that step."""
        d, x = self.departure_of(k), self.parent_of(k)
        while x is not None and self.parent_of(x) is not None and self.departure_of(x) >= d:
            x = self.parent_of(x)
        return x

    def serving(self) -> dict[int, int]:
        """Per member: the last step at which another member copies its branch (0: nobody)."""
        out = {k: 0 for k in self.members}
        for k in self.members:
            src = self.source(k)
            if src is not None:
                out[src] = max(out[src], self.departure_of(k))
        return out

    def shared_steps_of(self, k: int) -> int:
        """Steps the server runs for member k before its hand-off: its departure or its branch's last fork."""
        return max(self.departure_of(k), self.serving()[k])

    def path(self, k: int) -> list[tuple[int, int, int | None]]:
        """(whose prompt drove the latent, from step, to step) per segment, oldest first; k's own is (k, d_k, None)."""
        segs: list[tuple[int, int, int | None]] = [(k, self.departure_of(k), None)]
        end, x = self.departure_of(k), self.source(k)
        while x is not None:
            segs.append((x, self.departure_of(x), end))
            end, x = self.departure_of(x), self.source(x)
        return segs[::-1]

    @property
    def depth(self) -> int:
        """Levels of branching: 0 nobody shares, 1 every sharer leaves the root, 2+ sub-trunks."""
        def level(k):
            src = self.source(k)
            return 0 if src is None else 1 + level(src)

        return max((level(k) for k in self.members), default=0)


@dataclass(frozen=True)
class Start:
    """A latent kept from an earlier round that a root member starts from (see :mod:`rlli.diffusion.trunks`)."""

    latent: torch.Tensor  # (1, *latent_shape) at ``step``
    scheduler: object  # the scheduler state at ``step`` (copied again for the branch)
    step: int
    seed: int  # the seed the kept trunk's noise came from
    origin: dict  # JSON-able provenance: entry id, prompt, request id, age in seconds


@dataclass
class RoundResult:
    outputs: list[Output]
    denoiser_passes: int
    wall_s: dict[str, float] = field(default_factory=dict)  # encode, shared, branches, decode, total
    # (request, step) -> (latent, scheduler state) copied where the run was asked to keep them (run_tree's keep)
    kept: dict[tuple[int, int], tuple[torch.Tensor, object]] = field(default_factory=dict, repr=False)

    def accounting(self) -> dict:
        return {"denoiser_passes": self.denoiser_passes, "wall_s": {k: round(v, 3) for k, v in self.wall_s.items()},
                "handoff_bytes": sum(o.handoff_bytes for o in self.outputs)}


def expected_passes(groups: list[GroupPlan], plan: Plan) -> int:
    """Denoiser forward passes of a round: each prefix (max_k s_k) once, each member's own N - s_k steps (the anchor's
    own branch is the prefix, so an anchor planned below max_k s_k costs nothing extra)."""
    return expected_tree_passes([TreePlan.one_level(g) for g in groups], plan)


def expected_tree_passes(trees: list[TreePlan], plan: Plan) -> int:
    """Denoiser forward passes of a round of trees: every request's own branch from its departure to N."""
    return plan.passes_per_step * sum(plan.steps - d for t in trees for d in t.departures)


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

    @staticmethod
    def _check_trees(requests: list[Request], trees: list[TreePlan], plan: Plan, starts: dict[int, Start]) -> None:
        covered = sorted(i for t in trees for i in t.members)
        if covered != list(range(len(requests))):
            raise ValueError("groups must cover every request exactly once")
        for t in trees:
            for k, p, d in zip(t.members, t.parents, t.departures):
                if not 0 <= d <= plan.steps:
                    raise ValueError(f"shared steps {d} outside 0..{plan.steps}")
                if p is None and d > 0 and (k not in starts or starts[k].step != d):
                    raise ValueError(f"request {k} starts at step {d} without a kept trunk at that step")
                if p is None and k in starts and starts[k].step != d:
                    raise ValueError(f"request {k} starts from a kept trunk at step {starts[k].step}, not {d}")
                src = t.source(k)
                if src is not None and t.parent_of(src) is None and t.departure_of(src) >= d:
                    raise ValueError(f"request {k} leaves request {src} at step {d}, before its branch begins")

    @torch.no_grad()
    def run(self, requests: list[Request], groups: list[GroupPlan], plan: Plan) -> RoundResult:
        """A round of per-member forks (each group a one-level tree; see the module)."""
        self._check(requests, groups, plan)
        return self.run_tree(requests, [TreePlan.one_level(g) for g in groups], plan)

    @torch.no_grad()
    def run_tree(self, requests: list[Request], trees: list[TreePlan], plan: Plan,
                 starts: dict[int, Start] | None = None, keep: dict[int, set[int]] | None = None) -> RoundResult:
        """A round of split trees: at each step one batched denoiser call for every live branch (trunks that
        someone still leaves first, then the rest, in member order); a member's branch begins at its
        departure with a copy of its source's latent and scheduler state. ``keep`` (request -> steps) copies
        those branches' states at those steps into ``RoundResult.kept`` (for trunks kept across rounds)."""
        if not requests:
            return RoundResult([], 0, {"total": 0.0})
        starts = dict(starts or {})
        self._check_trees(requests, trees, plan, starts)
        t0 = time.perf_counter()
        wall: dict[str, float] = {}
        prompts = sorted({r.prompt for r in requests})
        row = {p: i for i, p in enumerate(prompts)}
        cond, uncond = self.encode(prompts)
        wall["encode"] = time.perf_counter() - t0
        device = cond[next(iter(cond))].device
        order = [(ti, k) for ti, t in enumerate(trees) for k in t.members]  # the batch's row order
        tree_of = {k: trees[ti] for ti, k in order}
        dep = {k: tree_of[k].departure_of(k) for _, k in order}
        serve: dict[int, int] = {}
        for t in trees:
            serve.update(t.serving())
        handoff_at = {k: max(dep[k], serve[k]) for _, k in order}
        branches: dict[int, _Branch] = {}
        handoff: dict[int, int] = {k: 0 for _, k in order}
        kept: dict[tuple[int, int], tuple[torch.Tensor, object]] = {}
        passes, cost = 0, {"shared": 0.0, "branches": 0.0}
        for i in range(plan.steps + 1):
            for _, k in order:  # branches that begin at step i (sources first: a source always began earlier)
                if k in branches or dep[k] != i:
                    continue
                t = tree_of[k]
                src = t.source(k)
                if src is None and k in starts:
                    st = starts[k]
                    branches[k] = _Branch(st.latent.to(device).clone(), copy.deepcopy(st.scheduler), i,
                                          row[requests[k].prompt])
                elif src is None:
                    branches[k] = self.start(requests[k].seed, plan, row[requests[k].prompt], device)
                else:
                    p = branches[src]
                    branches[k] = _Branch(p.latent.clone(), copy.deepcopy(p.scheduler), i, row[requests[k].prompt])
            for _, k in order:  # hand-offs: the latent leaves the server at this member's last shared step
                if handoff_at[k] == i and i > 0:
                    handoff[k] = state_bytes(branches[k].latent, branches[k].scheduler)
            for k, wanted in (keep or {}).items():
                if i in wanted and k in branches:
                    kept[(k, i)] = (branches[k].latent.clone(), copy.deepcopy(branches[k].scheduler))
            if i == plan.steps:  # members that shared every step have just taken their hand-off
                break
            live = [k for _, k in order if k in branches]
            if not live:  # every branch begins later (a kept trunk's start)
                continue
            shared_rows = [branches[k] for k in live if serve[k] > i]
            own_rows = [branches[k] for k in live if serve[k] <= i]
            t_step = time.perf_counter()
            passes += self._advance(shared_rows + own_rows, cond, uncond, plan)
            dt = time.perf_counter() - t_step
            cost["shared"] += dt * len(shared_rows) / (len(shared_rows) + len(own_rows))
            cost["branches"] += dt * len(own_rows) / (len(shared_rows) + len(own_rows))
        wall["shared"], wall["branches"] = cost["shared"], cost["branches"]
        t3 = time.perf_counter()
        images = self.backbone.decode(torch.cat([branches[k].latent for _, k in order]))
        wall["decode"] = time.perf_counter() - t3
        wall["total"] = time.perf_counter() - t0
        outputs: list[Output] = [None] * len(requests)  # type: ignore[list-item]
        for (ti, k), img in zip(order, images):
            outputs[k] = self._output(requests, tree_of[k], ti, k, plan, handoff_at[k], handoff[k], img, starts)
        return RoundResult(outputs, passes, wall, kept)

    @staticmethod
    def _output(requests, t: TreePlan, ti: int, k: int, plan: Plan, shared: int, nbytes: int, img,
                starts: dict[int, Start]) -> Output:
        r = requests[k]
        path = t.path(k)
        root = path[0][0]
        start = starts.get(root)
        a = requests[t.anchor]
        d = t.departure_of(k)
        src = t.source(k)
        if shared == 0:
            source = IMAGE_OWN
        elif d == plan.steps and src is not None and r.prompt != requests[src].prompt:
            source = IMAGE_ANCHORS
        elif d == plan.steps and start is not None and r.prompt != start.origin.get("prompt"):
            source = IMAGE_ANCHORS  # an earlier request's finished image
        else:
            source = IMAGE_FORKED
        segs = tuple((x, a_, plan.steps if b_ is None else b_) for x, a_, b_ in path)
        if start is not None:
            segs = ((f"kept:{start.origin.get('entry', '')}", 0, start.step),) + segs
        noise_seed = (start.seed if start is not None else requests[root].seed) if (shared > 0 or d > 0) else r.seed
        return Output(
            request_id=r.request_id, prompt=r.prompt, seed=r.seed, group=ti, anchor_prompt=a.prompt,
            shared_steps=shared, own_steps=plan.steps - shared, handoff_bytes=nbytes, image=img,
            noise_seed=noise_seed, anchor_index=t.anchor, anchor_request_id=a.request_id, image_source=source,
            parent_index=src, foreign_steps=d if (src is not None or start is not None) else 0, path=segs,
            start_origin=None if start is None else dict(start.origin, step=start.step))
