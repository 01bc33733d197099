"""The parametric persona judge: trait-weighted preferences over quality, delay and the image's look.

No LLM: deterministic, microseconds per rating, so the allocation policy can train on it on a CPU.
A persona with Big-Five traits (O, C, E, A, N) in [0, 1] rates a delivery as

    U_q = clip((q - 0.5) / 0.5, 0, 1) ** (1 + 2 C)          conscientious people punish quality drops
    U_d = exp(-delay / (T0 * (1.25 + 0.5 A - 0.75 N)))       neurotic people are impatient, agreeable ones patient
    U_l = 1 - (|colourfulness - O| + |brightness - (0.3 + 0.4 E)|) / 2
                                                              open people like colourful images, extraverts bright ones
    w   = normalise(0.30 + 0.35 C - 0.15 O,  0.20 + 0.35 N + 0.10 E,  0.10 + 0.20 O + 0.05 E)
    S   = clip(w_q U_q + w_d U_d + w_l U_l + 0.15 (A - 0.5), 0, 1)   agreeable people rate a little higher
    QoE = 1 + 9 S                                              (the Rating's score: QoE rounded, 1..10)

T0 (``delay_scale_s``, default 10 s) is the patience of an average persona. The look is read from
``Delivery.extras`` (``colourfulness``, ``brightness`` in [0, 1], see :func:`look_features`), else
from words in ``Delivery.description``, else neutral (0.5, 0.5). The directions follow the
personality-aesthetics literature the paper builds on (PsychoFlickr: image features predict
attributed traits); the magnitudes are our choice and are documented in docs/system-model.md.
"""

from __future__ import annotations

import re
import time

import numpy as np

from rlli.network.qoe import NEUTRAL_LOOK, trait_qoe, trait_weights, utilities
from rlli.personas.judge import Delivery, Persona, Rating

_COLOUR_WORDS = {"red", "orange", "yellow", "green", "blue", "purple", "colourful", "colorful", "vivid", "busy",
                 "warm", "bright", "sunset"}
_BRIGHT_WORDS = {"day", "sunny", "bright", "clear", "snow", "light"}
_DARK_WORDS = {"night", "dark", "rain", "dim", "cold", "calm"}


def look_features(image: np.ndarray) -> tuple[float, float]:
    """(colourfulness, brightness) in [0, 1] of an RGB uint8 image: Hasler-Suesstrunk colourfulness / 100
    and mean Rec. 601 luma / 255."""
    x = np.asarray(image, dtype=float)
    if x.ndim != 3 or x.shape[-1] != 3 or x.size == 0:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {x.shape}")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    m = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return float(np.clip(m / 100.0, 0, 1)), float(np.clip(luma.mean() / 255.0, 0, 1))


def look_from_text(description: str) -> tuple[float, float]:
    """A rough look from words: colour words raise colourfulness; day/bright vs night/dark move brightness."""
    words = re.findall(r"[a-z]+", description.lower())
    if not words:
        return NEUTRAL_LOOK
    colour = sum(w in _COLOUR_WORDS for w in words)
    bright = sum(w in _BRIGHT_WORDS for w in words) - sum(w in _DARK_WORDS for w in words)
    return float(np.clip(0.4 + 0.15 * colour, 0, 1)), float(np.clip(0.5 + 0.15 * bright, 0, 1))


def delivery_look_source(d: Delivery) -> tuple[tuple[float, float], str]:
    """(look, perception): from the pixels' numbers in ``extras`` (``image-features``), else from the
    description's words (``probe-text``), else neutral (``none``)."""
    ex = d.extras or {}
    try:
        c, b = float(ex["colourfulness"]), float(ex["brightness"])
        if np.isfinite(c) and np.isfinite(b):
            return (float(np.clip(c, 0, 1)), float(np.clip(b, 0, 1))), "image-features"
    except (KeyError, TypeError, ValueError):
        pass
    if re.search(r"[a-z]", (d.description or "").lower()):
        return look_from_text(d.description), "probe-text"
    return NEUTRAL_LOOK, "none"


def delivery_look(d: Delivery) -> tuple[float, float]:
    return delivery_look_source(d)[0]


class TraitJudge:
    """The parametric persona judge (``backend="trait"``, ``model="parametric-v1"``)."""

    backend = "trait"
    model = "parametric-v1"

    def __init__(self, delay_scale_s: float = 10.0):
        if not delay_scale_s > 0:
            raise ValueError("delay_scale_s must be positive")
        self.delay_scale_s = float(delay_scale_s)

    def rate_many(self, pairs: list[tuple[Persona, Delivery]]) -> list[Rating]:
        return [self.rate(persona, delivery) for persona, delivery in pairs]

    def rate(self, persona: Persona, delivery: Delivery) -> Rating:
        t0 = time.perf_counter()
        q, d = float(delivery.quality), float(delivery.delay_s)
        if not (np.isfinite(q) and np.isfinite(d)) or d < 0:
            return Rating(None, f"cannot rate quality={q!r}, delay={d!r}", "invalid", self.backend, self.model,
                          time.perf_counter() - t0)
        traits = np.array(persona.traits.as_tuple())
        look_pair, perception = delivery_look_source(delivery)
        look = np.array(look_pair)
        qoe = float(trait_qoe(traits, q, d, look, self.delay_scale_s))
        w = trait_weights(traits)
        u = utilities(traits, q, d, look, self.delay_scale_s)
        names = ("quality", "waiting time", "look")
        top = int(np.argmax(w * (1.0 - u)))  # what cost the most points
        reason = (f"QoE {qoe:.2f}: quality {q:.2f}, waited {d:.1f} s, look (colour {look[0]:.2f}, brightness "
                  f"{look[1]:.2f}); weights {w[0]:.2f}/{w[1]:.2f}/{w[2]:.2f}; the {names[top]} cost the most")
        score = int(np.clip(np.rint(qoe), 1, 10))
        told = (f"traits O C E A N {' '.join(f'{v:.2f}' for v in traits)}; quality {q:.2f}; delay {d:.1f} s; "
                f"look colourfulness {look[0]:.2f}, brightness {look[1]:.2f} (from {perception})")
        return Rating(score, reason, "ok", self.backend, self.model, time.perf_counter() - t0, perception=perception,
                      told=told, extras={"expected_score": round(qoe, 4)})
