"""Agreement between human and agent QoE ratings: statistics with bootstrap intervals, plotly figures,
and re-judging stored generations with another judge."""

from rlli.analysis.agreement import AgreementRow, Estimate, agreement_table, estimate, format_table, pair_ratings

__all__ = ["AgreementRow", "Estimate", "agreement_table", "estimate", "format_table", "pair_ratings"]
