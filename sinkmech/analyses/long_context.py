"""Sinks as context grows (issue 17): first-token sinks, their attention share and tag variance at
each length, from one long text rather than the prompts."""

from __future__ import annotations

from pathlib import Path

from sinkmech.analyses.registry import Analysis, Context, ReportSection, Tables, register
from sinkmech.mechanism.ctr import STREAM
from sinkmech.mechanism.long_context import (
    FIRST_COLUMNS,
    LongContextSettings,
    long_context_profile,
    long_text_files,
    summarise_long_context,
)
from sinkmech.reporting import measures_plots
from sinkmech.reporting.sections import long_context_section


def run(context: Context, settings: LongContextSettings) -> Tables:
    loaded = context.model("profile")
    tables = long_context_profile(loaded, settings)
    tables["long_context_summary"] = summarise_long_context(tables).assign(model=loaded.name)
    return tables


LONG_CONTEXT = register(
    Analysis(
        name="long_context",
        run=run,
        tables=(
            "long_context_sinks",
            "long_context_share",
            "long_context_variance",
            "long_context_summary",
        ),
        needs={"profile": STREAM | FIRST_COLUMNS},
        settings=LongContextSettings,
        reads=frozenset({"sinks"}),
        figures=lambda tables, sinks: {"long_context": measures_plots.long_context_figure(tables)},
        report=(
            ReportSection(
                "Sinks as context grows (`experiment=long_context`)",
                lambda t: long_context_section(t["long_context_summary"]),
                text=(
                    "Per length: heads whose first-token score exceeds the threshold, the mean "
                    "first-token score and its ratio to the uniform-attention null, and the first "
                    "token's mean attention share from the last position bin of queries as a "
                    "multiple of uniform attention's share (1 = no preference). Rotary models run "
                    "past their trained context with RoPE unchanged."
                ),
            ),
        ),
        input_files=lambda settings: [Path(f) for f in long_text_files(settings.text)],
        lengths=lambda settings, loaded: list(settings.lengths),
    )
)
