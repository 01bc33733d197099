"""Persona fidelity v2: do agents hold the profile they are given, measured the way psychometrics measures.

1. **Profiles**: ``n`` (default 120) Big-Five profiles sampled from the norms (``personas/norms.toml``;
   default set ``gosling2003``), each phrased from its percentiles (:func:`rlli.personas.templates.trait_phrase`).
   Profiles are independent, so the effective n is the number of profiles (not profiles x repeats).
2. **Instrument**: each agent answers the Mini-IPIP (``personas/mini_ipip.toml``, 20 items 1..5), which
   shares no word with the persona text - an agent cannot score well by echoing its description.
3. **Per-trait r** between assigned and recovered traits over profiles, with a 95% Fisher-z interval.
4. **MTMM**: convergent validity (mean r of a trait with itself) minus discriminant validity (mean |r| of
   a trait with the other four recovered traits), with a bootstrap-over-profiles interval. A positive gap
   says the agent's answers track the trait it was given rather than a general "nice person" halo.
5. **Behavioural bench**: ``behavioural`` profiles each rate one image in a 2 x 2 design (quality 0.5 / 1.0,
   delay 2 s / 30 s). The per-profile delay slope (score at 30 s minus at 2 s) should fall with
   neuroticism, the quality slope (score at 1.0 minus at 0.5) rise with conscientiousness - the directions
   the persona text and the parametric judge state; r with CIs over profiles, and the expected sign.

Respondents: the LLM (one chat call per questionnaire, the answers as JSON constrained by a schema) or
the parametric ``trait`` respondent (every item at its trait's level plus Gaussian response noise of
``TRAIT_NOISE`` scale points; its r only reflects that noise and is labelled as such, never a reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from string import Template

import numpy as np

from rlli.config import Settings
from rlli.personas.judge import TRAITS, BigFive, Persona
from rlli.personas.llm import LLMClient, LLMError, client_for
from rlli.personas.presets import read_toml

ANSWER_TEMPERATURE = 0.7  # independent profiles, each with its own seed
TRAIT_NOISE = 0.7  # response noise of the parametric respondent, in scale points
BEHAVIOUR_QUALITY = (0.5, 1.0)
BEHAVIOUR_DELAY = (2.0, 30.0)
CONFIDENCE = 0.95


class InventoryError(ValueError):
    """Answers that do not fit the questionnaire."""


@dataclass(frozen=True)
class Inventory:
    name: str
    stem: str
    scale: tuple[str, ...]
    items: tuple[tuple[str, str, bool], ...]  # (text, trait, reverse)

    @property
    def top(self) -> int:
        return len(self.scale)

    def schema(self) -> dict:
        keys = [f"item{i}" for i in range(1, len(self.items) + 1)]
        return {"type": "object", "properties": {k: {"type": "integer", "enum": list(range(1, self.top + 1))} for k in keys},
                "required": keys, "additionalProperties": False}

    def check(self, data) -> list[int]:
        if not isinstance(data, dict):
            raise InventoryError(f"expected a JSON object with item1..item{len(self.items)}")
        out = []
        for i in range(1, len(self.items) + 1):
            v = data.get(f"item{i}")
            if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer() or not 1 <= v <= self.top:
                raise InventoryError(f"item{i}: expected a whole number 1..{self.top}, got {v!r}")
            out.append(int(v))
        return out

    def score(self, answers: list[int]) -> BigFive:
        keyed: dict[str, list[float]] = {t: [] for t in TRAITS}
        for (_, trait, reverse), v in zip(self.items, answers):
            keyed[trait].append(self.top + 1 - v if reverse else v)
        return BigFive(**{t: (float(np.mean(vs)) - 1) / (self.top - 1) for t, vs in keyed.items()})

    def ideal(self, traits: BigFive, rng: np.random.Generator | None = None, noise: float = 0.0) -> list[int]:
        out = []
        for _, trait, reverse in self.items:
            level = 1 + (self.top - 1) * getattr(traits, trait)
            v = self.top + 1 - level if reverse else level
            if rng is not None and noise > 0:
                v += rng.normal(0, noise)
            out.append(int(np.clip(round(v), 1, self.top)))
        return out


@lru_cache(maxsize=2)
def inventory(name: str = "mini_ipip") -> Inventory:
    data = read_toml(f"{name}.toml")
    items = tuple((r["text"], r["trait"], bool(r["reverse"])) for r in data["item"])
    if {t for _, t, _ in items} != set(TRAITS):
        raise InventoryError(f"{name}.toml must cover all five traits")
    return Inventory(name, data["stem"], tuple(data["scale"]), items)


def inventory_messages(persona: Persona, inv: Inventory) -> tuple[str, str]:
    from rlli.personas.templates import persona_block, templates

    t = templates()
    system = Template(t["tipi"]["system"]).substitute(persona_block(persona))
    scale = ", ".join(f"{i} = {s.lower()}" for i, s in enumerate(inv.scale, 1))
    items = "\n".join(f"{i}. {text}" for i, (text, _, _) in enumerate(inv.items, 1))
    user = Template(t["inventory"]["user"]).substitute(stem=inv.stem, scale=scale, items=items, top=str(inv.top),
                                                       n=str(len(inv.items)))
    return system, user


# ---------------------------------------------------------------------------------------- statistics

def pearson(x, y) -> float | None:
    """Pearson r, or None when either side is constant (or fewer than 3 pairs): no correlation is defined."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def fisher_ci(r: float | None, n: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The Fisher-z interval of a correlation over ``n`` independent pairs."""
    from scipy.stats import norm

    if r is None or n < 4:
        return None, None
    z, se = math.atanh(max(-0.999999, min(0.999999, r))), 1 / math.sqrt(n - 3)
    q = norm.ppf(0.5 + confidence / 2)
    return round(math.tanh(z - q * se), 4), round(math.tanh(z + q * se), 4)


