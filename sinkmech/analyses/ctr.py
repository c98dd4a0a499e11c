"""Catch, tag, release (Sec. 3-4): the census, tag variance with its controls, release and the
tag interventions, in one streamed pass plus the edits."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pandas as pd

from sinkmech.analyses import census_headlines
from sinkmech.analyses.headlines import measure
from sinkmech.analyses.registry import (
    Analysis,
    Context,
    Headline,
    Headlines,
    ReportSection,
    Tables,
    register,
)
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import NEEDS, CTRSettings, analyse_ctr
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models import LoadedModel
from sinkmech.reporting import plots
from sinkmech.reporting import statistics as st
from sinkmech.reporting.attention_forms import (
    ATTENTION_FORMS_TEXT,
    MINIMAL_FORMS_TEXT,
    attention_forms_section,
    minimal_forms_section,
)
from sinkmech.reporting.claims_release import (
    PROMPTS_PER_GROUP,
    RELEASE_EFFECT,
    RELEASE_RANDOM_RATIO,
    RELEASE_UNIT,
    remove_vs_random,
    tag_heads,
    written_pairs,
)
from sinkmech.reporting.claims_tags import EXCESS, VARIANCE_CONTROL, excess_interval, rank_matched
from sinkmech.reporting.sections import intervention_section, variance_section
from sinkmech.reporting.verdicts import Missing, need

TABLES = (
    "sinks",
    "sinks_summary",
    "catch",
    "variance",
    "variance_summary",
    "release",
    "interventions",
    "attention_form",
    "value_norms",
)


def run(context: Context, settings: CTRSettings) -> Tables:
    settings = replace(settings, sinks=context.sinks)
    return analyse_ctr(context.loaded, context.batches, settings, context.resolution)


def check(loaded: LoadedModel, settings: CTRSettings) -> None:
    d_head = int(loaded.model.cfg.d_head)
    too_big = [r for r in settings.ranks if r > d_head]
    if too_big:
        raise ConfigError(
            f"experiment.ctr.ranks {too_big} exceed the head dimension {d_head} of {loaded.name}"
        )


def figures(tables: Tables, sinks: SinkThresholds) -> dict:
    drawn = {"sinks_heatmap": plots.sink_heatmap(tables["sinks"], sinks.sink)}
    if (tables["variance"]["rank"] == 1).any():  # the figure shows rank-1 variance explained
        drawn["variance_explained"] = plots.variance_figure(tables["variance"])
    if not tables["interventions"].empty:
        drawn["interventions"] = plots.intervention_figure(tables["interventions"])
    return drawn


def tag_variance(tables: Tables) -> Headline:
    """Mean rank-1 variance a head's tag explains, over heads with sink keys, beside the same
    heads' non-sink-key control."""
    variance = need(tables, "variance", ("rank", "tag_variance_explained"))
    heads = variance[variance["rank"] == 1].dropna(subset=["tag_variance_explained"])
    if heads.empty:
        raise Missing("no head with sink keys")
    value, low, high = st.mean_ci(heads.tag_variance_explained.to_numpy())
    control = heads[VARIANCE_CONTROL].mean() if VARIANCE_CONTROL in heads else float("nan")
    label = "value directions of as many non-sink keys (rank 1)"
    return Headline(value, low, high, float(control), label, "heads (bootstrap)")


def tag_excess(tables: Tables) -> Headline:
    """Mean rank-1 excess of the tag over the non-sink-key control, with the jackknife interval
    over prompt groups the ledger uses (``claims_tags.excess_interval``)."""
    variance = need(tables, "variance", ("layer", "head", "rank", "tag_variance_explained"))
    need(tables, "variance", (VARIANCE_CONTROL, *EXCESS))
    heads = rank_matched(variance, "1").dropna(subset=list(EXCESS))
    if heads.empty:
        raise Missing("no head with both sink and non-sink keys")
    interval, _, unit = excess_interval(heads)
    return Headline(*interval, 0.0, "minus the non-sink-key control (rank 1)", unit)


