"""Sinks as context grows (issue 17): first-token sinks, their attention share and tag variance at
each length, from one long text rather than the prompts."""

from __future__ import annotations

from pathlib import Path

from sinkmech.analyses.registry import (
    Analysis,
    Context,
    Headline,
    Headlines,
    ReportSection,
    Tables,
    register,
)
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
from sinkmech.reporting.verdicts import Missing, need

UNIFORM = "uniform attention"
# Summary column -> its uniform-attention null, for each per-length headline.
NULLS = {
    "mean_first_token_score": "mean_first_token_null",
    "first_token_share_last_bin": "uniform_share_last_bin",
}


def run(context: Context, settings: LongContextSettings) -> Tables:
    loaded = context.model("profile")
    tables = long_context_profile(loaded, settings)
    tables["long_context_summary"] = summarise_long_context(tables).assign(model=loaded.name)
    return tables


def headlines(tables: Tables) -> Headlines:
    """Per length L: the first token's mean score beside uniform attention's
    (``long_context/first_token_score_L``), and its attention share from the last position bin
    of queries beside uniform attention's share (``long_context/first_token_share_L``)."""
    columns = ("seq_len", *NULLS, *NULLS.values())
    try:
        summary = need(tables, "long_context_summary", columns)
    except Missing:
        return {}
    out: Headlines = {}
    for _, row in summary.drop_duplicates("seq_len").iterrows():
        for (value, null), name in zip(NULLS.items(), ("score", "share")):
            out[f"long_context/first_token_{name}_{int(row.seq_len)}"] = Headline(
                float(row[value]), null=float(row[null]), null_label=UNIFORM
            )
    return out


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
        headlines=headlines,
    )
)
