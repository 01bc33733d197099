"""What the backbone itself says about sharing: members' predictions on the anchor's latent.

For a group, the anchor's trajectory starts from the anchor's seed; after ``probe_step`` shared steps
(guided, with the anchor's prompt - the steps its prefix runs anyway) every member's *conditional*
prediction on that same latent is turned into a predicted clean sample x0, and compared with the
anchor's. A rewording predicts nearly the same x0; a changed colour, object, place or time of day
predicts a visibly different one. The evidence per member is a high quantile (default the 98th
percentile) of ``|x0_member - x0_anchor|`` over the latent's elements: it reads the backbone's own
predictions, never the prompt's words, so it works the same on any backbone.

Cost, counted honestly by :func:`probe_passes`: ``c * probe_step`` passes per probed group for the
anchor's steps (recomputed here, not borrowed from the round) plus one conditional pass per member
(the anchor included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlli.diffusion.backbone import cond_rows
from rlli.diffusion.engine import Engine, Plan, Request


@dataclass(frozen=True)
class ProbeGroup:
    members: tuple[int, ...]  # request indices
    anchor: int


@dataclass(frozen=True)
class ProbeResult:
    disagreement: dict[int, float]  # request index -> quantile of |x0_member - x0_anchor| (0 for anchors)
    passes: int
    wall_s: float
    # (i, j) with i < j, both in one probed group -> the same quantile between the two members' x0 on the anchor's
    # latent: read by the split tree (no extra passes: every member's x0 is computed once)
    pairwise: dict[tuple[int, int], float] = field(default_factory=dict)

    def between(self, i: int, j: int) -> float:
        if i == j:
            return 0.0
        return self.pairwise[(min(i, j), max(i, j))]


def probe_passes(sizes: list[int], plan: Plan, probe_step: int) -> int:
    """Passes the probe costs for groups of these sizes (groups of one are not probed)."""
    return sum(plan.passes_per_step * probe_step + n for n in sizes if n > 1)


def _x0(scheduler, model_input: torch.Tensor, out: torch.Tensor, t) -> torch.Tensor:
    """The predicted clean sample for a model output on the (scaled) model input at timestep t."""
    kind = scheduler.config.prediction_type
    a = scheduler.alphas_cumprod.to(out.device)[int(t)].float()
    if kind == "epsilon":
        x0 = (model_input - (1 - a).sqrt() * out) / a.sqrt()
    elif kind == "v_prediction":
        x0 = a.sqrt() * model_input - (1 - a).sqrt() * out
    else:  # "sample"
        x0 = out
    if scheduler.config.get("clip_sample") or scheduler.config.get("thresholding"):
        limit = float(scheduler.config.get("clip_sample_range") or scheduler.config.get("sample_max_value") or 1.0)
        x0 = x0.clamp(-limit, limit)
    return x0


@torch.no_grad()
def x0_disagreement(engine: Engine, requests: list[Request], groups: list[ProbeGroup], plan: Plan,
                    probe_step: int = 1, quantile: float = 0.98) -> ProbeResult:
    """Each member's x0 disagreement with its anchor after ``probe_step`` shared steps (see the module)."""
    import time

    t0 = time.perf_counter()
    probed = [g for g in groups if len(g.members) > 1]
    out = {k: 0.0 for g in groups for k in g.members}
    if not probed:
        return ProbeResult(out, 0, 0.0)
    if not 0 <= probe_step < plan.steps:
        raise ValueError(f"the probe step must be in 0..{plan.steps - 1}, not {probe_step}")
    prompts = sorted({requests[k].prompt for g in probed for k in g.members})
    row = {p: i for i, p in enumerate(prompts)}
    cond, uncond = engine.encode(prompts)
    device = cond[next(iter(cond))].device
    branches = [engine.start(requests[g.anchor].seed, plan, row[requests[g.anchor].prompt], device) for g in probed]
    passes = 0
    for _ in range(probe_step):
        passes += engine._advance(branches, cond, uncond, plan)
    xs, ts, rows, owner = [], [], [], []
    for gi, (g, b) in enumerate(zip(probed, branches)):
        t = b.scheduler.timesteps[b.step]
        x = b.scheduler.scale_model_input(b.latent, t)
        order = [g.anchor] + [k for k in g.members if k != g.anchor]
        for k in order:
            xs.append(x)
            ts.append(torch.as_tensor(t))
            rows.append(row[requests[k].prompt])
            owner.append((gi, k))
    x = torch.cat(xs)
    t = torch.stack(ts).reshape(-1).to(device)
    pred = engine.backbone.predict(x, t, cond_rows(cond, rows))
    passes += len(rows)
    x0 = torch.stack([_x0(branches[gi].scheduler, x[i:i + 1], pred[i:i + 1], t[i])[0] for i, (gi, _) in
                      enumerate(owner)])
    anchor_x0 = {}
    for i, (gi, k) in enumerate(owner):
        if k == probed[gi].anchor:
            anchor_x0[gi] = x0[i]
    for i, (gi, k) in enumerate(owner):
        if k != probed[gi].anchor:
            d = (x0[i] - anchor_x0[gi]).abs().flatten().float()
            out[k] = float(torch.quantile(d, quantile))
    pairwise: dict[tuple[int, int], float] = {}
    for i, (gi, k) in enumerate(owner):
        for j, (gj, m) in enumerate(owner):
            if gi == gj and k < m:
                pairwise[(k, m)] = out[m] if k == probed[gi].anchor else out[k] if m == probed[gi].anchor else \
                    float(torch.quantile((x0[i] - x0[j]).abs().flatten().float(), quantile))
    return ProbeResult(out, passes, time.perf_counter() - t0, pairwise)
