"""Gu et al.'s Sink_eps at their settings (eps = the run's ``sinks.gu_eps``, 64-token prompts)."""

from __future__ import annotations

from sinkmech.analyses.headlines import measure
from sinkmech.analyses.measures_section import MEASURES
from sinkmech.analyses.registry import (
    Analysis,
    Context,
    Headline,
    Headlines,
    Tables,
    register,
)
from sinkmech.mechanism.gu import GuSettings, gu_sink_table
from sinkmech.mechanism.sinks import RECEIVED
from sinkmech.reporting import measures_plots
from sinkmech.reporting.verdicts import need


def run(context: Context, settings: GuSettings) -> Tables:
    row, layers = gu_sink_table(context.model("census"), context.batches, settings)
    return {"gu_sink": row, "gu_sink_layers": layers}


def sink_eps(tables: Tables) -> Headline:
    """Gu et al.'s Sink_eps (percent of heads and prompts whose first token clears eps) with its
    bootstrap interval over prompts, beside the second token's (the null)."""
    columns = ("sink_eps_pct", "ci_low_pct", "ci_high_pct", "second_token_sink_eps_pct")
    row = need(tables, "gu_sink", columns).iloc[0]
    values = [float(row[c]) for c in columns]
    return Headline(
        *values, null_label="the second token's Sink_eps", resampling="prompts (bootstrap)"
    )


def importance(tables: Tables) -> Headline:
    """The first token's mean importance beside uniform attention's 1 / length."""
    row = need(tables, "gu_sink", ("mean_first_token_importance", "uniform_importance")).iloc[0]
    null = float(row.uniform_importance)
    return Headline(
        float(row.mean_first_token_importance), null=null, null_label="uniform attention"
    )


def headlines(tables: Tables) -> Headlines:
    """Sink_eps and the first token's importance, each beside its null."""
    return measure(
        tables, {"gu_sink/sink_eps_pct": sink_eps, "gu_sink/first_token_importance": importance}
    )


GU_SINK = register(
    Analysis(
        name="gu_sink",
        run=run,
        tables=("gu_sink", "gu_sink_layers"),
        needs={"census": RECEIVED},
        settings=GuSettings,
        figures=lambda tables, sinks: {
            "gu_sink": measures_plots.gu_figure(tables["gu_sink"], tables["gu_sink_layers"])
        },
        report=(MEASURES,),
        headlines=headlines,
    )
)
