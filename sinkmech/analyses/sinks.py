"""The sink census (Sec. 2 of arXiv 2502.00919): which keys each head's attention sinks on."""

from __future__ import annotations

import pandas as pd

from sinkmech.analyses import census_headlines
from sinkmech.analyses.registry import Analysis, Context, ReportSection, Tables, register
from sinkmech.mechanism.learned_sinks import LEARNED_SINK
from sinkmech.mechanism.sinks import CENSUS, detect_sinks
from sinkmech.reporting import plots
from sinkmech.reporting.sections import sink_section


def run(context: Context, _settings: None) -> Tables:
    table, summary = detect_sinks(context.model("census"), context.batches, context.sinks)
    return {"sinks": table, "sinks_summary": summary}


def sink_rows(tables: Tables) -> pd.DataFrame:
    """The census rows of heads with a sink (a model page's long table)."""
    sinks = tables["sinks"]
    return sinks[sinks.is_sink] if "is_sink" in sinks else sinks


SINKS = register(
    Analysis(
        name="sinks",
        run=run,
        tables=("sinks", "sinks_summary"),
        needs={"census": CENSUS | LEARNED_SINK},
        figures=lambda tables, sinks: {
            "sinks_heatmap": plots.sink_heatmap(tables["sinks"], sinks.sink)
        },
        report=(
            ReportSection("Sinks (Sec. 2)", lambda t: sink_section(t["sinks_summary"])),
            ReportSection("Sinks (heads with a sink only)", sink_rows, per_model=True),
        ),
        headlines=census_headlines.headlines,
    )
)
