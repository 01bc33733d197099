"""The "Agreement" tab: do agents rate like people? Statistics with intervals and the figures, live."""

from __future__ import annotations

import html

import gradio as gr

from rlli.session.studio import Studio, StudioError

STATISTICS = ("spearman", "kendall", "kappa", "alpha", "mae")
TABLE_HEADERS = ["judge", "model", "pairing", "slice", "pairs", "failed", "spearman", "kendall", "kappa (quadratic)",
                 "alpha (interval)", "MAE", "shuffled-profile rho", "human-human rho (same images)", "people needed",
                 "drop-k"]


def agreement(studio: Studio):
    """(pairs frame, table rows, figures) over everything stored."""
    from rlli.analysis.agreement import agreement_table, pair_ratings
    from rlli.analysis.figures import all_figures

    frame = studio.store().rating_frame()
    pairs = pair_ratings(frame)
    rows = agreement_table(frame, resamples=min(studio.settings.bootstrap_resamples, 300))
    return pairs, rows, all_figures(pairs, rows)


def _rho(d: dict | None) -> str:
    from rlli.analysis.agreement import Estimate

    if not d or "spearman" not in d.get("statistics", {}):
        return "-"
    return Estimate(**d["statistics"]["spearman"]).text()


def table_rows(rows) -> list[list]:
    """One row per slice: the statistics with their intervals, the failed ratings, the shuffled-profile control
    (does the agent read the person, or only the image?), the human-human ceiling on the same images, how many
    people a study needs, and the fewest people whose removal flips "agents beat the control"."""
    return [[r.backend, r.model, r.pairing, r.label, r.n_pairs, r.n_failed,
             *[r.statistics[k].text() if k in r.statistics else "-" for k in STATISTICS],
             _rho(r.shuffled_control), _rho(r.human_human),
             "-" if not r.people_needed else r.people_needed.get("people", "-"),
             "-" if not r.drop_k else r.drop_k.get("k", "-")] for r in rows]


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
            pairs, rows, figs = agreement(studio)
        except StudioError as e:
            return {status: f"**{html.escape(str(e))}**"}
        note = f"{len(pairs)} human-agent pairs." if len(pairs) else "No paired ratings yet: rate an image first."
        return {status: note, table: table_rows(rows), scatter: figs["scatter"], bland: figs["bland_altman"],
                bars: figs["trait_bars"], confusion: figs["confusion"]}

    refresh.click(on_refresh, None, [status, table, scatter, bland, bars, confusion], api_name="agreement")
