"""The "Participate" tab: consent, the TIPI (or skip), a prompt, the request's journey, the image, a rating.

The person sees the agents' scores of the same image only after rating it; the rating controls are
disabled once used (one rating per rater and image, enforced by the store as well).
"""

from __future__ import annotations

import contextvars
import html

import gradio as gr

from rlli.session.studio import MAX_RAW_PROMPT, ROUND_PHASES, Delivered, Studio, StudioError
from rlli.ui import about
from rlli.ui.common import agent_table, client_address, visitor_from

AGENT_HEADERS = ["agent", "as you?", "score", "reason", "status"]


def journey(d: Delivered) -> str:
    """The request's way through the system, in words (escaped)."""
    e = html.escape
    if d.group_size == 1:
        role = "alone in your group: no other request meant the same, so nothing was shared"
    elif d.is_anchor:
        role = "the **anchor** (your prompt ran the group's shared steps)"
    else:
        role = f"a member; the anchor's prompt: *{e(d.anchor_prompt)}*"
    lines = [f"**Round {d.round_no}**, group {d.group_no} ({d.group_size} request(s)); you are {role}.",
             f"- shared steps: **{d.shared_steps} of {d.steps}**"
             + ("" if d.is_anchor else f" (the fork decision allowed up to {d.max_shared_steps})")
             + f"; own steps: {d.steps - d.shared_steps}; noise from seed {d.noise_seed}",
             f"- allocation by **{e(d.policy)}**: bandwidth {100 * d.bandwidth_share:.0f}% of the band, "
             f"server compute {100 * d.compute_share:.0f}%",
             f"- simulated delay **{d.delay_s:.2f} s** (server {d.delays['server']:.2f}, transmit "
             f"{d.delays['transmit']:.2f}, device {d.delays['device']:.2f}); your energy {d.energy_j:.2f} J",
             f"- predicted quality {d.predicted_quality:.2f}"
             + (f"; measured fidelity {d.fidelity:.2f}" if d.fidelity is not None else "")]
    lines += [f"- **Notice:** {e(n)}" for n in d.notices]
    return "\n".join(lines)


