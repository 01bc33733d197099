"""Big-Five personas: presets, the TIPI, population profiles, and the judges that role-play them.

Light to import: the LLM client (``openai``), the embedded server and the trait judge load only
when a judge is asked for.

    from rlli.personas import get_judge, load_presets
    judge = get_judge("llm", settings)          # or "trait"
    rating = judge.rate(persona, delivery)      # Rating(score 1..10 or None, reason, status, ...)
"""

from __future__ import annotations

from rlli.personas.judge import TRAITS, BigFive, Delivery, Judge, Persona, Rating
from rlli.personas.presets import PersonaError, find_preset, load_presets

JUDGE_BACKENDS = ("llm", "trait")

__all__ = ["TRAITS", "BigFive", "Delivery", "Judge", "Persona", "Rating", "PersonaError", "JUDGE_BACKENDS",
           "find_preset", "get_judge", "load_presets"]


def get_judge(backend: str, settings=None, model: str | None = None) -> Judge:
    """A judge: ``"llm"`` (the configured OpenAI-compatible endpoint, or the embedded SmolLM2 server) or
    ``"trait"`` (the parametric persona model). ``model`` overrides ``RLLI_LLM_MODEL`` for the LLM judge.

    Constructing the LLM judge contacts nothing; the endpoint is resolved (and the embedded server
    started) on its first rating, and a dead endpoint gives ratings with status ``unavailable``.
    """
    from rlli.config import Settings

    settings = settings or Settings()
    if backend == "llm":
        from rlli.personas.llm_judge import LLMJudge

        return LLMJudge(settings, model=model)
    if backend == "trait":
        import inspect

        from rlli.personas.trait_judge import TraitJudge

        takes_settings = "settings" in inspect.signature(TraitJudge).parameters
        return TraitJudge(settings=settings) if takes_settings else TraitJudge()
    raise ValueError(f"unknown judge backend {backend!r}; choose one of: {', '.join(JUDGE_BACKENDS)}")
