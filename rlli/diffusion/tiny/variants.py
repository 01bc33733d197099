"""A persona's version of a visitor's prompt, composed in the embedded world's vocabulary (no LLM).

The paper's Fig. 1 renders one prompt four ways for four personalities. Here a persona keeps the visitor's
subject - every attribute the visitor stated stays as stated, in the visitor's own words - and adds the look
its traits favour (warmth, detail: "warm", "calm", "busy", ...) where the visitor said nothing about it. Such a
version is a light edit of the visitor's prompt, the kind of variant the fork probe lets share most of the
trajectory, so a persona round shares for a reason; a version that changed a stated attribute would not share
and would no longer be the visitor's scene.

``preferred`` is any mapping from world attributes to values (for instance the persona author's
``compose_scene(persona, rng)``); only the look attributes in ``look`` are read. Pure: the same inputs give the
same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlli.diffusion.tiny import world

LOOK = ("warmth", "detail")  # what a persona may add: the look, never the subject
_WORDS = {"warmth": world.WARMTH_WORDS, "detail": world.DETAIL_WORDS}


@dataclass(frozen=True)
class Version:
    text: str
    added: dict[str, str] = field(default_factory=dict)  # look attributes the persona added
    kept: dict[str, str] = field(default_factory=dict)  # the visitor's stated attributes, unchanged
    written_by: str = "composed"  # composed from stated preferences (no LLM)

    @property
    def same_as_visitor(self) -> bool:
        return not self.added


def persona_version(prompt: str, preferred: dict[str, str], seed: int = 0, look: tuple[str, ...] = LOOK) -> Version:
    """The persona's version of ``prompt``: the visitor's text plus the preferred look words it leaves unsaid."""
    if not prompt.strip():
        raise ValueError("the visitor's prompt is empty")
    unknown = [k for k in look if k not in _WORDS]
    if unknown:
        raise ValueError(f"a persona may add only {', '.join(_WORDS)}, not {', '.join(unknown)}")
    stated = world.parse_prompt(prompt)
    rng = np.random.default_rng([seed, sum(map(ord, prompt))])
    added, words = {}, []
    for k in look:
        v = preferred.get(k)
        if k in stated or v not in _WORDS[k]:  # stated by the visitor, or no preference ("neutral", "normal", "any")
            continue
        added[k] = v
        words.append(str(rng.choice(_WORDS[k][v])))
    text = prompt.strip().rstrip(".")
    if words:
        text = f"{text}, {', '.join(words)}"
    return Version(text, added, dict(stated))
