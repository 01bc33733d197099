"""The "Participate" tab: consent, the TIPI (or skip), a prompt, the request's journey, the image, a rating.

The person sees the agents' scores of the same image only after rating it; the rating controls are
disabled once used (one rating per rater and image, enforced by the store as well).
"""

from __future__ import annotations

import contextvars
import html

import gradio as gr

from rlli.service import Phase
from rlli.session.studio import BUSY, MAX_RAW_PROMPT, Delivered, Studio, StudioError
from rlli.ui import about
from rlli.ui.common import agent_table, client_address, progress_fraction, told_panel, visitor_from

AGENT_HEADERS = ["agent", "as you?", "score", "reason", "status", "perceived"]


def journey(d: Delivered) -> str:
    """The request's journey through its round, as the person reads it (a pure function of the delivery)."""
    e = html.escape
    u = d.result.allocation
    g = d.group
    if len(g.members) == 1:
        role = "alone in its group (no similar prompt in this round)"
    elif d.is_anchor:
        role = "the group's **anchor** (its prompt ran the shared steps)"
    else:
        role = f"a member; the anchor's prompt: *{e(d.anchor_prompt)}*"
    lines = [f"**Round {d.round_no}**, group {g.number} ({len(g.members)} request(s)); you are {role}.",
             f"- shared steps: **{d.fork_step} of {d.steps}**"
             + ("" if d.is_anchor else f" (the fork decision allowed up to {d.result.fork.max_shared_steps})")
             + f"; own steps: {d.own_steps}; noise from seed {d.result.output.noise_seed}"]
    if d.fork_step == 0 and not (d.is_anchor and g.prefix_steps > 0):
        lines.append(f"- allocation by **{e(d.policy)}**: nothing was handed off to you, so your device generated "
                     "every step (no share of the band or of the server was needed)")
    else:
        lines.append(f"- allocation by **{e(d.policy)}**: bandwidth {100 * u.bandwidth_share:.0f}% of the band, "
                     f"server compute {100 * u.compute_share:.0f}%")
    origin = d.result.output.start_origin
    if origin:
        lines.append(f"- your image started from a trunk kept from an earlier round: **shared with a request from "
                     f"{float(origin.get('age_s', 0.0)):.0f} seconds ago** (*{e(str(origin.get('prompt', '')))}*; its "
                     f"first {origin.get('step', d.fork_step)} steps, noise of seed {d.result.output.noise_seed})")
    lines += [f"- simulated delay **{u.delay_s:.2f} s** (server {u.delay_server_s:.2f}, transmit {u.delay_tx_s:.2f}, "
              f"device {u.delay_device_s:.2f}); your energy {u.energy_j:.2f} J",
              f"- predicted quality {u.quality:.2f}"
              + (f"; measured fidelity {d.result.fidelity:.2f}" if d.result.fidelity is not None else "")]
    lines += [f"- **Notice:** {e(n)}" for n in d.notices]
    return "\n".join(lines)


