"""Sun et al.'s massive activations beside the census's sinks, and the zero / mean edits."""

from __future__ import annotations

import pandas as pd

from sinkmech.analyses.measures_section import MEASURES
from sinkmech.analyses.registry import Analysis, Context, Tables, register
from sinkmech.mechanism.massive import (
    NEEDS,
    MassiveSettings,
    edit_layer,
    massive_activations,
    massive_interventions,
)
from sinkmech.reporting import measures_plots


def run(context: Context, settings: MassiveSettings) -> Tables:
    loaded = context.model("activations")
    top, summary = massive_activations(loaded, context.batches, settings)
    edits = massive_interventions(loaded, context.batches, edit_layer(summary), settings)
    tables = {"massive": top, "massive_summary": summary}
    if not edits.empty:
        tables["massive_interventions"] = edits
    return tables


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
    )
)
