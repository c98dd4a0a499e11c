"""Sun et al.'s massive activations beside the census's sinks, and the zero / mean edits."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
from sinkmech.mechanism.massive import (
    NEEDS,
    MassiveSettings,
    edit_layer,
    massive_activations,
    massive_interventions,
)
from sinkmech.reporting import measures_plots
from sinkmech.reporting import statistics as st
from sinkmech.reporting.verdicts import Missing, need


def run(context: Context, settings: MassiveSettings) -> Tables:
    loaded = context.model("activations")
    top, summary = massive_activations(loaded, context.batches, settings)
    edits = massive_interventions(loaded, context.batches, edit_layer(summary), settings)
    tables = {"massive": top, "massive_summary": summary}
    if not edits.empty:
        tables["massive_interventions"] = edits
    return tables


def top_ratio(tables: Tables) -> Headline:
    """The largest |h| over the median of its layer (Sun et al. call >= 1000 massive); it has no
    null: the median is the reference."""
    return Headline(float(need(tables, "massive_summary", ("top_ratio",)).top_ratio.max()))


def on_sinks(tables: Tables) -> Headline:
    """The share of massive tokens that are attention sinks, pooled over layers, beside the
    share of all real positions that are sinks."""
    summary = need(tables, "massive_summary", ("n_massive_tokens", "frac_massive_tokens_sink"))
    massive = summary[summary.n_massive_tokens > 0]
    if massive.empty:
        raise Missing("no massive token")
    weights = massive.n_massive_tokens.to_numpy(float)
    value = float(np.average(massive.frac_massive_tokens_sink, weights=weights))
    null = float(summary.sink_base_rate.mean()) if "sink_base_rate" in summary else np.nan
    return Headline(value, null=null, null_label="share of all real positions that are sinks")


def zero_delta_loss(tables: Tables) -> Headline:
    """Loss change when the massive activations are set to zero, beside zeroing as many random
    entries (the control)."""
    edits = need(tables, "massive_interventions", ("intervention", "prompt", "delta_loss"))
    zero = edits[edits.intervention == "zero"]
    if zero.empty:
        raise Missing("no zero edit")
    prompts = zero[[c for c in ("batch", "prompt") if c in zero]].astype(str).agg(":".join, axis=1)
    interval = st.group_mean_ci(zero.delta_loss.to_numpy(), prompts.to_numpy())
    control = edits[edits.intervention == "random_zero"].delta_loss.mean()
    return Headline(*interval, float(control), "as many random entries zeroed", "prompts (t)")


def headlines(tables: Tables) -> Headlines:
    """Sun et al.'s massive activations: how large, whether they sit on sinks, what zeroing them
    costs."""
    return measure(
        tables,
        {
            "massive/top_ratio": top_ratio,
            "massive/massive_tokens_on_sinks": on_sinks,
            "massive/zero_delta_loss": zero_delta_loss,
        },
    )


MASSIVE = register(
    Analysis(
        name="massive",
        run=run,
        tables=("massive", "massive_summary", "massive_interventions"),
        needs={"activations": NEEDS},
        settings=MassiveSettings,
        figures=lambda tables, sinks: {
            "massive": measures_plots.massive_figure(
                tables["massive_summary"], tables.get("massive_interventions", pd.DataFrame())
            )
        },
        report=(MEASURES,),
        headlines=headlines,
    )
)
