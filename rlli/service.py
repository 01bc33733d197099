"""The round orchestrator: prompts -> groups -> sharing plan -> shared generation -> report.

The UI and the CLI call this layer; it ties grouping, the engine, the calibration table and the
fidelity metric together and turns every failure the user can cause into a :class:`PromptError`
with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.calibration import load_table, plan_groups
from rlli.diffusion.engine import Engine, Output, Request, expected_passes, independent_groups
from rlli.grouping import group_prompts
from rlli.prompts import PromptError, parse_prompts


@dataclass
class RoundReport:
    prompts: list[str]
    groups: list[dict]
    outputs: list[Output]
    independent: list[Output] | None
    fidelity: list[float | None]
    fidelity_independent: list[float | None] | None
    accounting: dict
    settings: dict = field(default_factory=dict)

    def rows(self) -> list[list]:
        """One row per request: prompt, group, similarity to the anchor, shared/own steps, hand-off, fidelity."""
        sim = {m: s for g in self.groups for m, s in zip(g["member_index"], g["similarity"])}
        out = []
        for i, o in enumerate(self.outputs):
            f = self.fidelity[i]
            fi = self.fidelity_independent[i] if self.fidelity_independent else None
            out.append([o.prompt, o.group + 1, sim.get(i), o.shared_steps, o.own_steps,
                        round(o.handoff_bytes / 1024, 1), None if f is None else round(f, 3),
                        None if fi is None else round(fi, 3)])
        return out

    def group_rows(self) -> list[list]:
        """One row per group: number, anchor, size, least similarity to the anchor, shared steps."""
        return [[g["group"], g["anchor"], len(g["members"]), min(g["similarity"]), g["shared_steps"]]
                for g in self.groups]


def _fidelity(images: np.ndarray, prompts: list[str], backbone_name: str) -> list[float | None]:
    """Fidelity on the embedded model's world; nothing for other backbones or without the probe."""
    from rlli.diffusion.fidelity import fidelity_if_probe

    found = fidelity_if_probe(images, prompts) if backbone_name.startswith("tiny-t2i") else None
    return found or [None] * len(prompts)


class StudioService:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    def backbone(self):
        return get_backbone(self.settings)

    def run_round(self, text: str, seed: int = 0, compare: bool = False) -> RoundReport:
        s = self.settings
        prompts = parse_prompts(text, s.max_prompts, s.max_prompt_chars)
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise PromptError("The seed must be a whole number.") from None
        if not 0 <= seed < 2**31:
            raise PromptError("The seed must be between 0 and 2147483647.")
        backbone = self.backbone()
        engine = Engine(backbone)
        plan = plan_from(s)
        requests = [Request(p, seed=seed + i, request_id=str(i)) for i, p in enumerate(prompts)]
        groups = group_prompts(prompts, s.group_threshold, s.text_model)
        table = load_table(s.calibration, backbone.name, plan.scheduler)
        plans = plan_groups(groups, plan.steps, table, s.quality_tolerance)
        shared = engine.run(requests, plans, plan)
        images = np.stack([o.image for o in shared.outputs])
        fid = _fidelity(images, prompts, backbone.name)
        accounting = {"denoiser_passes": shared.denoiser_passes,
                      "denoiser_passes_independent": expected_passes(independent_groups(len(prompts)), plan),
                      "wall_s": {k: round(v, 3) for k, v in shared.wall_s.items()},
                      "handoff_bytes": sum(o.handoff_bytes for o in shared.outputs),
                      "backbone": backbone.name, "steps": plan.steps, "scheduler": plan.scheduler,
                      "calibrated": table is not None}
        indep, fid_i = None, None
        if compare:
            res = engine.run(requests, independent_groups(len(requests)), plan)
            indep = res.outputs
            fid_i = _fidelity(np.stack([o.image for o in indep]), prompts, backbone.name)
            accounting["wall_independent_s"] = round(res.wall_s["total"], 3)
            accounting["denoiser_passes_independent"] = res.denoiser_passes
        group_view = [{"group": gi + 1, "anchor": prompts[p.anchor], "members": [prompts[m] for m in p.members],
                       "member_index": list(p.members), "similarity": [round(x, 3) for x in g.similarity],
                       "shared_steps": p.shared_steps}
                      for gi, (g, p) in enumerate(zip(groups, plans))]
        return RoundReport(prompts, group_view, shared.outputs, indep, fid, fid_i, accounting, s.public_dict())
