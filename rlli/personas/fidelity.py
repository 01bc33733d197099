"""Persona fidelity: do agents hold their persona? Each preset persona takes the TIPI ``repeats`` times; the
recovered traits are correlated with the assigned ones, per trait and overall.

Respondents: the LLM (one chat call per administration, the ten answers as JSON constrained by a
schema) or the parametric trait model (``--judge trait``: the TIPI answers of a respondent whose
every item sits at its trait's level, with Gaussian response noise of one scale point - the
reference a perfectly consistent persona reaches through the TIPI's coarse 1..7 scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlli.config import Settings
from rlli.personas.judge import TRAITS, BigFive, Persona
from rlli.personas.llm import LLMClient, LLMError, client_for
from rlli.personas.templates import tipi_messages
from rlli.personas.tipi import N_ITEMS, TipiError, check_answers, ideal_answers, score

TIPI_SCHEMA = {
    "type": "object",
    "properties": {f"item{i}": {"type": "integer", "enum": list(range(1, 8))} for i in range(1, N_ITEMS + 1)},
    "required": [f"item{i}" for i in range(1, N_ITEMS + 1)],
    "additionalProperties": False,
}
TIPI_TEMPERATURE = 0.7  # repeats must be able to differ; each repeat has its own seed
TRAIT_NOISE = 1.0  # response noise of the parametric respondent, in scale points


@dataclass
class FidelityReport:
    per_trait: dict[str, float | None]
    overall_r: float | None
    valid_rate: float
    backend: str
    model: str
    repeats: int
    administered: int
    failures: list[str] = field(default_factory=list)
    recovered: list[dict] = field(default_factory=list)  # persona, repeat, assigned, recovered

    def as_dict(self) -> dict:
        return {"per_trait": self.per_trait, "overall_r": self.overall_r, "valid_rate": self.valid_rate,
                "backend": self.backend, "model": self.model, "repeats": self.repeats,
                "administered": self.administered, "failures": self.failures[:20], "recovered": self.recovered}


def answers_from_reply(data) -> list[int]:
    if not isinstance(data, dict):
        raise TipiError("expected a JSON object with item1..item10")
    missing = [f"item{i}" for i in range(1, N_ITEMS + 1) if f"item{i}" not in data]
    if missing:
        raise TipiError(f"missing {', '.join(missing)}")
    return check_answers([data[f"item{i}"] for i in range(1, N_ITEMS + 1)])


def llm_answers(client: LLMClient, persona: Persona, seed: int) -> list[int]:
    system, user = tipi_messages(persona)
    data, _ = client.chat_json(system, user, TIPI_SCHEMA, name="tipi", temperature=TIPI_TEMPERATURE, seed=seed,
                               max_tokens=160)
    return answers_from_reply(data)


def trait_answers(persona: Persona, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    noisy = np.asarray(ideal_answers(persona.traits), float) + rng.normal(0, TRAIT_NOISE, N_ITEMS)
    return [int(v) for v in np.clip(np.round(noisy), 1, 7)]


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson r, or None when either side is constant (or fewer than 3 pairs): no correlation is defined."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def summarise(rows: list[tuple[BigFive, BigFive]]) -> tuple[dict[str, float | None], float | None]:
    """Per-trait r over (assigned, recovered) pairs, and overall r over all traits pooled."""
    per = {t: pearson([getattr(a, t) for a, _ in rows], [getattr(r, t) for _, r in rows]) for t in TRAITS}
    pooled = pearson([v for a, _ in rows for v in a.as_tuple()], [v for _, r in rows for v in r.as_tuple()])
    return per, pooled


def run_fidelity(personas: list[Persona], repeats: int, backend: str = "llm", settings: Settings | None = None,
                 seed: int = 0, log=None) -> FidelityReport:
    settings = settings or Settings()
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    client: LLMClient | None = None
    model = "tipi-ideal-respondent+noise" if backend == "trait" else ""
    failures: list[str] = []
    if backend == "llm":
        try:
            client = client_for(settings)
            model = client.model
        except LLMError as e:
            n = len(personas) * repeats
            return FidelityReport({t: None for t in TRAITS}, None, 0.0, backend, settings.llm_model or "unknown",
                                  repeats, n, [f"{e.status}: {e.cause}"])
    elif backend != "trait":
        raise ValueError(f"unknown respondent {backend!r}; choose llm or trait")
    rows, recovered = [], []
    for rep in range(repeats):
        for i, p in enumerate(personas):
            s = seed + 1000 * rep + i
            try:
                answers = llm_answers(client, p, s) if client is not None else trait_answers(p, s)
            except (LLMError, TipiError) as e:
                failures.append(f"{p.name} #{rep}: {getattr(e, 'cause', str(e))}")
                continue
            got = score(answers)
            rows.append((p.traits, got))
            recovered.append({"persona": p.name, "repeat": rep, "answers": answers,
                              "assigned": dict(zip(TRAITS, p.traits.as_tuple())),
                              "recovered": {t: round(v, 3) for t, v in zip(TRAITS, got.as_tuple())}})
            if log:
                log(f"{p.name} #{rep}: {answers}")
    per, overall = summarise(rows)
    n = len(personas) * repeats
    return FidelityReport(per, overall, len(rows) / n if n else 0.0, backend, model, repeats, n, failures, recovered)
