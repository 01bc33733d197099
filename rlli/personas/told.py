"""What an agent perceived and was told, as text a page can show beside its score (pure functions, no I/O).

    from rlli.personas.told import told_markdown, perception_notice
    told_markdown(rating.perception, rating.told, rating.extras)   # the "what the agent was told" panel
    perception_notice([r.perception for r in ratings])             # one line for the page, or ''
"""

from __future__ import annotations

import hashlib
import html

from rlli.personas.judge import PERCEPTIONS

PERCEPTION_LABELS = {
    "image": "saw the image itself (the endpoint received the pixels)",
    "probe-text": "did not see the image: it was given the attribute probe's text reading of it",
    "image-features": "did not see the image: it read two numbers computed from the pixels (colourfulness, brightness)",
    "none": "perceived nothing of the image: it rated from the request, the quality figure and the wait only",
}
MAX_TOLD_CHARS = 6000


def perception_label(perception: str) -> str:
    """One sentence on what a judge with this ``perception`` perceived of the image."""
    if perception not in PERCEPTIONS:
        return f"unknown perception {perception!r}"
    return PERCEPTION_LABELS[perception]


def told_hash(told: str) -> str:
    """The short hash (16 hex digits) under which a rating's ``told`` text is stored or compared."""
    return hashlib.sha256(told.encode()).hexdigest()[:16] if told else ""


def told_markdown(perception: str, told: str, extras: dict | None = None, max_chars: int = MAX_TOLD_CHARS) -> str:
    """Markdown for the "what the agent was told" panel: what it perceived, the exact text it was given
    (HTML-escaped in a fenced block, cut at ``max_chars``), and how the rating was obtained."""
    ex = extras or {}
    lines = [f"**The agent {perception_label(perception)}.**"]
    if told:
        body = told if len(told) <= max_chars else told[:max_chars] + f"\n[... {len(told) - max_chars} more characters]"
        lines += ["", "What it was told (exact text):", "", "```text", html.escape(body.replace("```", "'''"), quote=False),
                  "```", f"(text hash `{told_hash(told)}`)"]
    else:
        lines += ["", "(the exact text was not recorded for this rating)"]
    how = []
    for key, label in (("attempts", "attempts"), ("temperature", "temperature"), ("finish_reason", "finish reason"),
                       ("template_hash", "template"), ("expected_score", "expected score")):
        if ex.get(key) not in (None, ""):
            how.append(f"{label} {ex[key]}")
    if ex.get("cached"):
        how.append("from the cache")
    if how:
        lines += ["", "How: " + ", ".join(how) + "."]
    return "\n".join(lines)


def perception_notice(perceptions: list[str]) -> str:
    """One line for the page when the agents could not see the image ('' when every agent saw it)."""
    kinds = set(perceptions)
    if not kinds or kinds == {"image"}:
        return ""
    if kinds == {"none"}:
        return ("The agents cannot see images here: this image model has no attribute probe and the LLM endpoint "
                "takes no images, so agents rate from your request, the quality figure and the wait only.")
    if kinds <= {"probe-text", "image"} and "probe-text" in kinds:
        return ("The agents do not see your image: they are given a text reading of it by the embedded world's "
                "attribute probe (what it shows, how sure the probe is, its colourfulness and brightness).")
    return "The agents perceived your image in different ways: " + "; ".join(
        f"{sum(p == k for p in perceptions)} {perception_label(k)}" for k in sorted(kinds)) + "."
