"""The sink census's headline numbers, which ``sinks`` and ``ctr`` (it runs the census in its
pass) both declare: shares of heads with first-token and prompt-dependent sinks, the first
token's score beside uniform attention's, and sinks per head."""

from __future__ import annotations

from typing import Callable

from sinkmech.analyses.headlines import measure
from sinkmech.analyses.registry import Headline, Headlines, Tables
from sinkmech.data.tokens import CONTENT, FIRST, LEARNED
from sinkmech.reporting import statistics as st
from sinkmech.reporting.verdicts import SINK_NULL, Missing, need

# Uniform attention makes no sink head: a sink's score must exceed null_margin (>= 1) times the
# score uniform attention gives, so the share and count of sinks under that null are 0.
UNIFORM = "uniform attention (no head clears the null margin)"
HEADS = "heads (bootstrap)"


def head_share(column: str) -> Callable[[Tables], Headline]:
    """The share of heads the summary counts in ``column``, with its Wilson interval."""

    def compute(tables: Tables) -> Headline:
        row = need(tables, "sinks_summary", ("n_heads", column)).iloc[0]
        k, n = int(row[column]), int(row.n_heads)
        return Headline(k / n, *st.wilson(k, n), 0.0, UNIFORM, "heads (Wilson)")

    return compute


def first_token_score(tables: Tables) -> Headline:
    """The first token's mean score over heads beside the score uniform attention gives it."""
    sinks = need(tables, "sinks", ("layer", "head", "sink_kind", "mean_score", SINK_NULL))
    first = sinks[sinks.sink_kind == FIRST].groupby(["layer", "head"])[["mean_score", SINK_NULL]]
    heads = first.mean()
    if heads.empty:
        raise Missing("no first-token rows in `sinks`")
    value, low, high = st.mean_ci(heads.mean_score.to_numpy())
    null = float(heads[SINK_NULL].mean())
    return Headline(value, low, high, null, "uniform attention's first-token score", HEADS)


def sinks_per_head(tables: Tables) -> Headline:
    """Distinct sink labels (first, special, punctuation) per head, every head counted (the
    summary's ``distinct_sink_labels_per_head``), with an interval over heads."""
    sinks = need(tables, "sinks", ("layer", "head", "sink_kind", "is_sink"))
    every = sinks.groupby(["layer", "head"]).size().index
    structural = sinks[sinks.is_sink & ~sinks.sink_kind.isin([CONTENT, LEARNED])]
    counts = structural.groupby(["layer", "head"]).size().reindex(every, fill_value=0)
    return Headline(*st.mean_ci(counts.to_numpy(float)), 0.0, UNIFORM, HEADS)


def headlines(tables: Tables) -> Headlines:
    """The census's headline numbers from its ``sinks`` and ``sinks_summary`` tables."""
    return measure(
        tables,
        {
            "sinks/first_token_share": head_share("first_token_sink_heads"),
            "sinks/prompt_dependent_share": head_share("prompt_dependent_sink_heads"),
            "sinks/first_token_score": first_token_score,
            "sinks/sinks_per_head": sinks_per_head,
        },
    )
