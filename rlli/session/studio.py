"""The app's session layer: visitors and personas join live rounds, rate, and find their data.

``ui`` calls this; this calls the round pipeline (grouping -> fork decision -> policy allocation ->
shared generation; :mod:`rlli.policy.sharing`, :mod:`rlli.policy.api`), the judges
(:mod:`rlli.personas`) and the store (:mod:`rlli.store`).

A round collects requests from every browser session through a :class:`~rlli.session.batcher.RoundBatcher`
(a window of seconds or K requests), so concurrent visitors share steps. After the images are
stored, agents rate each person's image in the background - as the person (given their own Big-Five)
and as the preset personas - and each persona's own image as that persona; a person sees the agents'
scores only after rating. Every failure a visitor can cause is a :class:`StudioError` whose message
the page shows as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlli.config import Settings
from rlli.personas.judge import BigFive, Persona, Rating
from rlli.prompts import clean_prompt
from rlli.service import PHASES, RoundReport, StudioService
from rlli.session.batcher import RoundBatcher

log = logging.getLogger(__name__)

ROUND_PHASES = (*PHASES, "storage")  # what a person's progress bar shows, in order
MAX_RAW_PROMPT = 2000  # characters accepted from the page before any cleaning (the cleaned limit is a setting)
JUDGE_WAIT_S = 120.0  # how long a rating waits for the agents' scores of the same image


class StudioError(ValueError):
    """A problem the visitor can fix or should know about; the message is shown as it is (escaped)."""


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


@dataclass(frozen=True)
class Visitor:
    """One browser: an anonymous token kept in the browser (or a Hugging Face login), and its profile."""

    key: str
    traits: BigFive | None = None
    instrument: str = ""  # "tipi" when the questionnaire was taken

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not 8 <= len(self.key) <= 200:
            raise StudioError("This browser has no valid visitor id; reload the page.")


def new_visitor_key() -> str:
    return "browser:" + secrets.token_urlsafe(18)


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds for each key (0 = no limit); keys are hashed addresses."""

    def __init__(self, limit: int, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, address: str | None) -> bool:
        if not self.limit or not address:
            return True
        key = hashlib.sha256(address.encode()).hexdigest()  # raw addresses are not kept, even in memory
        now = time.monotonic()
        with self._lock:
            q = self._events.setdefault(key, deque())
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True


@dataclass(frozen=True)
class Ask:
    """One request into a round: a person's prompt, or a persona's."""

    prompt: str
    seed: int
    visitor: Visitor | None = None
    persona: Persona | None = None
    on_phase: Callable[[str], None] | None = None  # told when each phase of its round starts (progress bars)

    @property
    def who(self) -> str:
        return self.persona.name if self.persona else "you"

    @property
    def traits(self) -> BigFive:
        if self.persona is not None:
            return self.persona.traits
        return self.visitor.traits if self.visitor and self.visitor.traits else BigFive()


@dataclass
class Delivered:
    """What one request got, as the page shows it."""

    round_no: int
    generation_id: int
    request_index: int
    who: str
    prompt: str
    image: np.ndarray
    group_no: int
    group_size: int
    anchor_prompt: str
    is_anchor: bool
    shared_steps: int
    max_shared_steps: int
    steps: int
    image_source: str
    noise_seed: int
    bandwidth_share: float
    compute_share: float
    delay_s: float
    delays: dict[str, float]
    energy_j: float
    predicted_quality: float
    fidelity: float | None
    policy: str
    notices: list[str] = field(default_factory=list)


@dataclass
class RoundView:
    """A finished round for the System tab."""

    number: int
    finished: float
    who: list[str]
    report: RoundReport
    traits: list[BigFive]
    deliveries: list[Delivered]


@dataclass(frozen=True)
class AgentScore:
    persona: str
    as_you: bool
    rating: Rating