def build(studio: Studio, browser_key: gr.BrowserState, examples: list[str]) -> None:
    from rlli.personas.tipi import TipiError, questionnaire, score

    q = questionnaire()
    profile = gr.State(None)  # (traits as list, instrument) once the TIPI was taken or skipped
    current = gr.State(None)  # the generation id being rated

    gr.Markdown(about.CONSENT)
    consent = gr.Checkbox(label="I have read this and agree to take part", value=False)
    with gr.Column(visible=False) as body:
        with gr.Accordion("Personality questionnaire (TIPI, optional)", open=True):
            gr.Markdown(about.TIPI_INTRO + f"\n\n*{html.escape(q.stem)}*  (1 = {html.escape(q.scale[0])}, "
                        f"7 = {html.escape(q.scale[-1])})")
            items = [gr.Radio(choices=list(range(1, 8)), label=f"{it.number}. {it.text}", value=None)
                     for it in q.items]
            with gr.Row():
                use_tipi = gr.Button("Use my answers", variant="primary")
                skip_tipi = gr.Button("Skip the questionnaire")
            profile_md = gr.Markdown("")
        prompt = gr.Textbox(label="Your prompt", placeholder="e.g. " + (examples[0] if examples else "a red house"),
                            max_length=MAX_RAW_PROMPT, lines=2)
        if examples:
            gr.Examples(examples=[[x] for x in examples], inputs=[prompt], label="Things the model can draw")
        invite = gr.CheckboxGroup(choices=[p.name for p in studio.presets()], label="Invite personas into your round "
                                  "(each writes a prompt, so a lone visitor still sees grouping and sharing)")
        go = gr.Button("Generate my image", variant="primary")
        with gr.Row():
            image = gr.Image(label="Your image", type="numpy", interactive=False, height=256)
            story = gr.Markdown("")
        guests = gr.Gallery(label="Invited personas' images", columns=4, height="auto", visible=False)
        with gr.Group():
            stars = gr.Slider(1, 10, value=5, step=1, label="Your quality of experience (1 = poor, 10 = excellent)",
                              interactive=False)
            reason = gr.Textbox(label="Why? (optional)", max_length=500, interactive=False)
            rate_btn = gr.Button("Submit my rating", interactive=False)
        rated_md = gr.Markdown("")
        agents = gr.Dataframe(headers=AGENT_HEADERS, label="Agents' scores of your image", visible=False, wrap=True)

    consent.change(lambda ok: gr.Column(visible=bool(ok)), [consent], [body], api_name=False)

    def on_tipi(*answers):
        try:
            traits = score(list(answers))
        except TipiError as e:
            return None, f"**{html.escape(str(e))}** (answer all ten items, or skip)"
        shown = ", ".join(f"{t} {v:.2f}" for t, v in zip(("O", "C", "E", "A", "N"), traits.as_tuple()))
        return [list(traits.as_tuple()), "tipi"], f"Your Big-Five scores: {shown}"

    use_tipi.click(on_tipi, items, [profile, profile_md], api_name="tipi")
    skip_tipi.click(lambda: ([None, "skipped"], "Skipped: agents will rate only as the preset personas."),
                    None, [profile, profile_md], api_name=False)

    def on_go(key, prof, text, invited, request: gr.Request, account: gr.OAuthProfile | None,
              progress=gr.Progress()):
        locked = gr.Slider(interactive=False), gr.Textbox(interactive=False), gr.Button(interactive=False)
        try:
            visitor = visitor_from(key, prof, account)
            progress(0.05, desc="joining a round (waiting for other requests)")
            # The round may run on another visitor's thread; Gradio finds this event's progress bar through
            # context variables, so the phases are reported inside a copy of this handler's context.
            here = contextvars.copy_context()

            def on_phase(name: str) -> None:
                done = ROUND_PHASES.index(name) if name in ROUND_PHASES else 0
                here.run(progress, 0.1 + 0.85 * done / len(ROUND_PHASES), desc=f"your round: {name}")

            results = studio.participate(visitor, text, invited or [], address=client_address(request),
                                         on_phase=on_phase)
        except StudioError as e:
            return (None, f"**Cannot run this request:** {html.escape(str(e))}", gr.Gallery(visible=False), None,
                    *locked, "", gr.Dataframe(visible=False))
        mine, others = results[0], results[1:]
        gallery = gr.Gallery(value=[(d.image, f"{d.who}: {d.prompt} (s={d.shared_steps})") for d in others],
                             visible=bool(others))
        return (mine.image, journey(mine), gallery, mine.generation_id, gr.Slider(interactive=True, value=5),
                gr.Textbox(interactive=True, value=""), gr.Button(interactive=True), "", gr.Dataframe(visible=False))

    go.click(on_go, [browser_key, profile, prompt, invite],
             [image, story, guests, current, stars, reason, rate_btn, rated_md, agents],
             api_name="participate", concurrency_limit=studio.settings.round_max_requests,
             concurrency_id="rounds")

    def on_rate(key, prof, gid, value, why, account: gr.OAuthProfile | None, progress=gr.Progress()):
        if gid is None:
            return about.NOT_YET, gr.Button(), gr.Slider(), gr.Textbox(), gr.Dataframe(visible=False)
        try:
            stored, message = studio.rate(visitor_from(key, prof, account), gid, value, why)
        except StudioError as e:
            return f"**{html.escape(str(e))}**", gr.Button(), gr.Slider(), gr.Textbox(), gr.Dataframe(visible=False)
        progress(0.5, desc="waiting for the agents' scores")
        scores = studio.agent_scores(gid)
        text = about.AFTER_RATING if stored else html.escape(message)
        if scores is None:
            text += "\n\nThe agents are still rating; their scores appear in the Agreement tab when done."
        return (text, gr.Button(interactive=False), gr.Slider(interactive=False), gr.Textbox(interactive=False),
                gr.Dataframe(value=agent_table(scores or []), visible=bool(scores)))

    rate_btn.click(on_rate, [browser_key, profile, current, stars, reason], [rated_md, rate_btn, stars, reason, agents],
                   api_name="rate")
