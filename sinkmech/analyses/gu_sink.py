"""Gu et al.'s Sink_eps at their settings (eps = the run's ``sinks.gu_eps``, 64-token prompts)."""

from __future__ import annotations

from sinkmech.analyses.measures_section import MEASURES
from sinkmech.analyses.registry import Analysis, Context, Tables, register
from sinkmech.mechanism.gu import GuSettings, gu_sink_table
from sinkmech.mechanism.sinks import RECEIVED
from sinkmech.reporting import measures_plots


def run(context: Context, settings: GuSettings) -> Tables:
    row, layers = gu_sink_table(context.model("census"), context.batches, settings)
    return {"gu_sink": row, "gu_sink_layers": layers}


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
    )
)