def release_pairs(tables: Tables, read: str) -> tuple[pd.DataFrame, str]:
    """The tag's ``read`` paired with its null's, and the null in words: the other direction the
    same head writes that is read most (``claims_release``), or a random direction's 1 for
    tables that hold tag reads only."""
    frame = need(tables, "release", ("layer", "head", "later_layer", "later_head", read))
    if "direction" in frame and frame.direction.nunique() > 1:
        pairs, kind = written_pairs(frame, read)
        null = f"the head's {kind} direction (its other direction read most)"
    else:
        pairs = frame.assign(tag=frame[read], null=RELEASE_RANDOM_RATIO)
        null = "a random direction (read 1 in expectation; no other direction in the table)"
    if pairs.empty:
        raise Missing("no tag read paired with its null")
    return pairs, null


def release_read(read: str) -> Callable[[Tables], Headline]:
    """Mean tag read over later heads beside the null direction's."""

    def compute(tables: Tables) -> Headline:
        pairs, null = release_pairs(tables, read)
        value, low, high = st.cluster_bootstrap_ci(pairs.tag, tag_heads(pairs))
        return Headline(value, low, high, float(pairs.null.mean()), null, RELEASE_UNIT)

    return compute


def release_excess(read: str) -> Callable[[Tables], Headline]:
    """Mean tag read minus its null's, paired by later head."""

    def compute(tables: Tables) -> Headline:
        pairs, null = release_pairs(tables, read)
        interval = st.cluster_bootstrap_ci(pairs.tag - pairs.null, tag_heads(pairs))
        return Headline(*interval, 0.0, f"minus {null}", RELEASE_UNIT)

    return compute


def remove_minus_random(tables: Tables) -> Headline:
    """How much more removing the tag moves the final residual than an equal-norm random edit
    of the same heads, paired by prompt (the ledger's release-edit rule)."""
    edits = need(tables, "interventions", ("intervention", "prompt", "layer", RELEASE_EFFECT))
    _, paired = remove_vs_random(edits)
    if paired.empty:
        raise Missing("no remove / random-control pair")
    interval = st.group_mean_ci(paired.gain.to_numpy(), paired.group.to_numpy())
    unit = f"prompt groups ({PROMPTS_PER_GROUP} neighbouring prompts; t with groups - 1 d.f.)"
    return Headline(*interval, 0.0, "minus an equal-norm random edit of the same heads", unit)


def headlines(tables: Tables) -> Headlines:
    """The census's headlines (ctr runs it) and catch-tag-release's: tag variance and its excess
    over the control, release reads against their null, the tag edit against a random one."""
    return {
        **census_headlines.headlines(tables),
        **measure(
            tables,
            {
                "ctr/tag_variance_explained": tag_variance,
                "ctr/tag_excess_over_nonsink": tag_excess,
                "ctr/release_query_read": release_read("query_read"),
                "ctr/release_query_excess": release_excess("query_read"),
                "ctr/release_key_read": release_read("key_read"),
                "ctr/release_key_excess": release_excess("key_read"),
                "ctr/remove_minus_random": remove_minus_random,
            },
        ),
    }


CTR = register(
    Analysis(
        name="ctr",
        run=run,
        tables=TABLES,
        needs=NEEDS,
        settings=CTRSettings,
        check=check,
        figures=figures,
        report=(
            ReportSection(
                "Variance explained, rank 1 (Sec. 3.2)", lambda t: variance_section(t["variance"])
            ),
            ReportSection(
                "Attention forms side by side: softmax, QK-norm, softmax plus one, learned sink, "
                "output gate (issue 27)",
                attention_forms_section,
                text=ATTENTION_FORMS_TEXT,
            ),
            ReportSection(
                "Attention forms on the minimal problem (Sec. 7, issue 27)",
                minimal_forms_section,
                text=MINIMAL_FORMS_TEXT,
            ),
            ReportSection(
                "Interventions (mean over prompts and top tag heads)",
                lambda t: intervention_section(t["interventions"]),
                per_model=True,
            ),
        ),
        headlines=headlines,
    )
)