def estimate_r(x, y) -> dict:
    r = pearson(x, y)
    lo, hi = fisher_ci(r, len(x))
    return {"r": None if r is None else round(r, 4), "low": lo, "high": hi, "n": len(x)}


def mtmm(assigned: np.ndarray, recovered: np.ndarray) -> dict:
    """Convergent (mean diagonal r), discriminant (mean |off-diagonal r|) and their gap, over profiles."""
    k = assigned.shape[1]
    with np.errstate(all="ignore"):
        a = (assigned - assigned.mean(0)) / assigned.std(0)
        r = (recovered - recovered.mean(0)) / recovered.std(0)
        m = (a.T @ r) / len(a)  # Pearson r of every assigned trait with every recovered one (NaN where constant)
    m = np.where(np.isfinite(m), m, np.nan)
    conv = float(np.nanmean(np.diag(m))) if np.isfinite(np.diag(m)).any() else float("nan")
    off = m[~np.eye(k, dtype=bool)]
    disc = float(np.nanmean(np.abs(off))) if np.isfinite(off).any() else float("nan")
    return {"convergent": conv, "discriminant": disc, "gap": conv - disc, "matrix": m}


def mtmm_with_ci(assigned: np.ndarray, recovered: np.ndarray, resamples: int = 500, seed: int = 0) -> dict:
    point = mtmm(assigned, recovered)
    rng = np.random.default_rng(seed)
    n = len(assigned)
    gaps = []
    if n >= 4:
        for _ in range(resamples):
            idx = rng.integers(0, n, n)
            g = mtmm(assigned[idx], recovered[idx])["gap"]
            if np.isfinite(g):
                gaps.append(g)
    fin = lambda v: None if not np.isfinite(v) else round(float(v), 4)  # noqa: E731
    lo, hi = (np.percentile(gaps, [2.5, 97.5]) if len(gaps) >= resamples / 2 else (np.nan, np.nan))
    return {"convergent": fin(point["convergent"]), "discriminant": fin(point["discriminant"]),
            "gap": fin(point["gap"]), "gap_low": fin(lo), "gap_high": fin(hi),
            "matrix": [[fin(v) for v in row] for row in point["matrix"]],
            "rows": "assigned trait", "columns": "recovered trait", "order": list(TRAITS)}


