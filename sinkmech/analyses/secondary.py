"""Secondary sinks by hidden-state similarity beside the census's attention sinks."""

from __future__ import annotations

from sinkmech.analyses.measures_section import MEASURES
from sinkmech.analyses.registry import Analysis, Context, Tables, register
from sinkmech.mechanism.secondary import NEEDS, SecondarySettings, secondary_sinks
from sinkmech.reporting import measures_plots


def run(context: Context, settings: SecondarySettings) -> Tables:
    overlap, tokens = secondary_sinks(context.model("similarity"), context.batches, settings)
    return {"secondary": overlap, "secondary_tokens": tokens}


SECONDARY = register(
    Analysis(
        name="secondary",
        run=run,
        tables=("secondary", "secondary_tokens"),
        needs={"similarity": NEEDS},
        settings=SecondarySettings,
        figures=lambda tables, sinks: {
            "secondary": measures_plots.secondary_figure(tables["secondary"])
        },
        report=(MEASURES,),
    )
)
