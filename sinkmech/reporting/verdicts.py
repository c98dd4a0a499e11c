"""The ledger's building blocks: verdict words, the thresholds the sensitivity table varies, the
row every claim rule returns, and the helpers rules share (a missing table or column makes a row
"not testable" naming it; intervals decide verdicts three ways).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

from sinkmech.mechanism.sinks import caught_broadly
from sinkmech.mechanism.thresholds import MIN_CATCH_BREADTH

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"  # the interval holds both the paper's answer and its negation
NOT_TESTABLE = "not testable offline"  # the models or runs it needs are not in the tree
NOT_TESTABLE_HERE = "not testable here"  # they ran, but a control column or feature is missing
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE_HERE, NOT_TESTABLE)

# Null and control columns the analyses write (names agreed with the null-model work; a tree
# without them makes the rules that need them "not testable", naming the column).
SINK_NULL = "null_mean_score"  # sinks: the key's mean score under uniform attention
# sinks: effective catching queries over their uniform-attention null (tables since issue 28)
CATCH_BREADTH = "catch_breadth"

Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Thresholds:
    """The thresholds verdicts depend on that the committed tables let us vary (the sensitivity
    table recomputes every verdict over a grid of them). Defaults are the census's own
    (``sinkmech.mechanism.sinks.SinkThresholds``): the recomputed sinks equal the stored ones."""

    sink: float = 0.2  # a key's mean score must exceed this (the paper's eps)
    null_margin: float = 2.0  # ... and this multiple of its uniform-attention null
    min_occurrences: int = 5  # prompts a non-first token must occur in
    # punctuation and content sinks caught at least this fraction as broadly as uniform attention
    min_catch_breadth: float = MIN_CATCH_BREADTH
    equivalence_margin: float = 0.25  # "similar": within +-25% of the reference model's mean
    variance_rank: str = "matched"  # "matched": rank 2 where tag and control both have it, else 1


DEFAULT = Thresholds()


@dataclass(frozen=True)
class Row:
    """One ledger line: a claim, the paper's number, ours on one model with its interval (``cell``
    is the short form the claims x models matrix shows), its control, a verdict, the rule that
    gave it and the resampling unit of its intervals."""

    claim: str
    paper: str
    model: str
    ours: str
    cell: str
    control: str
    verdict: str
    reason: str
    unit: str
    command: str


class Missing(Exception):
    """A table or column a rule needs is absent; the message names it, the verdict says which."""

    def __init__(self, message: str, verdict: str = NOT_TESTABLE) -> None:
        super().__init__(message)
        self.verdict = verdict


def need(tables: Tables, table: str, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The table, or ``Missing`` naming the absent table or columns."""
    frame = tables.get(table)
    if frame is None or frame.empty:
        raise Missing(f"no `{table}` table")
    absent = [c for c in columns if c not in frame]
    if absent:
        names = ", ".join(f"`{c}`" for c in absent)
        raise Missing(f"`{table}` lacks column(s) {names}", NOT_TESTABLE_HERE)
    return frame


def fmt(value: float, low: float, high: float, pct: bool = False) -> str:
    if pct:
        return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def three_way(low: float, high: float, bound: float) -> str:
    """The paper's claim "above ``bound``": reproduced when the interval lies above it, not
    reproduced when it lies below, inconclusive when it holds the bound (or is undefined)."""
    if low > bound:
        return REPRODUCED
    if high < bound:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def evidence_models(frame: pd.DataFrame) -> list[str]:
    """Models whose weights are evidence: randomly initialised ``tiny`` models prove the
    pipeline, not the paper, so they get no ledger row."""
    if "source" in frame:
        frame = frame[frame.source != "tiny"]
    return sorted(frame.model.unique())


def untestable(
    claim: str,
    paper: str,
    reason: str | Missing,
    command: str,
    model: str = "—",
    verdict: str = NOT_TESTABLE_HERE,
) -> Row:
    """A row with no number: ``reason`` names what is missing (a ``Missing`` carries its verdict)."""
    if isinstance(reason, Missing):
        verdict, reason = reason.verdict, str(reason)
    return Row(claim, paper, model, "—", "—", "—", verdict, reason, "—", command)


def sink_flags(sinks: pd.DataFrame, th: Thresholds) -> pd.Series:
    """``is_sink`` recomputed from the stored scores under ``th`` (the census's own rule); the
    breadth rule only where the table has ``catch_breadth`` (older tables: score rule alone)."""
    enough = (sinks.sink_kind == "first") | (sinks.occurrences >= th.min_occurrences)
    flags = (
        (sinks.mean_score > th.sink)
        & (sinks.mean_score > th.null_margin * sinks[SINK_NULL])
        & enough
    )
    if CATCH_BREADTH in sinks:
        flags &= caught_broadly(sinks, th.min_catch_breadth)
    return flags


Rule = Callable[..., list[Row]]  # (tables, thresholds) -> rows
