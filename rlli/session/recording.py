"""Storing a finished round: one transaction per round, the round stored once whatever the number of parties
in it (:class:`Rendezvous`), and every problem with the store as a clear :class:`StudioError`."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from rlli.config import Settings
from rlli.service import RoundReport
from rlli.session.admission import StudioError
from rlli.session.records import Ask, Delivered


@contextmanager
def storage_errors(what: str):
    """A locked or unreachable database, or a full disk, becomes a clear StudioError; nothing half-written
    remains (every unit of work is one transaction, images are written atomically before it)."""
    from rlli.store import StoreError

    try:
        yield
    except StoreError as e:
        raise StudioError(f"{what} could not be stored: {e}. Nothing was changed; try again in a moment.") from None
    except OSError as e:
        raise StudioError(f"{what} could not be stored: the server's disk refused the write ({e.strerror}). "
                          "Nothing was changed.") from None


@dataclass
class Rendezvous:
    """The parties of one round meeting so that the round is stored once, with every request's requester."""

    number: int
    total: int
    asks: dict[int, Ask] = field(default_factory=dict)
    recording: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    deliveries: list[Delivered] = field(default_factory=list)
    error: Exception | None = None


@dataclass(frozen=True)
class GroupShape:
    """A group as the store's round record reads it (members, anchor, the prefix's steps)."""

    members: tuple[int, ...]
    anchor: int
    shared_steps: int


def has_world(settings: Settings) -> bool:
    from rlli.diffusion import get_backbone

    return get_backbone(settings).world is not None


def delivery_of(number: int, ask: Ask, report: RoundReport, i: int) -> Delivered:
    """What request ``i`` of a stored round got, as the page shows it."""
    r = report.requests[i]
    notices = list(report.notices)
    if r.output.is_anchors_image:
        notices.append("You received the anchor's image: every step was shared with a different prompt.")
    return Delivered(round_no=number, generation_id=-1, who=ask.who, result=r, group=report.groups[r.group],
                     anchor_prompt=r.output.anchor_prompt, steps=report.accounting.steps,
                     policy=report.accounting.policy, notices=tuple(notices), written_by=ask.written_by)


def record_round(store, settings: Settings, asks: list[Ask], report: RoundReport, deliveries: list[Delivered]):
    """Store a finished round in one transaction: its requesters, groups, every image with its allocation and
    context (a backbone with its own world also stores the probe's description of each image)."""
    from rlli.personas.describe import describe_image
    from rlli.store import ParticipantRecord, RoundRecord

    participants = []
    for a in asks:
        v = a.visitor
        participants.append(None if v is None else store.upsert_participant(ParticipantRecord(
            "human", v.key, traits=v.traits.as_tuple() if v.traits else None, instrument=v.instrument)))
    world = has_world(settings)
    log = report.allocation.log
    extras = []
    for a, d in zip(asks, deliveries):
        u = d.result.allocation
        at = log.slot_of(d.result.index) if log is not None else None
        extras.append({
            "description": describe_image(d.image, d.prompt) if world else "", "fidelity": d.result.fidelity,
            "quality": u.quality, "bandwidth_share": u.bandwidth_share, "compute_share": u.compute_share,
            "delay_s": u.delay_s, "delays": {"server": u.delay_server_s, "transmit": u.delay_tx_s,
                                             "device": u.delay_device_s},
            "energy_j": u.energy_j,
            "extras": {"image_source": d.result.output.image_source, "noise_seed": d.result.output.noise_seed,
                       "who": d.who, "max_shared_steps": d.result.fork.max_shared_steps,
                       "written_by": a.written_by, "traits": list(report.traits[d.result.index].as_tuple()),
                       "policy_slot": None if at is None else {
                           "chunk": at[0], "slot": at[1],
                           "propensity": log.chunks[at[0]].propensity[at[1]]}}})
    record = RoundRecord.from_engine(
        report.outputs, [GroupShape(g.members, g.anchor, g.prefix_steps) for g in report.groups], report.seed,
        participants=participants, extras=extras, similarity=[g.similarity for g in report.groups],
        policy=report.accounting.policy, backbone=report.accounting.backbone, steps=report.accounting.steps,
        settings=report.settings, accounting=_accounting_json(report))
    return store.record_round(record)


def _accounting_json(report: RoundReport) -> dict:
    from dataclasses import asdict

    a = report.accounting
    out = asdict(a)
    out["energy_j"] = {"policy": round(report.allocation.allocation.energy_j, 3),
                       "no_sharing": round(report.allocation.no_sharing.energy_j, 3),
                       "equal_split": round(report.allocation.equal.energy_j, 3)}
    out["round_id"] = report.round_id
    alloc = report.allocation
    out["energy_server_j"] = round(alloc.allocation.energy_server_j, 6)
    out["energy_total_j"] = alloc.allocation.energy_j  # unrounded: a reward rebuilt from the store uses it
    out["energy_price"] = None if alloc.log is None else alloc.log.energy_price
    out["policy_log"] = None if alloc.log is None else alloc.log.as_dict()  # logged bandit feedback (offpolicy)
    out["learned_from"] = alloc.learned_from
    return out