def crisp(image, box: int = 256):
    """A small image scaled up by whole pixels (no smoothing) to fill a ``box``-pixel frame, as the Personas
    gallery does; larger images are shown as they are."""
    import numpy as np

    img = np.asarray(image)
    k = max(1, box // max(img.shape[:2]))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1) if k > 1 else img


def native_png(image) -> str:
    """The image at its native size as a PNG file to download."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    path = Path(tempfile.mkdtemp(prefix="rlli-image-")) / "my-image.png"
    Image.fromarray(image).save(path)
    return str(path)


def guest_items(others: list[Delivered]) -> list[tuple]:
    """Invited personas' images: who, their version of the prompt, how it was written, where it left the trunk."""
    return [(crisp(d.image), f"{d.who}: {d.prompt} ({d.written_by or 'written by its LLM'}; shared {d.fork_step} of "
                             f"{d.steps} steps with group {d.group.number})") for d in others]


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
        native = gr.File(label="Your image at its native size (PNG)", interactive=False, visible=False)
        guests = gr.Gallery(label="Invited personas' images", columns=4, height="auto", visible=False)
        with gr.Group():
            stars = gr.Slider(1, 10, value=5, step=1, label="Your quality of experience (1 = poor, 10 = excellent)",
                              interactive=False)
            reason = gr.Textbox(label="Why? (optional)", max_length=500, interactive=False)
            rate_btn = gr.Button("Submit my rating", interactive=False)
        rated_md = gr.Markdown("")
        agents = gr.Dataframe(headers=AGENT_HEADERS, label="Agents' scores of your image", visible=False, wrap=True)
        with gr.Accordion("What the agents perceived and were told", open=False, visible=False) as told_box:
            told_md = gr.Markdown("")
        with gr.Accordion("Rate images other visitors received (optional: helps compare people with people)",
                          open=False, visible=False) as others_box:
            other_note = gr.Markdown("")
            other_image = gr.Image(label="Another visitor's image", type="numpy", interactive=False, height=256)
            other_gid = gr.State(None)
            other_stars = gr.Slider(1, 10, value=5, step=1, label="Your quality of experience for this image")
            with gr.Row():
                other_rate = gr.Button("Submit and show another")
                other_next = gr.Button("Show another")

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

            def on_phase(phase: Phase) -> None:
                here.run(progress, progress_fraction(phase), desc=f"your round: {phase.label}")

            results = studio.participate(visitor, text, invited or [], address=client_address(request),
                                         on_phase=on_phase)
        except StudioError as e:
            return {image: None, native: gr.File(visible=False),
                    story: f"**Cannot run this request:** {html.escape(str(e))}",
                    guests: gr.Gallery(visible=False), current: None, stars: locked[0], reason: locked[1],
                    rate_btn: locked[2], rated_md: "", agents: gr.Dataframe(visible=False)}
        mine, others = results[0], results[1:]
        return {image: crisp(mine.image), native: gr.File(value=native_png(mine.image), visible=True),
                story: journey(mine), guests: gr.Gallery(value=guest_items(others),
                                                                             visible=bool(others)),
                current: mine.generation_id, stars: gr.Slider(interactive=True, value=5),
                reason: gr.Textbox(interactive=True, value=""), rate_btn: gr.Button(interactive=True), rated_md: "",
                agents: gr.Dataframe(visible=False)}

    go.click(on_go, [browser_key, profile, prompt, invite],
             [image, story, guests, current, stars, reason, rate_btn, rated_md, agents, native],
             api_name="participate", concurrency_limit=studio.settings.round_max_requests,
             concurrency_id="rounds")

    def on_rate(key, prof, gid, value, why, account: gr.OAuthProfile | None, progress=gr.Progress()):
        """The rating is acknowledged at once; the agents' scores follow when they are in (with progress)."""
        if gid is None:
            yield {rated_md: about.NOT_YET}
            return
        try:
            stored, message = studio.rate(visitor_from(key, prof, account), gid, value, why)
        except StudioError as e:
            yield {rated_md: f"**{html.escape(str(e))}**"}
            return
        text = about.AFTER_RATING if stored else html.escape(message)
        locked = {rate_btn: gr.Button(interactive=False), stars: gr.Slider(interactive=False),
                  reason: gr.Textbox(interactive=False)}
        yield {rated_md: text + "\n\n*The agents' scores of your image appear here when they are in.*", **locked}
        progress(0.5, desc="the agents are rating your image")
        scores = studio.agent_scores(gid)
        if scores == BUSY:
            text += ("\n\nThe agents are busy with earlier visitors: their ratings of your image are recorded as "
                     "pending and will be filled in later (they will appear in the Agreement tab).")
            scores = []
        elif scores is None:
            text += "\n\nThe agents are still rating; their scores appear in the Agreement tab when done."
        yield {rated_md: text, **locked, agents: gr.Dataframe(value=agent_table(scores or []), visible=bool(scores)),
               told_md: told_panel(scores or []), told_box: gr.Accordion(visible=bool(scores)),
               others_box: gr.Accordion(visible=True)}

    def show_other(key, prof, account: gr.OAuthProfile | None, note: str = ""):
        try:
            found = studio.next_to_rate(visitor_from(key, prof, account))
        except StudioError as e:
            return {other_note: f"**{html.escape(str(e))}**"}
        if found is None:
            return {other_note: note + "No other visitor's image is waiting for a rating right now.", other_image: None,
                    other_gid: None}
        gid, prompt, img = found
        return {other_note: note + f"Another visitor asked for: *{html.escape(prompt)}*", other_image: crisp(img),
                other_gid: gid}

    def rate_other(key, prof, gid, value, account: gr.OAuthProfile | None):
        if gid is None:
            return show_other(key, prof, account)
        try:
            _, message = studio.rate(visitor_from(key, prof, account), gid, value, "")
        except StudioError as e:
            return {other_note: f"**{html.escape(str(e))}**"}
        return show_other(key, prof, account, html.escape(message) + " ")

    rate_btn.click(on_rate, [browser_key, profile, current, stars, reason],
                   [rated_md, rate_btn, stars, reason, agents, told_md, told_box, others_box], api_name="rate")
    other_next.click(show_other, [browser_key, profile], [other_note, other_image, other_gid], api_name=False)
    other_rate.click(rate_other, [browser_key, profile, other_gid, other_stars], [other_note, other_image, other_gid],
                     api_name="rate_other")
