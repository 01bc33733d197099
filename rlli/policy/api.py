"""The policy API the service calls: build a round's state, load a policy by name, allocate, compare.

    live = build_round_state(groups, forks, traits, settings, seed, payload_bytes=engine_bytes)
    policy = load_policy(settings.policy, settings)     # never fails: falls back to greedy with a notice
    alloc = policy.allocate(live)                       # per-user bandwidth, compute, shared steps, delays, energy, QoE
    figures = compare(live, policy)                     # the same under no sharing and under an equal split

:func:`allocate_round` does all of that in one call and gives the engine's per-member choice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from rlli.network.allocation import Outcome, evaluate, map_actions
from rlli.network.params import SystemParams
from rlli.network.state import OBS_VERSIONS, RoundState, empty_state, encode, obs_dim, sample_links
from rlli.policy.baselines import BASELINES
from rlli.policy.forks import check_forks

log = logging.getLogger(__name__)

POLICY_NAMES: tuple[str, ...] = ("gddpg", "ddpg", "gddpg_li", "equal", "random", "greedy", "no_sharing", "oracle",
                                 "fork_max", "best_found")
LEARNED: tuple[str, ...] = ("gddpg", "ddpg", "gddpg_li")  # gddpg_li: G-DDPG trained on the LLM judge's reward model
PROPENSITY_DRAWS = 64  # M: draws of a sampled policy (G-DDPG's chain) per logged chunk
SMOOTHING = 1.0  # one pseudo-draw spread evenly over a member's 0..cap: a sampled policy's frequencies are never 0
PROPENSITY_FLOOR = 1e-3  # no per-member probability below this
EXPLORE_STREAM = 0x5EED  # the exploration draws' own random stream (the round's seed, this)
LOG_VERSION = 2  # 2: smoothing is one pseudo-draw spread over 0..cap


@dataclass(frozen=True)
class Notice:
    """Something the user must see: e.g. a learned policy that could not load (greedy runs instead)."""

    kind: str  # "fallback" (greedy runs instead) or "params" (trained under other parameters, or without its critic)
    message: str


@dataclass(frozen=True)
class UserAllocation:
    request_index: int
    group: int
    is_anchor: bool
    shared_steps: int
    max_shared_steps: int
    bandwidth_share: float  # of the round's band (0 for users that receive no hand-off)
    bandwidth_hz: float
    compute_share: float  # of the server, held by this user's group prefix (0 when sharing nothing)
    compute_hz: float
    channel_gain_db: float
    device_ghz: float
    quality: float  # predicted relative quality at the shared steps
    delay_server_s: float
    delay_tx_s: float
    delay_device_s: float
    delay_s: float
    energy_j: float  # this user's device and transmit energy
    qoe: float  # the parametric trait judge's prediction (1..10)


@dataclass(frozen=True)
class RoundAllocation:
    policy: str
    users: list[UserAllocation]  # in request order
    total_qoe: float
    energy_j: float  # all of it: devices, transmissions and the server's prefixes
    energy_server_j: float
    reward: float  # total QoE - energy price x energy
    mean_delay_s: float
    decision_ms: float
    notice: Notice | None = None

    def shared_steps(self) -> dict[int, int]:
        """Request index -> shared steps: the engine's per-member choice (sharing.member_plan's ``choice``)."""
        return {u.request_index: u.shared_steps for u in self.users}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["notice"] = None if self.notice is None else asdict(self.notice)
        return d


@dataclass
class Chunk:
    """Up to k_max users of a round with their share of the band and of the server."""

    state: RoundState  # batch of one
    params: SystemParams
    slots: list[int]  # request index per slot, -1 for empty slots
    round_groups: list[int]  # the round's group number per slot (-1 for empty slots)


@dataclass
class LiveRound:
    chunks: list[Chunk]
    n_requests: int
    seed: int
    params: SystemParams
    forks: list = field(default_factory=list)


def _members(g) -> tuple[int, ...]:
    return tuple(int(k) for k in (g.members if hasattr(g, "members") else g))


def _traits(t) -> tuple[float, ...]:
    vals = t.as_tuple() if hasattr(t, "as_tuple") else tuple(float(v) for v in t)
    if len(vals) != 5 or not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in vals):
        raise ValueError(f"Big-Five traits must be 5 numbers in [0, 1], got {vals}")
    return vals


def _pack(groups: list[tuple[int, ...]], k_max: int) -> list[list[int]]:
    """Requests in chunks of at most k_max, whole groups together where they fit (first fit, larger first)."""
    chunks: list[list[int]] = []
    for members in sorted(groups, key=len, reverse=True):
        for start in range(0, len(members), k_max):
            part = list(members[start:start + k_max])
            home = next((c for c in chunks if len(c) + len(part) <= k_max), None)
            if home is None:
                chunks.append(part)
            else:
                home.extend(part)
    return chunks


def build_round_state(groups, forks: list, traits: list, settings=None, seed: int = 0,
                      payload_bytes: int | None = None, params: SystemParams | None = None) -> LiveRound:
    """A live round for the policies: the fork decisions and personas of K requests, plus sampled
    links (distance, Rayleigh fading, device compute; seeded by ``seed``).

    ``groups``: the round's groups (objects with ``.members`` or sequences of request indices);
    ``forks``: one MemberFork per request; ``traits``: one BigFive (or 5 numbers) per request.
    Rounds larger than k_max are allocated in chunks of whole groups, each with its users' share of
    the band and the server (a group larger than k_max is split; each part runs its own prefix).
    """
    if params is None:
        if settings is None:
            from rlli.config import Settings

            settings = Settings()
        params = SystemParams.from_settings(settings, payload_bytes)
    elif payload_bytes is not None:
        params = params.with_(payload_bytes=int(payload_bytes))
    n = len(forks)
    check_forks(forks, params.steps)
    if len(traits) != n:
        raise ValueError(f"need one personality per request: {n} requests, {len(traits)} trait vectors")
    members = [_members(g) for g in groups]
    if sorted(k for m in members for k in m) != list(range(n)):
        raise ValueError("the groups must cover every request exactly once")
    by_req = {f.request_index: f for f in forks}
    for gi, m in enumerate(members):
        if len({by_req[k].group for k in m}) != 1:
            raise ValueError(f"group {gi}: its members' forks name different groups")
    tr = [_traits(t) for t in traits]
    rng = np.random.default_rng(int(seed))
    d, h, g, f = sample_links(rng, n, params)
    chunks = []
    for part in _pack(members, params.k_max):
        frac = len(part) / n
        cp = params.with_(bandwidth_hz=params.bandwidth_hz * frac, server_hz=params.server_hz * frac)
        st = empty_state(1, params)
        gids = {gid: i for i, gid in enumerate(dict.fromkeys(by_req[k].group for k in part))}
        for slot, k in enumerate(part):
            fk = by_req[k]
            st.mask[0, slot] = True
            st.distance_m[0, slot], st.fading[0, slot], st.gain[0, slot], st.device_hz[0, slot] = d[k], h[k], g[k], f[k]
            st.traits[0, slot] = tr[k]
            st.group[0, slot] = gids[fk.group]
            st.is_anchor[0, slot] = bool(fk.is_anchor)
            st.max_shared[0, slot] = int(fk.max_shared_steps)
            st.quality[0, slot] = np.minimum.accumulate(np.asarray(fk.quality, dtype=float))
        _one_anchor_per_group(st)
        pad = [-1] * (params.k_max - len(part))
        chunks.append(Chunk(st, cp, part + pad, [int(by_req[k].group) for k in part] + pad))
    return LiveRound(chunks, n, int(seed), params, list(forks))


def _one_anchor_per_group(st: RoundState) -> None:
    """A group split across chunks keeps its anchor in one part; the other parts' most similar member
    (highest predicted quality at N) leads theirs."""
    for gid in set(st.group[0][st.mask[0]].tolist()):
        m = st.mask[0] & (st.group[0] == gid)
        if not st.is_anchor[0][m].any():
            lead = np.flatnonzero(m)[int(np.argmax(st.quality[0][m][:, -1]))]
            st.is_anchor[0, lead] = True
            st.max_shared[0, lead] = st.steps
            st.quality[0, lead] = 1.0


class Policy:
    """A method that maps rounds to actions; ``allocate`` runs it through the system model."""

    def __init__(self, name: str, notice: Notice | None = None):
        self.name, self.notice = name, notice

    def actions(self, st: RoundState, p: SystemParams, seed: int = 0) -> np.ndarray:
        raise NotImplementedError

    @property
    def sampled(self) -> bool:
        """Whether the policy draws its action (its step probabilities are estimated from draws); a policy that is
        not is deterministic given the round (its seed included)."""
        return self.name == "random"

    def identity(self) -> dict:
        """What the logs record to tell this policy from another of the same name (a checkpoint's folder and hash)."""
        return {"policy": self.name, "checkpoint": None, "config_sha256": None, "obs_version": None}

    def learned_from(self) -> dict | None:
        """For a learned policy: which judge it learned from and from how many interactions (None otherwise)."""
        return None

    def allocate(self, live: LiveRound) -> RoundAllocation:
        t0 = time.perf_counter()
        results = [(c, evaluate(c.state, self.actions(c.state, c.params, live.seed + i), c.params))
                   for i, c in enumerate(live.chunks)]
        ms = 1000.0 * (time.perf_counter() - t0)
        return _assemble(self.name, results, ms, self.notice)

    def allocate_logged(self, live: LiveRound, epsilon: float = 0.0,
                        draws: int = PROPENSITY_DRAWS) -> tuple[RoundAllocation, PolicyLog]:
        """:meth:`allocate` with epsilon-exploration of the shared steps, and the log that makes the round logged
        bandit feedback: what the policy saw, the action it took, and its probability of the mapped shared steps
        (see :func:`step_probabilities`). With ``epsilon`` 0 the allocation is exactly :meth:`allocate`'s."""
        deciding = 0.0  # the decision's own time (the propensity's draws are logging, not deciding)
        results, chunks = [], []
        for i, c in enumerate(live.chunks):
            seed = live.seed + i
            t0 = time.perf_counter()
            chosen = self.actions(c.state, c.params, seed)
            a = explore(c.state, chosen, epsilon, np.random.default_rng([seed, EXPLORE_STREAM]))
            results.append((c, evaluate(c.state, a, c.params)))
            deciding += time.perf_counter() - t0
            steps = map_actions(c.state, a).steps[0]
            draw_seed = propensity_seed(seed)
            probs = step_probabilities(self, c.state, c.params, steps, epsilon, seed, draws,
                                       policy_steps=None if self.sampled else map_actions(c.state, chosen).steps)
            chunks.append(ChunkLog(slots=list(c.slots), state=state_to_json(c.state), params=c.params.as_dict(),
                                   obs=[float(x) for x in encode(c.state, c.params, self.obs_version())[0]],
                                   action=[float(x) for x in np.asarray(a, float).reshape(-1)],
                                   steps=[int(x) for x in steps], propensity=[float(x) for x in probs],
                                   seed=int(seed), draw_seed=int(draw_seed)))
        ms = 1000.0 * deciding
        ident = self.identity()
        log_ = PolicyLog(policy=self.name, checkpoint=ident["checkpoint"], config_sha256=ident["config_sha256"],
                         obs_version=self.obs_version(), sampled=self.sampled, epsilon=float(epsilon),
                         draws=int(draws), smoothing=SMOOTHING, floor=PROPENSITY_FLOOR,
                         energy_price=float(live.params.energy_price), chunks=chunks)
        return _assemble(self.name, results, ms, self.notice), log_

    def obs_version(self) -> int:
        """The observation layout the logs record (a learned policy's own; 2 for the others)."""
        return 2


class BaselinePolicy(Policy):
    def __init__(self, name: str, notice: Notice | None = None):
        super().__init__(name, notice)
        self.fn = BASELINES[name]

    def actions(self, st: RoundState, p: SystemParams, seed: int = 0) -> np.ndarray:
        return self.fn(st, p, np.random.default_rng(seed))


# the parameters that change the dynamics a policy learned; a checkpoint trained with other values still loads
DYNAMICS_KEYS = ("steps", "bandwidth_hz", "server_hz", "cycles_per_step_server", "cycles_per_step_device",
                 "server_step_j", "device_power_w", "energy_price", "deadline_factor")


def params_mismatch(trained: dict | None, now: SystemParams) -> str | None:
    """A sentence naming the system parameters a checkpoint was trained under that differ from ``now``."""
    if not trained:
        return None
    cur = now.as_dict()
    diffs = [f"{k} {trained.get(k)!r} (now {cur[k]!r})" for k in DYNAMICS_KEYS
             if trained.get(k) != cur[k]]
    if not diffs:
        return None
    return "it was trained under other system parameters: " + ", ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else "")


class LearnedPolicy(Policy):
    """A trained checkpoint deciding through :mod:`rlli.policy.inference` (numpy; the torch modules are training's)."""

    def __init__(self, name: str, fast, folder: Path, notice: Notice | None = None):
        super().__init__(name, notice)
        self.fast, self.meta, self.folder = fast, fast.meta, folder
        self._sha: str | None = None

    @property
    def sampled(self) -> bool:
        return self.fast.kind == "gddpg"  # the diffusion chain draws noise; DDPG's MLP does not

    def obs_version(self) -> int:
        return int(self.meta.get("obs_version", 1))

    def identity(self) -> dict:
        if self._sha is None:
            self._sha = checkpoint_sha256(self.folder)
        return {"policy": self.name, "checkpoint": str(self.folder), "config_sha256": self._sha,
                "obs_version": self.obs_version()}

    def learned_from(self) -> dict:
        """The checkpoint's judge and interactions: ``learned_from`` in its config (a checkpoint fine-tuned on stored
        ratings: logged rounds and ratings), else the simulated rounds it trained on."""
        m = self.meta
        known = m.get("learned_from")
        if isinstance(known, dict):
            return {"checkpoint": str(self.folder), **known}
        args = m.get("args") or {}
        rounds = int(m.get("iterations_done", 0) or 0) * int(args.get("rounds_per_iteration", 0) or 0)
        return {"checkpoint": str(self.folder), "judge": str(m.get("judge", "")), "rounds": 0, "ratings": 0,
                "simulated_rounds": rounds}

    def actions(self, st: RoundState, p: SystemParams, seed: int = 0) -> np.ndarray:
        base = BASELINES["greedy"](st, p) if self.fast.residual else None
        return self.fast.act(encode(st, p, self.fast.obs_version), seed=seed, base=base)


def checkpoint_folder(name: str, settings=None) -> Path:
    from rlli.config import Settings

    s = settings or Settings()
    return Path(s.policy_dir) / name / f"seed{s.policy_seed}"


def load_policy(name: str, settings=None, folder: str | Path | None = None) -> Policy:
    """The policy called ``name`` (one of POLICY_NAMES). A learned policy whose checkpoint cannot load or
    does not fit the settings (another k_max) becomes the greedy heuristic with a :class:`Notice`;
    an unknown name raises ValueError."""
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    if name not in LEARNED:
        return BaselinePolicy(name)  # "oracle" runs best_found under its old name
    from rlli.config import Settings

    s = settings or Settings()
    path = Path(folder) if folder else checkpoint_folder(name, s)
    try:
        from rlli.policy.inference import load_fast

        fast = load_fast(path)
        meta = fast.meta
        version = meta.get("obs_version", 1)
        if version not in OBS_VERSIONS:
            raise ValueError(f"it reads observation layout v{version}, this version knows {OBS_VERSIONS}")
        want = obs_dim(s.policy_k_max, int(version))
        if meta.get("obs_dim") != want:
            raise ValueError(f"it was trained for observations of {meta.get('obs_dim')} numbers, layout v{version} "
                             f"has {want} (RLLI_POLICY_K_MAX={s.policy_k_max})")
    except (ValueError, OSError, ImportError) as e:
        return BaselinePolicy("greedy", Notice("fallback", f"the {name} policy could not load ({e}); the greedy "
                                                           "heuristic allocates instead"))
    why = params_mismatch(meta.get("system"), SystemParams.from_settings(s))
    problems = ([why] if why else []) + ([fast.fallback] if fast.fallback else [])  # fallback: best-of-N without critic
    notice = (Notice("params", f"the {name} policy loaded, but {'; '.join(problems)}; its allocations may be poor")
              if problems else None)
    return LearnedPolicy(name, fast, path, notice)


_CACHE: dict[tuple, Policy] = {}
_CACHE_LOCK = threading.Lock()


def get_policy(name: str | None = None, settings=None) -> Policy:
    """The policy called ``name`` (default ``RLLI_POLICY``) for these settings, loaded once per process: the one
    cached accessor of policy models (a learned actor is a model). Never fails for a known name (see
    :func:`load_policy`)."""
    from rlli.config import Settings

    s = settings or Settings()
    name = name or s.policy
    key = (name, str(s.policy_dir), s.policy_seed, s.policy_k_max)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_policy(name, s)
        return _CACHE[key]


# ----------------------------------------------------------------------------- logged bandit feedback
# Every allocated round records what the policy saw (each chunk's state and encoded observation), the action it
# took (3 x k_max numbers), the mapped shared steps and the policy's probability of them per slot, so the ratings
# people and agents give later are (context, action, propensity, reward) tuples for rlli.policy.offpolicy.


@dataclass(frozen=True)
class ChunkLog:
    """One chunk of a logged round: its request per slot, state (JSON), system parameters, the observation the
    policy read, the action it took, the mapped shared steps and each slot's probability of its steps."""

    slots: list[int]
    state: dict
    params: dict
    obs: list[float]
    action: list[float]
    steps: list[int]
    propensity: list[float]  # per slot: the policy's probability of this slot's steps (1 where nothing to decide)
    seed: int  # the seed the policy acted with
    draw_seed: int  # the seed of the M draws that estimated a sampled policy's probabilities


@dataclass(frozen=True)
class PolicyLog:
    """What a round's allocation logs (stored in the round's ``accounting`` JSON as ``policy_log``)."""

    policy: str
    checkpoint: str | None  # a learned policy's folder
    config_sha256: str | None  # of its config.json and actor weights
    obs_version: int
    sampled: bool  # the step probabilities are smoothed frequencies of M draws (else exact)
    epsilon: float  # per member: the steps were drawn uniformly from 0..cap with this probability
    draws: int
    smoothing: float
    floor: float
    energy_price: float
    chunks: list[ChunkLog]
    version: int = LOG_VERSION

    @property
    def propensity(self) -> float:
        """The probability of the round's whole step vector: the product over members (see step_probabilities)."""
        return float(np.prod([p for c in self.chunks for p in c.propensity]))

    def slot_of(self, request_index: int) -> tuple[int, int] | None:
        """(chunk, slot) of a request, or None."""
        for ci, c in enumerate(self.chunks):
            if request_index in c.slots:
                return ci, c.slots.index(request_index)
        return None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["propensity"] = self.propensity
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PolicyLog:
        """Back from the stored JSON; raises ValueError when it is not a log this version can read."""
        if not isinstance(d, dict) or int(d.get("version", 0)) != LOG_VERSION:
            raise ValueError("no policy log of a known version")
        try:
            chunks = [ChunkLog(**{f.name: c[f.name] for f in fields(ChunkLog)}) for c in d["chunks"]]
            return cls(**{f.name: d[f.name] for f in fields(cls) if f.name != "chunks"}, chunks=chunks)
        except (KeyError, TypeError) as e:
            raise ValueError(f"unreadable policy log ({type(e).__name__}: {e})") from None


def checkpoint_sha256(folder: str | Path) -> str | None:
    """sha256 of a checkpoint's config.json and actor weights (None where they cannot be read)."""
    h = hashlib.sha256()
    try:
        for name in ("config.json", "actor.safetensors"):
            h.update((Path(folder) / name).read_bytes())
    except OSError:
        return None
    return h.hexdigest()


def state_to_json(st: RoundState) -> dict:
    """A one-round RoundState as JSON (complex fading as [re, im] pairs); exact round trip of float64 values."""
    out = {}
    for f in fields(st):
        v = np.asarray(getattr(st, f.name))[0]
        if np.iscomplexobj(v):
            v = np.stack([v.real, v.imag], axis=-1)
        out[f.name] = v.tolist()
    return out


def state_from_json(d: dict) -> RoundState:
    """The RoundState (batch of one) :func:`state_to_json` wrote; ValueError when it is not one."""
    try:
        kw = {}
        for f in fields(RoundState):
            v = np.asarray(d[f.name])
            if f.name == "fading":
                v = v[..., 0] + 1j * v[..., 1]
            elif f.name in ("mask", "is_anchor"):
                v = v.astype(bool)
            elif f.name in ("group", "max_shared"):
                v = v.astype(int)
            else:
                v = v.astype(float)
            kw[f.name] = v[None]
        st = RoundState(**kw)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"unreadable round state ({type(e).__name__}: {e})") from None
    if st.quality.ndim != 3 or st.mask.shape != st.max_shared.shape:
        raise ValueError("unreadable round state (shapes)")
    return st