# ---------------------------------------------------------------------------------------- the run

@dataclass
class FidelityReport:
    profiles: int
    norm_set: str
    instrument: str
    per_trait: dict[str, dict]
    overall_r: float | None
    mtmm: dict
    behavioural: dict
    valid_rate: float
    backend: str
    model: str
    note: str = ""
    failures: list[str] = field(default_factory=list)
    recovered: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"profiles": self.profiles, "norm_set": self.norm_set, "instrument": self.instrument,
                "per_trait": self.per_trait, "overall_r": self.overall_r, "mtmm_gap": self.mtmm.get("gap"),
                "mtmm": self.mtmm, "behavioural": self.behavioural, "valid_rate": self.valid_rate,
                "backend": self.backend, "model": self.model, "note": self.note, "failures": self.failures[:20],
                "recovered": self.recovered}


def _answer(client: LLMClient | None, persona: Persona, inv: Inventory, seed: int) -> list[int]:
    if client is None:
        return inv.ideal(persona.traits, np.random.default_rng(seed), TRAIT_NOISE)
    system, user = inventory_messages(persona, inv)
    data, _ = client.chat_json(system, user, inv.schema(), name="inventory", temperature=ANSWER_TEMPERATURE,
                               seed=seed, max_tokens=12 * len(inv.items) + 16)
    return inv.check(data)


def behavioural_bench(judge, personas: list[Persona], image: np.ndarray | None, prompt: str) -> dict:
    """Per-profile delay and quality slopes of the judge's scores, correlated with neuroticism and conscientiousness."""
    from rlli.personas.describe import make_delivery

    cells = [(q, d) for q in BEHAVIOUR_QUALITY for d in BEHAVIOUR_DELAY]
    deliveries = {c: make_delivery(prompt, image, quality=c[0], delay_s=c[1]) for c in cells}
    pairs = [(p, deliveries[c]) for p in personas for c in cells]
    ratings = judge.rate_many(pairs)
    rows, failed = [], 0
    for i, p in enumerate(personas):
        got = {c: ratings[i * len(cells) + j].score for j, c in enumerate(cells)}
        failed += sum(v is None for v in got.values())
        if any(v is None for v in got.values()):
            continue
        (ql, qh), (dl, dh) = BEHAVIOUR_QUALITY, BEHAVIOUR_DELAY
        delay_slope = ((got[(ql, dh)] - got[(ql, dl)]) + (got[(qh, dh)] - got[(qh, dl)])) / 2
        quality_slope = ((got[(qh, dl)] - got[(ql, dl)]) + (got[(qh, dh)] - got[(ql, dh)])) / 2
        rows.append((p.traits, delay_slope, quality_slope))
    n_t = [t.neuroticism for t, _, _ in rows]
    c_t = [t.conscientiousness for t, _, _ in rows]
    ds, qs = [d for _, d, _ in rows], [q for _, _, q in rows]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    return {
        "design": {"quality": list(BEHAVIOUR_QUALITY), "delay_s": list(BEHAVIOUR_DELAY), "prompt": prompt},
        "profiles": len(personas), "complete": len(rows), "failed_ratings": failed,
        "mean_delay_slope": mean(ds), "mean_quality_slope": mean(qs),
        "delay_slope_vs_neuroticism": {**estimate_r(n_t, ds), "expected_sign": "negative"},
        "quality_slope_vs_conscientiousness": {**estimate_r(c_t, qs), "expected_sign": "positive"},
    }


