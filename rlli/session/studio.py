"""The studio: visitors and personas join live rounds, rate, and see what the backend did.

Records live in :mod:`rlli.session.records`; storing a round in :mod:`rlli.session.recording`.

``ui`` calls this; this calls admission (:mod:`rlli.session.admission`), the backend that runs rounds
(:mod:`rlli.serve.backend`, which calls the one round function :func:`rlli.service.run_round`), the store,
and the agents' jobs (:mod:`rlli.session.agents`) with the raters :func:`rlli.session.raters.raters_for`
names. After a round is stored, agents rate each person's image in the background - as the person and as
the preset personas - and each persona's own image as that persona; a person sees the agents' scores only
after rating. Every failure a visitor can cause is a :class:`StudioError` whose message the page shows.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from rlli.config import Settings
from rlli.diffusion.engine import Request
from rlli.personas.judge import Persona
from rlli.serve.backend import Backend, BackendUnavailable, BatcherClosed, Job, RoundSlice, backend_for, fan_out
from rlli.service import Phase, RoundReport, reallocate
from rlli.session.admission import MAX_RAW_PROMPT, RateLimiter, StudioError, check_pasted, check_prompt
from rlli.session.agents import BUSY, AgentJobs
from rlli.session.raters import Rater, raters_for
from rlli.session.recording import Rendezvous, delivery_of, has_world, record_round, storage_errors
from rlli.session.records import AgentScore, Ask, Delivered, RoundView, Visitor, new_visitor_key

log = logging.getLogger(__name__)

JUDGE_WAIT_S = 120.0  # how long a rating waits for the agents' scores of the same image
ROUND_PHASES: tuple[Phase, ...] = (Phase.GROUPING, Phase.FORK_DECISION, Phase.ALLOCATION, Phase.GENERATION,
                                   Phase.SCORING, Phase.STORAGE)  # what a person's progress bar shows, in order
SHUTTING_DOWN = "The server is stopping and takes no new requests; please come back in a minute."


class Studio:
    def __init__(self, settings: Settings | None = None, store=None, backend: Backend | None = None):
        self.settings = settings or Settings()
        self.backend = backend or backend_for(self.settings)
        self._store = store
        self._store_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._round_no = 0
        self._rounds: dict[str, Rendezvous] = {}  # round id -> its parties meeting to store it once
        self._round_order: deque[str] = deque()
        self.recent: deque[RoundView] = deque(maxlen=20)
        self.limiter = RateLimiter(self.settings.rate_limit_per_min)
        self.agents: AgentJobs[list[AgentScore]] = AgentJobs(workers=1, backlog=self.settings.agent_backlog)
        self._judge = None
        self._authors = None
        self._closed = threading.Event()

    # ---- parts, loaded on first use ----------------------------------------------------------------
    def store(self):
        """The rating store (migrated on first open); a broken URL is a clear :class:`StudioError`."""
        with self._store_lock:
            if self._store is None:
                from rlli.store import Store, StoreError

                try:
                    self._store = Store.from_settings(self.settings)
                except StoreError as e:
                    raise StudioError(f"The rating store is not available: {e}") from None
            return self._store

    def judge(self):
        if self._judge is None:
            from rlli.personas import get_judge

            self._judge = get_judge(self.settings.persona_judge, self.settings)
        return self._judge

    def presets(self) -> list[Persona]:
        from rlli.personas import load_presets

        return load_presets()

    def persona(self, name: str) -> Persona:
        from rlli.personas import PersonaError, find_preset

        try:
            return find_preset(name)
        except PersonaError as e:
            raise StudioError(str(e)) from None

    # ---- requests -----------------------------------------------------------------------------------
    def author_prompts(self, names: list[str], seed: int, visitor_prompt: str | None = None) -> list[Ask]:
        """One prompt per named persona, never waiting for an LLM.

        With ``visitor_prompt`` (personas invited into a person's round) on a backbone with its own world, each
        persona writes *its version of the visitor's prompt*: the same subject, every stated attribute kept,
        plus the look its traits favour (:func:`rlli.diffusion.tiny.variants.persona_version`) - the paper's
        Fig. 1, and a light edit the fork decision lets share. Otherwise each persona's own request comes from
        the pool its LLM author fills in the background, or, when none is ready, is composed from its stated
        preferences. Each :class:`Ask` says how it was written (``written_by``)."""
        personas = [self.persona(n) for n in names]
        asks = []
        if visitor_prompt is not None and has_world(self.settings):
            import numpy as np

            from rlli.diffusion.tiny.variants import persona_version
            from rlli.personas.author import compose_scene

            for i, p in enumerate(personas):
                rng = np.random.default_rng([seed, i, sum(map(ord, p.name))])
                v = persona_version(visitor_prompt, compose_scene(p, rng), seed + i)
                asks.append(Ask(v.text, seed=(seed + 7919 * (i + 1)) % 2**31, persona=p,
                                written_by="composed: the persona's version of your prompt"))
            return asks
        pool = self._author_pool(personas)
        for i, p in enumerate(personas):
            a = pool.take_or_compose(p, seed + i)
            how = "llm" if a.written_by == "llm" else "composed from the persona's preferences (no LLM ready)"
            asks.append(Ask(a.prompt, seed=(seed + 7919 * (i + 1)) % 2**31, persona=p, written_by=how))
        return asks

    def _author_pool(self, personas: list[Persona]):
        """The background author pool (started on first use, so nobody's LLM runs before personas are asked for)."""
        with self._store_lock:
            if self._authors is None:
                from rlli.personas.author import Author, AuthorPool

                self._authors = AuthorPool(Author(self.settings), personas, size=2, seed=17)
            return self._authors

    def _admit(self, address: str | None) -> None:
        if self._closed.is_set():
            raise StudioError(SHUTTING_DOWN)
        self.limiter.check(address)

    def participate(self, visitor: Visitor, raw_prompt: str, invite: list[str] | None = None,
                    seed: int | None = None, address: str | None = None,
                    on_phase: Callable[[Phase], None] | None = None) -> list[Delivered]:
        """A person's request (and the prompts of any personas they invite) joins the next round.

        Returns the person's delivery first, then the invited personas'. ``address`` (the client's network
        address) is rate-limited by ``RLLI_RATE_LIMIT_PER_MIN``. ``on_phase(phase)`` hears each phase of the
        round as it starts (:data:`ROUND_PHASES`)."""
        prompt = check_prompt(raw_prompt, self.settings)
        self._admit(address)
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        party = [Ask(prompt, seed, visitor=visitor)] + self.author_prompts(list(invite or []), seed, prompt)
        results = self.run_party(party, on_phase)
        unknown = self.vocabulary_notice(prompt)
        if unknown:
            results[0] = replace(results[0], notices=(unknown, *results[0].notices))
        return results

    def vocabulary_notice(self, prompt: str) -> str | None:
        """On a backbone with its own world: a notice when the prompt names nothing it knows (no object, colour,
        place, time, ...), since the picture then cannot follow it."""
        from rlli.diffusion import get_backbone

        world = get_backbone(self.settings).world
        if world is None or world.knows(prompt):
            return None
        return ("The embedded model knows none of the words in this prompt, so the picture is a random scene "
                "of its small world (see 'What the embedded model can draw').")

    def persona_round(self, names: list[str], seed: int = 0, address: str | None = None,
                      on_phase: Callable[[Phase], None] | None = None) -> list[Delivered]:
        """The named personas write prompts and run a round together."""
        if not names:
            raise StudioError("Pick at least one persona.")
        self._admit(address)
        return self.run_party(self.author_prompts(names, int(seed)), on_phase)

    def shared_round(self, text, seed=0, compare: bool = True, address: str | None = None,
                     on_phase: Callable[[Phase], None] | None = None) -> RoundView:
        """The Shared round tab: pasted prompts (one per line; request i uses seed + i) run as one round of their
        own, between the live rounds (same lock, same rate limit), stored like every round."""
        prompts, first = check_pasted(text, seed, self.settings)
        self._admit(address)
        asks = [Ask(p, first + i) for i, p in enumerate(prompts)]
        job = Job(tuple(Request(a.prompt, a.seed, str(i)) for i, a in enumerate(asks)), tuple(a.traits for a in asks))
        try:
            report = self.backend.exclusive(job, compare=bool(compare), on_phase=on_phase)
        except BatcherClosed:
            raise StudioError(SHUTTING_DOWN) from None
        except BackendUnavailable as e:
            raise StudioError(str(e)) from None
        self._finish(RoundSlice(report, tuple(range(len(asks)))), asks, on_phase, rate=False)
        return next(v for v in list(self.recent) if v.report.round_id == report.round_id)

    def run_party(self, party: list[Ask], on_phase: Callable[[Phase], None] | None = None) -> list[Delivered]:
        """A party's requests join the next round of the backend; the round is stored once, then agents rate."""
        job = Job(tuple(Request(a.prompt, a.seed, str(i)) for i, a in enumerate(party)), tuple(a.traits for a in party))
        try:
            got = self.backend.submit(job, on_phase)
        except BatcherClosed:
            raise StudioError(SHUTTING_DOWN) from None
        except BackendUnavailable as e:
            raise StudioError(str(e)) from None
        return self._finish(got, party, on_phase)

    # ---- after a round ------------------------------------------------------------------------------
    def _finish(self, got: RoundSlice, party: list[Ask], on_phase, rate: bool = True) -> list[Delivered]:
        """Store the round once (the last of its parties to arrive records every request in one transaction; the
        others wait for it), then start the agents on this party's deliveries."""
        report = got.report
        fan_out([on_phase] if on_phase is not None else [])(Phase.STORAGE)
        with self._count_lock:
            rv = self._rounds.get(report.round_id)
            if rv is None:
                self._round_no += 1
                rv = self._rounds[report.round_id] = Rendezvous(self._round_no, len(report.requests))
                self._round_order.append(report.round_id)
                while len(self._round_order) > 200:
                    self._rounds.pop(self._round_order.popleft(), None)
            for i, a in zip(got.indices, party):
                rv.asks[i] = a
            last = len(rv.asks) == rv.total and not rv.recording
            rv.recording = rv.recording or last
        if last:
            self._record_round(rv, report)
        elif not rv.done.wait(timeout=max(60.0, 4 * self.settings.round_window_s)):
            raise StudioError("This round could not be stored: another request of it never came back. Try again.")
        if rv.error is not None:
            raise rv.error
        deliveries = [rv.deliveries[i] for i in got.indices]
        if rate:
            for a, d in zip(party, deliveries):
                self.agents.submit(d.generation_id, lambda a=a, d=d: self._agents_rate(a, d),
                                   lambda a=a, d=d: self._record_pending(a, d))
        return deliveries

    def _record_round(self, rv: Rendezvous, report: RoundReport) -> None:
        try:
            asks = [rv.asks[i] for i in range(rv.total)]
            deliveries = [delivery_of(rv.number, a, report, i) for i, a in enumerate(asks)]
            with storage_errors("This round"):
                ids = record_round(self.store(), self.settings, asks, report, deliveries)
            rv.deliveries = [replace(d, generation_id=gid) for d, gid in zip(deliveries, ids.generation_ids)]
            with self._count_lock:
                self.recent.appendleft(RoundView(rv.number, time.time(), tuple(a.who for a in asks), report,
                                                 tuple(rv.deliveries)))
        except Exception as e:  # noqa: BLE001 - every party of the round hears it
            rv.error = e if isinstance(e, StudioError) else StudioError(f"This round could not be stored ({e}).")
        finally:
            rv.done.set()

    def reallocate(self, view: RoundView, policy_name: str, traits=None):
        """The allocation another policy would give the same round (same fork decisions, links and personas);
        with ``traits`` (one Big-Five per request), the same round with the requesters' personalities changed."""
        from rlli.policy.api import POLICY_NAMES

        if policy_name not in POLICY_NAMES:
            raise StudioError(f"Unknown policy {policy_name!r}; choose one of {', '.join(POLICY_NAMES)}.")
        try:
            return reallocate(view.report, policy_name, self.settings, traits=traits)
        except ValueError as e:
            raise StudioError(f"Cannot re-allocate this round: {e}") from e

    # ---- agents -------------------------------------------------------------------------------------
    def _raters(self, ask: Ask) -> list[Rater]:
        if ask.persona is not None:
            return raters_for([], persona=ask.persona)
        v = ask.visitor
        pid = self.store().participant_id("human", v.key)
        return raters_for(self.presets(), people=[(pid, v.traits)])

    def _agents_rate(self, ask: Ask, d: Delivered) -> list[AgentScore]:
        """Agents rate one delivery (see :func:`rlli.session.raters.raters_for`); every rating is stored, and one
        that could not be had (judge unavailable) is a placeholder ``rejudge`` retries."""
        from rlli.personas.describe import make_delivery
        from rlli.store import RatingRecord

        judge = self.judge()
        u = d.result.allocation
        delivery = make_delivery(d.prompt, d.image, quality=u.quality, delay_s=u.delay_s)
        store = self.store()
        raters = self._raters(ask)
        ratings = judge.rate_many([(r.persona, delivery) for r in raters])
        records = []
        for r, rating in zip(raters, ratings):
            pid = store.upsert_participant(r.record(rating.backend, rating.model))
            records.append(RatingRecord.from_rating(pid, d.generation_id, rating))
        store.add_ratings(records)
        return [AgentScore(r.persona.name, r.as_you, rating) for r, rating in zip(raters, ratings)]

    def _record_pending(self, ask: Ask, d: Delivered) -> None:
        """The agents' ratings of ``d`` as ``pending`` placeholders (the backlog was full, or the app stopped)."""
        from rlli.store import RatingRecord

        judge = self.judge()
        store = self.store()
        records = []
        for r in self._raters(ask):
            pid = store.upsert_participant(r.record(judge.backend, judge.model))
            records.append(RatingRecord(pid, d.generation_id, None, "not rated yet: the agents were busy or the "
                                        "server stopped; `rlli rejudge` rates it", "pending", judge.backend, judge.model,
                                        perception="none"))
        store.add_ratings(records)

    def agent_scores(self, generation_id: int, wait_s: float = JUDGE_WAIT_S) -> list[AgentScore] | str | None:
        """The agents' scores of one generation (waiting up to ``wait_s``): a list; None while they are still
        rating; :data:`rlli.session.agents.BUSY` when the agents were too busy and the ratings are pending."""
        return self.agents.result(int(generation_id), wait_s)

    # ---- ratings ------------------------------------------------------------------------------------
    def rate(self, visitor: Visitor, generation_id: int, score: int, reason: str = "") -> tuple[bool, str]:
        """Store a person's rating; (stored, message). A second rating of the same image is refused."""
        from rlli.prompts import clean_prompt
        from rlli.store import ParticipantRecord, RatingRecord

        try:
            score = int(score)
        except (TypeError, ValueError):
            raise StudioError("The rating must be a whole number from 1 to 10.") from None
        if not 1 <= score <= 10:
            raise StudioError("The rating must be from 1 to 10.")
        reason = clean_prompt(reason or "")
        if len(reason) > 500:
            raise StudioError(f"The reason has {len(reason)} characters; at most 500 are kept.")
        store = self.store()
        with storage_errors("Your rating"):
            pid = store.upsert_participant(ParticipantRecord(
                "human", visitor.key, traits=visitor.traits.as_tuple() if visitor.traits else None,
                instrument=visitor.instrument))
            try:
                _, duplicate = store.add_rating(RatingRecord(pid, int(generation_id), score, reason))
            except ValueError as e:
                raise StudioError(f"This rating cannot be stored: {e}") from None
        if duplicate:
            return False, "You already rated this image; the first rating counts."
        return True, "Your rating is stored."

    def next_to_rate(self, visitor: Visitor):
        """(generation id, prompt, image) of an image an earlier visitor received and rated, for this visitor to rate
        too (the human-human ceiling), or None when there is none."""
        from rlli.personas.describe import read_png

        store = self.store()
        with storage_errors("The next image"):
            found = store.next_to_rate(store.participant_id("human", visitor.key))
            if not found:
                return None
            g = found[0]
            return g.id, g.prompt, read_png(store.image_bytes(g.image_sha256))

    # ---- stopping -----------------------------------------------------------------------------------
    def close(self, grace_s: float | None = None) -> dict:
        """Stop cleanly: admit nothing more, let the running round finish (waiting requests are told the server
        is stopping), give the agents ``grace_s`` and record the rest as pending. Idempotent."""
        if self._closed.is_set():
            return {}
        self._closed.set()
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        t0 = time.monotonic()
        self.backend.close(timeout_s=grace)
        out = self.agents.close(grace_s=max(0.5, grace - (time.monotonic() - t0)))
        if self._authors is not None:  # its thread may be inside an LLM call: do not wait for it
            threading.Thread(target=self._authors.close, daemon=True, name="stop-authors").start()
        log.info("studio stopped: %s", out)
        return out


__all__ = ["Ask", "AgentScore", "BUSY", "Delivered", "MAX_RAW_PROMPT", "ROUND_PHASES", "RoundView", "Studio",
           "StudioError", "Visitor", "new_visitor_key"]
