"""Re-judge stored generations that people rated, with any judge backend and model.

For every generation a person scored, the judge rates it (a) given that person's own Big-Five (an agent
that ``mirrors`` them) and (b) as each chosen preset persona, from the same delivery the person saw: the
prompt, the stored image, its description (or the probe's, as the service builds it), quality and delay.
So a researcher can compare a new LLM with the existing human labels without new participants.

Resumable: every rating is stored as soon as it arrives (one transaction each) and (agent, generation)
pairs that already have a rating are skipped, so an interrupted run continues where it stopped. A judge
that is unreachable (status ``unavailable``) stores nothing for that pair - the next run retries it, as it
retries the placeholders live rounds store (``unavailable``, ``pending``) - and several in a row stop the run
with a clear message; other failures (invalid reply, timeout, error) are
recorded as the judge's outcome, never replaced by a made-up score.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rlli.analysis.agreement import shuffle_partners
from rlli.personas import BigFive, Delivery, Judge, Persona
from rlli.session.raters import raters_for
from rlli.store.records import ParticipantRecord, RatingRecord, StoredGeneration
from rlli.store.repository import Store

MAX_UNAVAILABLE_IN_A_ROW = 3


class RejudgeError(RuntimeError):
    """The judge cannot be reached; the message says which and how to fix it."""


@dataclass(frozen=True)
class Task:
    generation: StoredGeneration
    persona: Persona
    agent: ParticipantRecord
    agent_id: str


@dataclass
class RejudgeReport:
    backend: str
    model: str
    generations: int = 0
    planned: int = 0
    already_rated: int = 0
    stored: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    not_stored_unavailable: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plan(store: Store, backend: str, model: str, presets: Sequence[Persona], own: bool = True,
         limit: int | None = None, shuffled: bool = False, seed: int = 0) -> tuple[list[Task], int, int]:
    """(tasks still to rate, generations considered, pairs already rated); generations in id order. The raters
    of each generation follow :func:`rlli.session.raters.raters_for` (the same rule as live rounds); a pair whose
    rating is a placeholder (unavailable, pending) is still to rate."""
    generations = store.generations(rated_by_humans=True)
    if limit is not None:
        generations = generations[:limit]
    candidates: list[Task] = []
    rated = {g.id: [(pid, None if t is None else BigFive(*t)) for pid, t in store.human_ratings(g.id)]
             for g in generations}
    profiles = {pid: t for people in rated.values() for pid, t in people if t is not None}
    partners = shuffle_partners(list(profiles), seed) if shuffled else {}
    for g in generations:
        people = rated[g.id] if own else []
        controls = [(partners[pid], profiles[partners[pid]]) for pid, _ in rated[g.id] if pid in partners]
        for rater in raters_for(presets, people=people, controls=controls):
            agent = rater.record(backend, model)
            candidates.append(Task(g, rater.persona, agent, store.participant_id("agent", agent.key)))
    done = store.rated_pairs({t.agent_id for t in candidates})
    todo = [t for t in candidates if (t.agent_id, t.generation.id) not in done]
    return todo, len(generations), len(candidates) - len(todo)


def delivery_of(store: Store, g: StoredGeneration) -> Delivery:
    """What the person was shown, rebuilt from the store (the same way the service builds deliveries)."""
    from rlli.personas.describe import make_delivery, read_png

    image = read_png(store.image_bytes(g.image_sha256))
    return make_delivery(g.prompt, image, quality=1.0 if g.quality is None else g.quality,
                         delay_s=0.0 if g.delay_s is None else g.delay_s, description=g.description or None)


def rejudge(store: Store, judge: Judge, presets: Sequence[Persona], *, own: bool = True, limit: int | None = None,
            workers: int = 1, progress: bool = True, shuffled: bool = False) -> RejudgeReport:
    """Rate every (persona, generation) pair not rated yet by this judge; store each rating as it arrives."""
    from tqdm import tqdm

    started = time.perf_counter()
    backend, model = judge.backend, judge.model
    todo, n_gen, done = plan(store, backend, model, presets, own, limit, shuffled)
    report = RejudgeReport(backend, model, n_gen, len(todo) + done, done)
    statuses: Counter[str] = Counter()
    known_agents: set[str] = set()
    deliveries: dict[int, Delivery] = {}
    unavailable_in_a_row = 0

    def rate(task: Task):
        if task.generation.id not in deliveries:
            deliveries[task.generation.id] = delivery_of(store, task.generation)
        return task, judge.rate(task.persona, deliveries[task.generation.id])

    bar = tqdm(total=len(todo), desc=f"rejudge {backend}/{model}", unit="rating", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for task, rating in pool.map(rate, todo):
            bar.update(1)
            statuses[rating.status] += 1
            if rating.status == "unavailable":
                report.not_stored_unavailable += 1
                unavailable_in_a_row += 1
                if unavailable_in_a_row >= MAX_UNAVAILABLE_IN_A_ROW:
                    pool.shutdown(wait=False, cancel_futures=True)
                    bar.close()
                    raise RejudgeError(f"the {backend} judge ({model}) is unavailable: {rating.reason}; "
                                       f"{report.stored} ratings were stored, run again to continue")
                continue
            unavailable_in_a_row = 0
            if task.agent_id not in known_agents:
                store.upsert_participant(task.agent)
                known_agents.add(task.agent_id)
            _, duplicate = store.add_rating(RatingRecord.from_rating(task.agent_id, task.generation.id, rating))
            report.stored += not duplicate
    bar.close()
    report.statuses = dict(statuses)
    report.seconds = round(time.perf_counter() - started, 3)
    return report