def params_from_json(d: dict) -> SystemParams:
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in SystemParams.__dataclass_fields__}
    return SystemParams(**kw)


def decision_slots(st: RoundState) -> np.ndarray:
    """[K] bool: the members whose shared steps the policy decides (in use, not an anchor, a cap above 0)."""
    return st.mask[0] & ~st.is_anchor[0] & (st.max_shared[0] > 0)


def explore(st: RoundState, action: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Epsilon-exploration of the shared steps: each deciding member, with probability ``epsilon``, takes a step
    count drawn uniformly from 0..its cap instead of the policy's (bandwidth and compute are left as chosen)."""
    a = np.asarray(action, dtype=float).reshape(1, -1).copy()
    if epsilon <= 0:
        return a
    k = st.k_max
    dec = decision_slots(st)
    flip = rng.random(k) < epsilon
    draw = rng.integers(0, np.maximum(st.max_shared[0], 0) + 1)
    for slot in np.flatnonzero(dec & flip):
        cap = int(st.max_shared[0, slot])
        a[0, 2 * k + slot] = 2.0 * draw[slot] / cap - 1.0
    return a


def propensity_seed(seed: int) -> int:
    """The seed of the M draws for a round acted on with ``seed`` (not the acting seed itself)."""
    return int((int(seed) * 1_000_003 + 17) % (2**31 - 1))


def policy_step_draws(policy: Policy, st: RoundState, p: SystemParams, draw_seed: int, draws: int) -> np.ndarray:
    """[M, K] shared steps of M draws of a sampled policy on one round (one batched call)."""
    rep = st.repeat(int(draws))
    return map_actions(rep, policy.actions(rep, p, int(draw_seed))).steps


def step_probabilities(policy: Policy, st: RoundState, p: SystemParams, steps, epsilon: float, seed: int,
                       draws: int = PROPENSITY_DRAWS, policy_steps=None, smoothing: float = SMOOTHING,
                       floor: float = PROPENSITY_FLOOR, drawn=None) -> np.ndarray:
    """[K] each slot's probability under ``policy`` (with epsilon-exploration) of taking ``steps`` shared steps
    on the round ``st`` it acts on with ``seed``.

    Per member, pi_k(s) = (1 - epsilon) p_k(s) + epsilon / (cap_k + 1), where p_k is the policy's own
    probability: for a deterministic policy (given the round and its seed) 1 at its steps and 0 elsewhere; for
    a sampled one (G-DDPG: a diffusion chain, best-of-N; random) the smoothed frequency
    (count + a / (cap_k + 1)) / (M + a) of s among M draws seeded by ``propensity_seed(seed)`` (a = SMOOTHING: one
    pseudo-draw, so a nearly deterministic chain keeps about M / (M + 1) on its choice), floored at
    PROPENSITY_FLOOR. Slots with nothing to decide (empty, anchors, cap 0) get 1. The round's propensity is the
    product over members: M = 64 draws can estimate each member's distribution over cap + 1 values, not a joint
    over prod(cap_k + 1) vectors; the same product is used for every policy, behaviour and candidate alike.
    ``policy_steps``: the deterministic policy's own steps when the caller has them (saves acting twice);
    ``draws``, ``smoothing`` and ``floor``: a log's own, when a candidate is scored on it; ``drawn``: the [M, K]
    steps of the M draws when the caller has them."""
    steps = np.asarray(steps, dtype=int).reshape(-1)
    dec = decision_slots(st)
    if not dec.any():  # nobody here may share: nothing was decided (and nothing to draw)
        return np.ones(len(steps))
    cap = np.maximum(st.max_shared[0], 0)
    if policy.sampled:
        if drawn is None:
            drawn = policy_step_draws(policy, st, p, propensity_seed(seed), draws)
        draws = len(drawn)
        count = (drawn == steps[None, :]).sum(axis=0)
        own = np.maximum((count + smoothing / (cap + 1)) / (draws + smoothing), floor)
    else:
        mine = policy_steps if policy_steps is not None else map_actions(st, policy.actions(st, p, int(seed))).steps
        own = (np.asarray(mine).reshape(-1) == steps).astype(float)
    prob = (1.0 - float(epsilon)) * own + float(epsilon) / (cap + 1)
    return np.where(dec, prob, 1.0)


def _assemble(name: str, results: list[tuple[Chunk, Outcome]], ms: float, notice: Notice | None) -> RoundAllocation:
    users: list[UserAllocation] = []
    e_srv = 0.0
    reward = 0.0
    for c, out in results:
        a = out.allocation
        comp = a.compute_share(c.state)
        e_srv += float(out.energy_server_j[0])
        reward += float(out.reward[0])
        for slot, k in enumerate(c.slots):
            if k < 0:
                continue
            users.append(UserAllocation(
                request_index=k, group=c.round_groups[slot], is_anchor=bool(c.state.is_anchor[0, slot]),
                shared_steps=int(a.steps[0, slot]), max_shared_steps=int(c.state.max_shared[0, slot]),
                bandwidth_share=float(a.bandwidth_share[0, slot] * c.params.bandwidth_hz / _band(results)),
                bandwidth_hz=float(a.bandwidth_share[0, slot] * c.params.bandwidth_hz),
                compute_share=float(comp[0, slot] * c.params.server_hz / _server(results)),
                compute_hz=float(comp[0, slot] * c.params.server_hz),
                channel_gain_db=float(10 * np.log10(c.state.gain[0, slot])), device_ghz=float(c.state.device_hz[0, slot] / 1e9),
                quality=float(out.quality[0, slot]), delay_server_s=float(out.delay_server_s[0, slot]),
                delay_tx_s=float(out.delay_tx_s[0, slot]), delay_device_s=float(out.delay_device_s[0, slot]),
                delay_s=float(out.delay_s[0, slot]),
                energy_j=float(out.energy_device_j[0, slot] + out.energy_tx_j[0, slot]), qoe=float(out.qoe[0, slot])))
    users.sort(key=lambda u: u.request_index)
    total_e = sum(u.energy_j for u in users) + e_srv
    return RoundAllocation(name, users, float(sum(u.qoe for u in users)), float(total_e), e_srv, reward,
                           float(np.mean([u.delay_s for u in users])), ms, notice)


def _band(results) -> float:
    return sum(c.params.bandwidth_hz for c, _ in results)


def _server(results) -> float:
    return sum(c.params.server_hz for c, _ in results)


def compare(live: LiveRound, policy: Policy | None = None) -> dict[str, RoundAllocation]:
    """The policy's allocation next to no sharing and an equal split (with N/3 shared) of the same round."""
    out = {"no_sharing": BaselinePolicy("no_sharing").allocate(live), "equal": BaselinePolicy("equal").allocate(live)}
    if policy is not None:
        out = {"policy": policy.allocate(live), **out}
    return out


@dataclass(frozen=True)
class AllocationReport:
    """What a round's report carries: the chosen allocation, the two references, and any notice."""

    allocation: RoundAllocation
    no_sharing: RoundAllocation  # every user on its own device
    equal: RoundAllocation
    notice: Notice | None
    server_per_user_j: float = 0.0  # the other no-sharing reference: the server makes each user's image alone
    server_per_user_qoe: float = 0.0
    log: PolicyLog | None = None  # what the policy saw and did, with its probability (logged bandit feedback)
    learned_from: dict | None = None  # a learned policy: checkpoint, judge, logged rounds and ratings it learned from

    @property
    def energy_saved_j(self) -> float:
        """Energy against no sharing on the devices (positive: sharing used less)."""
        return self.no_sharing.energy_j - self.allocation.energy_j

    @property
    def energy_saved_vs_server_j(self) -> float:
        """Energy against the server making every user's image separately (positive: sharing used less)."""
        return self.server_per_user_j - self.allocation.energy_j

    def as_dict(self) -> dict:
        return {"allocation": self.allocation.as_dict(), "no_sharing": self.no_sharing.as_dict(),
                "equal": self.equal.as_dict(), "energy_saved_j": self.energy_saved_j,
                "server_per_user_j": self.server_per_user_j, "server_per_user_qoe": self.server_per_user_qoe,
                "energy_saved_vs_server_j": self.energy_saved_vs_server_j,
                "notice": None if self.notice is None else asdict(self.notice), "learned_from": self.learned_from,
                "propensity": None if self.log is None else self.log.propensity}


def allocate_round(groups, forks: list, traits: list, settings=None, seed: int = 0,
                   payload_bytes: int | None = None, policy: Policy | None = None) -> AllocationReport:
    """Everything a service round needs short of running the engine: the round state, the policy's
    allocation (``settings.policy`` unless given), and the same figures under no sharing and an
    equal split. Pass ``report.allocation.shared_steps()`` as ``choice`` to ``sharing.member_plan``.
    The report's ``log`` is the round as logged bandit feedback (``settings.policy_epsilon`` explores the shared
    steps; 0 leaves the policy's allocation as it is) and ``learned_from`` names what a learned policy learned
    from."""
    from rlli.config import Settings

    s = settings or Settings()
    live = build_round_state(groups, forks, traits, s, seed, payload_bytes)
    policy = policy or load_policy(s.policy, s)
    chosen, log_ = policy.allocate_logged(live, float(getattr(s, "policy_epsilon", 0.0)))
    figs = compare(live)
    from rlli.network.allocation import server_reference

    refs = [server_reference(c.state, c.params) for c in live.chunks]
    return AllocationReport(chosen, figs["no_sharing"], figs["equal"], policy.notice,
                            float(sum(r.energy_j[0] for r in refs)), float(sum(r.qoe[0].sum() for r in refs)),
                            log_, policy.learned_from())


__all__ = ["POLICY_NAMES", "AllocationReport", "ChunkLog", "LiveRound", "Notice", "Policy", "PolicyLog", "RoundAllocation",
           "UserAllocation", "allocate_round", "build_round_state", "compare", "get_policy", "load_policy",
           "state_from_json", "state_to_json", "step_probabilities"]
