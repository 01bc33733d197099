"""Cleaning and checking user prompts before anything runs.

Bad input gets a clear message and nothing runs: empty input, too many prompts, a prompt over the
length limit. Prompts are normalised (Unicode NFKC, control and zero-width characters removed,
whitespace collapsed) so odd input cannot break tokenisers or displays; markup is kept as plain
text and is only ever shown escaped.
"""

from __future__ import annotations

import unicodedata


class PromptError(ValueError):
    """A user-facing problem with the prompts; the message says what to change."""


def clean_prompt(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text))
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return " ".join(text.split())


def raw_limit(max_prompts: int, max_chars: int) -> int:
    """The most characters a whole input may have before it is even read: every prompt at its limit."""
    return max_prompts * (max_chars + 1)


def parse_prompts(text: str, max_prompts: int, max_chars: int) -> list[str]:
    """Prompts from text with one prompt per line; blank lines are skipped.

    The raw size is checked first, before any normalisation, so a huge input costs nothing.
    """
    if len(str(text or "")) > raw_limit(max_prompts, max_chars):
        raise PromptError(f"The input has {len(str(text)):,} characters; at most {raw_limit(max_prompts, max_chars):,} "
                          f"fit in one round ({max_prompts} prompts of {max_chars}).")
    prompts = [p for p in (clean_prompt(line) for line in str(text or "").splitlines()) if p]
    if not prompts:
        raise PromptError("Enter at least one prompt, one per line.")
    if len(prompts) > max_prompts:
        raise PromptError(f"{len(prompts)} prompts given; at most {max_prompts} fit in one round.")
    for i, p in enumerate(prompts, 1):
        if len(p) > max_chars:
            raise PromptError(f"Prompt {i} has {len(p)} characters; the limit is {max_chars}.")
    return prompts
