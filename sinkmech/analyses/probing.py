"""Truth, segment and sentiment probes on the tag (Sec. 4.4, Table 1)."""

from __future__ import annotations

from typing import Callable

import pandas as pd

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
from sinkmech.mechanism.sinks import RECEIVED
from sinkmech.probing.analysis import ProbingSettings, run_probing
from sinkmech.probing.features import TRUTH
from sinkmech.probing.segments import SEGMENTS
from sinkmech.reporting import plots
from sinkmech.reporting.claims_tags import PROBE_CONTROLS, SENTIMENT_BASELINES
from sinkmech.reporting.sections import probe_section
from sinkmech.reporting.verdicts import Missing, need

PROBE_COLUMNS = ("layer", "head", "feature", "labels", "cv_accuracy", "test_accuracy")
PROBE_COLUMNS += ("test_accuracy_lo", "test_accuracy_hi", "chance")
# Segment probes' controls: where the token sits (position, position and length) and the tag
# probe on shuffled labels.
SEGMENT_CONTROLS = (("position", "true"), ("position_length", "true"), ("tag", "shuffled"))


def run(context: Context, settings: ProbingSettings) -> Tables:
    return run_probing(
        context.model("probes"),
        context.statements,
        settings,
        sinks=context.sinks,
        batch_size=context.batch_size,
    )


def fitted(probes: pd.DataFrame) -> pd.DataFrame:
    """Logistic probes that were fitted (not skipped), on sink heads where roles are recorded."""
    if "probe" in probes:
        probes = probes[probes.probe == "logistic"]
    if "skipped" in probes:
        probes = probes[probes.skipped.isna() | (probes.skipped == "")]
    if "head_role" in probes:
        probes = probes[probes.head_role == "sink"]
    return probes


def best_head(probes: pd.DataFrame) -> pd.DataFrame:
    """The probe rows of the head whose tag probe has the best cross-validated accuracy (never
    chosen by test accuracy)."""
    tags = probes[(probes.feature == "tag") & (probes.labels == "true")]
    tags = tags.dropna(subset=["cv_accuracy"])
    if tags.empty:
        raise Missing("no tag probe was fitted")
    best = tags.loc[tags.cv_accuracy.idxmax()]
    return probes[(probes.layer == best.layer) & (probes["head"] == best["head"])]


def accuracy(row: pd.Series, null: float, null_label: str) -> Headline:
    """A probe's test accuracy with the probe table's interval over held-out clusters."""
    clusters = f"{int(row.n_test_clusters)} " if "n_test_clusters" in row else ""
    unit = f"{clusters}held-out clusters (the probe table's bootstrap)"
    return Headline(
        row.test_accuracy, row.test_accuracy_lo, row.test_accuracy_hi, null, null_label, unit
    )


def tag_accuracy(
    table: str,
    controls: tuple[tuple[str, str], ...],
    baselines: tuple[str, tuple[str, ...]] | None = None,
) -> Callable[[Tables], Headline]:
    """The best sink head's tag-probe accuracy beside the strongest of its controls (features and
    label kinds of the same head) and of the head-free ``baselines`` (table, features)."""

    def compute(tables: Tables) -> Headline:
        head = best_head(fitted(need(tables, table, PROBE_COLUMNS)))
        pool = [head[(head.feature == f) & (head.labels == lab)] for f, lab in controls]
        if baselines is not None and not tables.get(baselines[0], pd.DataFrame()).empty:
            extra = fitted(tables[baselines[0]])
            pool.append(extra[extra.feature.isin(baselines[1]) & (extra.labels == "true")])
        rows = pd.concat(pool, ignore_index=True).dropna(subset=["test_accuracy"])
        tag = head[(head.feature == "tag") & (head.labels == "true")].iloc[0]
        if rows.empty:
            return accuracy(tag, float("nan"), "")
        strongest = rows.loc[rows.test_accuracy.idxmax()]
        label = f"strongest control: {strongest.feature} ({strongest.labels} labels)"
        return accuracy(tag, float(strongest.test_accuracy), label)

    return compute


def no_tag_accuracy(tables: Tables) -> Headline:
    """The best sink head's output without its tag, beside chance (Table 1: near chance)."""
    head = best_head(fitted(need(tables, "truth_probes", PROBE_COLUMNS)))
    rows = head[(head.feature == "no_tag") & (head.labels == "true")]
    if rows.empty:
        raise Missing("no no-tag probe on the best head")
    return accuracy(rows.iloc[0], float(rows.iloc[0].chance), "chance (majority class)")


def headlines(tables: Tables) -> Headlines:
    """Tag-probe accuracies of the best sink head (chosen by cross-validation) against their
    controls: truth (Table 1), sentiment (Table 7) and segment identity."""
    return measure(
        tables,
        {
            "probing/truth_tag_accuracy": tag_accuracy("truth_probes", PROBE_CONTROLS),
            "probing/truth_no_tag_accuracy": no_tag_accuracy,
            "probing/sentiment_tag_accuracy": tag_accuracy(
                "sentiment_probes", PROBE_CONTROLS, ("sentiment_baselines", SENTIMENT_BASELINES)
            ),
            "probing/segment_tag_accuracy": tag_accuracy("segment_probes", SEGMENT_CONTROLS),
        },
    )


PROBING = register(
    Analysis(
        name="probing",
        run=run,
        tables=(
            "truth_probes",
            "sentiment_probes",
            "sentiment_baselines",
            "tag_direction",
            "segment_probes",
            "final_sink_frequency",
        ),
        needs={"probes": RECEIVED | TRUTH | SEGMENTS},
        settings=ProbingSettings,
        reads=frozenset({"statements", "sinks"}),
        figures=lambda tables, sinks: {"probes": plots.probe_summary_figure(tables)},
        report=(
            ReportSection(
                "Truth probes", lambda t: probe_section(t["truth_probes"]), per_model=True
            ),
            ReportSection(
                "Segment probes", lambda t: probe_section(t["segment_probes"]), per_model=True
            ),
        ),
        headlines=headlines,
    )
)
