"""Small pieces the tabs share: the visitor from browser state, tables of agent scores, round choices."""

from __future__ import annotations

import html

from rlli.personas.judge import BigFive
from rlli.service import Phase
from rlli.session.studio import ROUND_PHASES, AgentScore, StudioError, Visitor

ACCOUNT_PREFIX = "huggingface:"


def visitor_from(key: str | None, profile, account=None) -> Visitor:
    """The visitor of this browser: its stored anonymous key and the profile chosen in this session.

    ``account`` is the Hugging Face login (``gr.OAuthProfile``) on a Space with ``hf_oauth: true``: when
    someone is signed in, their ratings are kept under their account (hashed like every id), so the same
    person is one rater across browsers and devices."""
    username = getattr(account, "username", None)
    if username:
        key = ACCOUNT_PREFIX + str(username)
    elif isinstance(key, str) and key.startswith(ACCOUNT_PREFIX):  # only a login makes an account key
        raise StudioError("Sign in with Hugging Face to use your account; this browser's id is not valid.")
    if not key:
        raise StudioError("This browser has no visitor id yet; reload the page.")
    traits, instrument = None, ""
    if profile and profile[0] is not None:
        try:
            traits = BigFive.from_sequence(profile[0])
        except (TypeError, ValueError):
            raise StudioError("Your questionnaire answers were not understood; take it again.") from None
        instrument = str(profile[1] or "tipi")
    return Visitor(str(key), traits, instrument)


def agent_table(scores: list[AgentScore]) -> list[list]:
    """Rows for a gr.Dataframe (its "str" cells are shown as plain text, never as markup)."""
    return [[s.persona, "yes" if s.as_you else "", s.rating.score, s.rating.reason, s.rating.status,
             s.rating.perception] for s in scores]


def told_panel(scores: list[AgentScore]) -> str:
    """Markdown: what the agents perceived (one line) and, per agent, the exact text it was told."""
    from rlli.personas.told import perception_notice, told_markdown

    head = perception_notice([s.rating.perception for s in scores])
    parts = [head] if head else []
    for s in scores:
        parts.append(f"#### {html.escape(s.persona)}\n\n" + told_markdown(s.rating.perception, s.rating.told,
                                                                          s.rating.extras))
    return "\n\n".join(parts)


def client_address(request) -> str | None:
    """The caller's network address from Gradio's request (for rate limits; hashed before it is kept)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def progress_fraction(phase: Phase) -> float:
    """Where a round's progress bar stands when ``phase`` starts (the wait for the round window is the first 10%)."""
    done = ROUND_PHASES.index(phase) if phase in ROUND_PHASES else 0
    return 0.1 + 0.85 * done / len(ROUND_PHASES)