def run_fidelity(n_profiles: int = 120, backend: str = "llm", settings: Settings | None = None, seed: int = 0,
                 norm_set: str = "", behavioural: int = 30, log=None, judge=None) -> FidelityReport:
    """Fidelity v2 over ``n_profiles`` sampled profiles; ``behavioural`` of them also rate the 2 x 2 design."""
    from rlli.personas.population import norms, sample_profiles

    settings = settings or Settings()
    if not 4 <= n_profiles <= 2000:
        raise ValueError(f"profiles must be between 4 and 2000, not {n_profiles}")
    if not 0 <= behavioural <= n_profiles:
        raise ValueError(f"behavioural profiles must be between 0 and {n_profiles}, not {behavioural}")
    if backend not in ("llm", "trait"):
        raise ValueError(f"unknown respondent {backend!r}; choose llm or trait")
    nm = norms(norm_set)
    inv = inventory()
    personas = sample_profiles(n_profiles, seed, nm.name)
    client: LLMClient | None = None
    model = f"ideal-respondent+noise{TRAIT_NOISE}" if backend == "trait" else ""
    note = ("the parametric respondent answers each item at its trait's level plus Gaussian noise of "
            f"{TRAIT_NOISE} scale points: its r only reflects that noise, it is not a reference for agents"
            if backend == "trait" else "")
    empty = {t: {"r": None, "low": None, "high": None, "n": 0} for t in TRAITS}
    if backend == "llm":
        try:
            client = client_for(settings)
            model = client.model
        except LLMError as e:
            return FidelityReport(n_profiles, nm.name, inv.name, empty, None, {}, {}, 0.0, backend,
                                  settings.llm_model or "unknown", note, [f"{e.status}: {e.cause}"])
    rows, recovered, failures = [], [], []
    for i, p in enumerate(personas):
        try:
            answers = _answer(client, p, inv, seed * 100_003 + i)
        except (LLMError, InventoryError) as e:
            failures.append(f"{p.name}: {getattr(e, 'cause', str(e))}")
            continue
        got = inv.score(answers)
        rows.append((p.traits.as_tuple(), got.as_tuple()))
        recovered.append({"persona": p.name, "answers": answers,
                          "assigned": dict(zip(TRAITS, p.traits.as_tuple())),
                          "recovered": {t: round(v, 3) for t, v in zip(TRAITS, got.as_tuple())}})
        if log:
            log(f"{p.name}: {answers}")
    a = np.array([r[0] for r in rows]).reshape(-1, len(TRAITS))
    r = np.array([r[1] for r in rows]).reshape(-1, len(TRAITS))
    per = {t: estimate_r(a[:, k], r[:, k]) for k, t in enumerate(TRAITS)} if len(rows) else empty
    pooled = pearson(a.ravel(), r.ravel()) if len(rows) else None
    matrix = mtmm_with_ci(a, r, seed=seed) if len(rows) >= 4 else {}
    beh = {}
    if behavioural:
        from rlli.personas import get_judge

        judge = judge or get_judge(backend, settings)
        image, prompt = _bench_image()
        beh = behavioural_bench(judge, personas[:behavioural], image, prompt)
    return FidelityReport(n_profiles, nm.name, inv.name, per, None if pooled is None else round(pooled, 4), matrix, beh,
                          len(rows) / n_profiles, backend, model, note, failures, recovered)


def _bench_image() -> tuple[np.ndarray | None, str]:
    """A rendered scene of the embedded world that matches its prompt (None where torch or the world is missing)."""
    prompt = "a red house on grass by day"
    try:
        from rlli.diffusion.tiny import world
    except ImportError:
        return None, prompt
    scene = world.Scene("day", "clear", "grass", "house", "red", "one", "centre", "neutral", "normal")
    return (world.render(scene, np.random.default_rng(0)) * 255 + 0.5).astype(np.uint8), prompt
