"""Preset personas, read from ``personas/presets.toml`` (data, not code)."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from rlli.personas.judge import TRAITS, BigFive, Persona

PERSONAS_DIR = Path(__file__).resolve().parents[2] / "personas"


class PersonaError(ValueError):
    """A persona that does not exist or a persona file that does not parse; the message says which."""


def read_toml(name: str) -> dict:
    """One of the data files under ``personas/`` as a dict."""
    path = PERSONAS_DIR / name
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PersonaError(f"cannot read {path}: {e}") from e


def persona_from_row(row: dict, instrument: str = "preset") -> Persona:
    try:
        traits = BigFive(**{t: float(row[t]) for t in TRAITS})
        return Persona(name=str(row["name"]), traits=traits, description=str(row.get("description", "")),
                       instrument=instrument)
    except (KeyError, TypeError, ValueError) as e:
        raise PersonaError(f"bad persona entry {row.get('name', row)!r}: {e}") from e


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[Persona, ...], dict[str, str]]:
    rows = read_toml("presets.toml").get("persona", [])
    personas = tuple(persona_from_row(r) for r in rows)
    names = [p.name for p in personas]
    if len(set(names)) != len(names):
        raise PersonaError("presets.toml: persona names must be unique")
    return personas, {str(r["name"]): str(r.get("title", r["name"])) for r in rows}


def load_presets() -> list[Persona]:
    """Every preset persona, in file order."""
    return list(_load()[0])


def title_of(persona: Persona) -> str:
    """A preset's title ("The explorer"); other personas are called by their name."""
    return _load()[1].get(persona.name, persona.name) if persona.instrument == "preset" else persona.name


def find_preset(name: str) -> Persona:
    """The preset persona called ``name`` (case-insensitive), or :class:`PersonaError` listing the names."""
    key = (name or "").strip().lower()
    for p in load_presets():
        if p.name.lower() == key:
            return p
    raise PersonaError(f"no persona called {name!r}; choose one of: {', '.join(p.name for p in load_presets())}")