class Studio:
    def __init__(self, settings: Settings | None = None, store=None, service: StudioService | None = None):
        self.settings = settings or Settings()
        self.service = service or StudioService(self.settings)
        self._store = store
        self._store_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.batcher: RoundBatcher[list[Ask], list[Delivered]] = RoundBatcher(
            self._run_parties, self.settings.round_window_s, self.settings.round_max_requests)
        self.recent: deque[RoundView] = deque(maxlen=20)
        self._round_no = 0
        self._judging: dict[int, Future] = {}
        self.limiter = RateLimiter(self.settings.rate_limit_per_min)
        self._judge_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agents")
        self._judge = None

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
    def check_prompt(self, raw: str) -> str:
        """One prompt from the page: the raw size checked before any cleaning, then cleaned and checked."""
        if not isinstance(raw, str):
            raise StudioError("The prompt must be text.")
        if len(raw) > MAX_RAW_PROMPT:
            raise StudioError(f"The prompt has {len(raw)} characters; the limit is {self.settings.max_prompt_chars}.")
        text = clean_prompt(raw)
        if not text:
            raise StudioError("Enter a prompt: a short description of the picture you want.")
        if len(text) > self.settings.max_prompt_chars:
            raise StudioError(f"The prompt has {len(text)} characters; the limit is {self.settings.max_prompt_chars}.")
        return text

    def author_prompts(self, names: list[str], seed: int) -> list[Ask]:
        """Each named persona writes one prompt through the LLM author; a failing persona is a StudioError."""
        from rlli.personas.author import Author
        from rlli.personas.llm import LLMError

        personas = [self.persona(n) for n in names]
        try:
            written = Author(self.settings).write_round(personas, seed)
        except LLMError as e:
            raise StudioError(f"A persona could not write a prompt: {e}") from None
        return [Ask(w.prompt, seed=(seed + 7919 * (i + 1)) % 2**31, persona=p)
                for i, (w, p) in enumerate(zip(written, personas))]

    def check_rate(self, address: str | None) -> None:
        if not self.limiter.allow(address):
            raise StudioError(f"Too many requests from your network address: at most {self.limiter.limit} a minute. "
                              "Please wait a moment.")

    def participate(self, visitor: Visitor, raw_prompt: str, invite: list[str] | None = None,
                    seed: int | None = None, address: str | None = None,
                    on_phase: Callable[[str], None] | None = None) -> list[Delivered]:
        """A person's request (and the prompts of any personas they invite) joins the next round.

        Returns the person's delivery first, then the invited personas'. ``address`` (the client's network
        address) is rate-limited by ``RLLI_RATE_LIMIT_PER_MIN``. ``on_phase(name)`` hears each phase of the
        round as it starts (:data:`ROUND_PHASES`)."""
        prompt = self.check_prompt(raw_prompt)
        self.check_rate(address)
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        party = [Ask(prompt, seed, visitor=visitor, on_phase=on_phase)] + self.author_prompts(list(invite or []), seed)
        results = self.batcher.submit(party)
        unknown = self.vocabulary_notice(prompt)
        if unknown:
            results[0].notices.insert(0, unknown)
        return results

    def vocabulary_notice(self, prompt: str) -> str | None:
        """On the embedded model: a notice when the prompt names nothing its world knows (no object, colour,
        place, time, ...), since the picture then cannot follow it."""
        if self.settings.backbone != "tiny":
            return None
        from rlli.diffusion.tiny.world import parse_prompt

        if parse_prompt(prompt):
            return None
        return ("The embedded model knows none of the words in this prompt, so the picture is a random scene "
                "of its small world (see 'What the embedded model can draw').")

    def persona_round(self, names: list[str], seed: int = 0, address: str | None = None) -> list[Delivered]:
        """The named personas write prompts and run a round together."""
        if not names:
            raise StudioError("Pick at least one persona.")
        self.check_rate(address)
        return self.batcher.submit(self.author_prompts(names, int(seed)))

    # ---- one round ----------------------------------------------------------------------------------
    def _run_parties(self, parties: list[list[Ask]]) -> list[list[Delivered]]:
        asks = [a for party in parties for a in party]
        deliveries = self.run_round(asks)
        out, i = [], 0
        for party in parties:
            out.append(deliveries[i:i + len(party)])
            i += len(party)
        return out

    def run_round(self, asks: list[Ask]) -> list[Delivered]:
        """Group, decide forks, allocate with the policy, generate, store; then agents rate in the background."""
        from rlli.diffusion.engine import Request

        store = self.store()
        requests = [Request(a.prompt, seed=a.seed, request_id=str(i)) for i, a in enumerate(asks)]
        traits = [a.traits for a in asks]
        listeners = [a.on_phase for a in asks if a.on_phase is not None]

        def phase(name: str) -> None:
            for tell in listeners:
                try:
                    tell(name)
                except Exception:  # a progress bar that fails must not fail the round
                    log.debug("a phase listener failed", exc_info=True)

        report = self.service.run_requests(requests, traits=traits, on_phase=phase)
        with self._count_lock:
            self._round_no += 1
            number = self._round_no
        deliveries = self._deliveries(number, asks, report)
        phase("storage")
        t = time.perf_counter()
        with storage_errors("This round"):
            ids = self._record(store, asks, report, deliveries)
        report.accounting["phases_s"]["storage"] = round(time.perf_counter() - t, 4)
        for d, gid in zip(deliveries, ids.generation_ids):
            d.generation_id = gid
        self.recent.appendleft(RoundView(number, time.time(), [a.who for a in asks], report, traits, deliveries))
        for a, d in zip(asks, deliveries):
            self._judging[d.generation_id] = self._judge_pool.submit(self._agents_rate, a, d)
        self._forget_old_judging()
        return deliveries

    def _forget_old_judging(self, keep: int = 2000) -> None:
        """Finished agent jobs beyond the newest ``keep`` are dropped (their ratings are in the store)."""
        if len(self._judging) <= keep:
            return
        for gid in sorted(self._judging)[:len(self._judging) - keep]:
            if self._judging[gid].done():
                del self._judging[gid]

    @staticmethod
    def _deliveries(number: int, asks: list[Ask], report) -> list[Delivered]:
        sizes = {g.number - 1: len(g.members) for g in report.groups}
        alloc = report.allocation.allocation
        out = []
        for i, (a, o) in enumerate(zip(asks, report.outputs)):
            u = alloc.users[i]
            mine = list(report.notices)
            if o.is_anchors_image:
                mine.append("You received the anchor's image: every step was shared with a different prompt.")
            out.append(Delivered(
                round_no=number, generation_id=-1, request_index=i, who=a.who, prompt=a.prompt, image=o.image,
                group_no=o.group + 1, group_size=sizes.get(o.group, 1), anchor_prompt=o.anchor_prompt,
                is_anchor=o.anchor_index == i, shared_steps=o.shared_steps,
                max_shared_steps=report.forks[i].max_shared_steps, steps=report.accounting["steps"],
                image_source=o.image_source, noise_seed=o.noise_seed, bandwidth_share=u.bandwidth_share,
                compute_share=u.compute_share, delay_s=u.delay_s,
                delays={"server": u.delay_server_s, "transmit": u.delay_tx_s, "device": u.delay_device_s},
                energy_j=u.energy_j, predicted_quality=u.quality, fidelity=report.fidelity[i],
                policy=alloc.policy, notices=mine))
        return out

    def _record(self, store, asks: list[Ask], report, deliveries: list[Delivered]):
        from rlli.personas.describe import describe_image
        from rlli.store import ParticipantRecord, RoundRecord

        participants = []
        for a in asks:
            v = a.visitor
            participants.append(None if v is None else store.upsert_participant(ParticipantRecord(
                "human", v.key, traits=v.traits.as_tuple() if v.traits else None, instrument=v.instrument)))
        tiny = str(report.accounting["backbone"]).startswith("tiny")
        extras = [{"description": describe_image(d.image, d.prompt) if tiny else "",
                   "fidelity": d.fidelity, "quality": d.predicted_quality, "bandwidth_share": d.bandwidth_share,
                   "compute_share": d.compute_share, "delay_s": d.delay_s, "delays": d.delays,
                   "energy_j": d.energy_j,
                   "extras": {"image_source": d.image_source, "noise_seed": d.noise_seed, "who": d.who,
                              "max_shared_steps": d.max_shared_steps}}
                  for d in deliveries]
        al = report.allocation
        record = RoundRecord.from_engine(
            report.outputs, report.groups, report.seed, participants=participants, extras=extras,
            similarity=[g.similarity for g in report.groups], policy=al.allocation.policy,
            backbone=str(report.accounting["backbone"]), steps=int(report.accounting["steps"]),
            settings=report.settings, accounting={k: v for k, v in report.accounting.items() if k != "anchors_image"})
        return store.record_round(record)

    def reallocate(self, view: RoundView, policy_name: str):
        """The allocation another policy would give the same round (same fork decisions, links and personas).

        The images stay those of the round as it ran; only the allocation and its figures are recomputed."""
        from rlli.policy.api import POLICY_NAMES, allocate_round

        if policy_name not in POLICY_NAMES:
            raise StudioError(f"Unknown policy {policy_name!r}; choose one of {', '.join(POLICY_NAMES)}.")
        r = view.report
        if policy_name == r.allocation.allocation.policy:
            return r.allocation
        return allocate_round(r.groups, r.forks, view.traits, self.settings, r.seed, r.payload_bytes,
                              self.service.policy(policy_name))

    # ---- agents -------------------------------------------------------------------------------------
    def _agents_rate(self, ask: Ask, d: Delivered) -> list[AgentScore]:
        """Agents rate one delivery: for a person, as that person and as every preset; for a persona, as itself."""
        from rlli.personas.describe import make_delivery
        from rlli.store import ParticipantRecord, RatingRecord

        judge = self.judge()
        delivery = make_delivery(d.prompt, d.image, quality=d.predicted_quality, delay_s=d.delay_s)
        store = self.store()
        if ask.persona is not None:
            raters = [(ask.persona, False, None)]
        else:
            human_id = store.participant_id("human", ask.visitor.key)
            raters = [(p, False, None) for p in self.presets()]
            if ask.visitor.traits is not None:
                raters.insert(0, (Persona("you (agent)", ask.visitor.traits, "an agent given your own Big-Five scores",
                                          instrument=ask.visitor.instrument or "tipi"), True, human_id))
        ratings = judge.rate_many([(p, delivery) for p, _, _ in raters])
        records = []
        for (p, _, mirrors), r in zip(raters, ratings):
            pid = store.upsert_participant(ParticipantRecord.agent(
                p.name, p.traits.as_tuple(), r.backend, r.model, mirrors=mirrors, instrument=p.instrument,
                description=p.description))
            records.append(RatingRecord.from_rating(pid, d.generation_id, r))
        store.add_ratings(records)
        return [AgentScore(p.name, as_you, r) for (p, as_you, _), r in zip(raters, ratings)]

    def agent_scores(self, generation_id: int, wait_s: float = JUDGE_WAIT_S) -> list[AgentScore] | None:
        """The agents' scores of one generation (waiting up to ``wait_s``); None while they are still rating."""
        job = self._judging.get(int(generation_id))
        if job is None:
            return []
        try:
            return job.result(timeout=wait_s)
        except TimeoutError:
            return None
        except Exception as e:  # a judge that broke: the person's rating is stored all the same
            log.error("agents could not rate generation %s: %s", generation_id, e)
            return []

    # ---- ratings ------------------------------------------------------------------------------------
    def rate(self, visitor: Visitor, generation_id: int, score: int, reason: str = "") -> tuple[bool, str]:
        """Store a person's rating; (stored, message). A second rating of the same image is refused."""
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

    # ---- data ---------------------------------------------------------------------------------------
    def my_ratings_file(self, visitor: Visitor) -> Path:
        """A CSV of this visitor's own ratings (with their context)."""
        store = self.store()
        from rlli.store.export import write_table

        frame = store.rating_frame(store.participant_id("human", visitor.key))
        return write_table(frame, Path(tempfile.mkdtemp(prefix="rlli-mine-")) / "my-ratings.csv", "csv")

    def check_admin(self, token: str) -> None:
        expected = self.settings.admin_token.get_secret_value()
        if not expected:
            raise StudioError("Admin functions are off: set RLLI_ADMIN_TOKEN on the server.")
        if not hmac.compare_digest(str(token or "").encode(), expected.encode()):
            raise StudioError("Wrong admin token.")

    def admin_export(self, token: str, fmt: str = "csv") -> Path:
        """Every rating with its context and the images, as one zip (admin only)."""
        import shutil

        from rlli.store.export import export

        self.check_admin(token)
        if fmt not in ("csv", "jsonl", "parquet"):
            raise StudioError("Choose csv, jsonl or parquet.")
        folder = Path(tempfile.mkdtemp(prefix="rlli-export-"))
        export(self.store(), folder / "export", fmt)
        return Path(shutil.make_archive(str(folder / "rlli-export"), "zip", folder / "export"))

    def admin_delete(self, token: str, participant_id: str) -> dict[str, int]:
        self.check_admin(token)
        pid = (participant_id or "").strip()
        if not pid:
            raise StudioError("Give the participant id to delete (from an export).")
        return self.store().delete_participant(pid)

    def agreement(self):
        """(pairs frame, table rows, figures) over everything stored."""
        from rlli.analysis.agreement import agreement_table, pair_ratings
        from rlli.analysis.figures import all_figures

        frame = self.store().rating_frame()
        pairs = pair_ratings(frame)
        rows = agreement_table(frame, resamples=min(self.settings.bootstrap_resamples, 300))
        return pairs, rows, all_figures(pairs, rows)


__all__ = ["Ask", "AgentScore", "Delivered", "ROUND_PHASES", "RoundView", "Studio", "StudioError", "Visitor",
           "new_visitor_key"]
