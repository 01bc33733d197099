"""The "Agreement" tab: do agents rate like people? Statistics with intervals and the figures, live."""

from __future__ import annotations

import html

import gradio as gr

from rlli.session.studio import Studio, StudioError

STATISTICS = ("spearman", "kendall", "kappa", "alpha", "mae")
TABLE_HEADERS = ["judge", "model", "pairing", "slice", "pairs", "spearman", "kendall", "kappa (quadratic)",
                 "alpha (interval)", "MAE"]


def build(studio: Studio) -> None:
    gr.Markdown("Each person's rating is paired with the agents' ratings of the same image: agents given the "
                "person's own Big-Five, and the preset personas. Intervals: bootstrap 95% over people.")
    refresh = gr.Button("Refresh")
    status = gr.Markdown("")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Agreement", interactive=False, wrap=True)
    with gr.Row():
        scatter = gr.Plot(label="Human vs agent")
        bland = gr.Plot(label="Bland-Altman")
    with gr.Row():
        bars = gr.Plot(label="Per trait level")
        confusion = gr.Plot(label="Score bins")

    def on_refresh():
        try:
            pairs, rows, figs = studio.agreement()
        except StudioError as e:
            return f"**{html.escape(str(e))}**", None, None, None, None, None
        body = [[r.backend, r.model, r.pairing, r.label, r.n_pairs,
                 *[r.statistics[k].text() if k in r.statistics else "-" for k in STATISTICS]] for r in rows]
        note = f"{len(pairs)} human-agent pairs." if len(pairs) else "No paired ratings yet: rate an image first."
        return note, body, figs["scatter"], figs["bland_altman"], figs["trait_bars"], figs["confusion"]

    refresh.click(on_refresh, None, [status, table, scatter, bland, bars, confusion], api_name="agreement")
