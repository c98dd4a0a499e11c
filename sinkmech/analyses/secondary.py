"""Secondary sinks by hidden-state similarity beside the census's attention sinks."""

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
from sinkmech.mechanism.secondary import NEEDS, SecondarySettings, secondary_sinks
from sinkmech.reporting import measures_plots
from sinkmech.reporting.verdicts import need


def run(context: Context, settings: SecondarySettings) -> Tables:
    overlap, tokens = secondary_sinks(context.model("similarity"), context.batches, settings)
    return {"secondary": overlap, "secondary_tokens": tokens}


def similarity_share(tables: Tables) -> Headline:
    """Tokens (over layers) whose hidden state is similar to the first token's, as a share of
    those compared, beside the share similar to the second token's (the null)."""
    table = need(tables, "secondary", ("n_compared", "n_similarity", "n_similar_to_second"))
    compared = table.n_compared.sum()
    null = table.n_similar_to_second.sum() / compared
    return Headline(table.n_similarity.sum() / compared, null=null, null_label="second token")


def overlap(tables: Tables) -> Headline:
    """Similarity sinks that are also the census's attention sinks, summed over layers, beside
    the overlap two independent sets of the same sizes would have."""
    table = need(tables, "secondary", ("n_both", "expected_both_if_independent"))
    expected = float(table.expected_both_if_independent.sum())
    return Headline(float(table.n_both.sum()), null=expected, null_label="independent sets")


def headlines(tables: Tables) -> Headlines:
    """Secondary sinks by hidden-state similarity and their overlap with attention sinks."""
    return measure(
        tables,
        {
            "secondary/similarity_share": similarity_share,
            "secondary/overlap_with_attention": overlap,
        },
    )


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
        headlines=headlines,
    )
)
