"""Sensitivity of every verdict to the thresholds it depends on, recomputed from the committed
tables: each threshold is moved one at a time over a small grid around the default, and a verdict
is "stable" when no move changes it, else the moves that flip it are named.

Thresholds that need recomputed units are not in the grid (the report says so): the sink
threshold and null margin used to choose the tag heads of the variance, release and intervention
tables, ``min_queries``, the prompt set, and the number of prompt groups.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from sinkmech.reporting import ledger

GRID: dict[str, tuple[object, ...]] = {
    "sink": (0.1, 0.3),
    "null_margin": (1.0, 4.0),
    "min_occurrences": (3, 10),
    "min_catch_breadth": (0.0, 0.75),  # 0: the breadth rule off
    "equivalence_margin": (0.10, 0.50),
    "variance_rank": ("1",),
}
NOT_IN_GRID = (
    "sink threshold and null margin of the tag heads behind the variance, release and "
    "intervention tables; min_queries; the prompt set; the number of prompt groups "
    "(each needs recomputed units)"
)


def _key(table: pd.DataFrame) -> pd.Series:
    """Claim, model and rank among equal pairs (e.g. two minimal-problem rows with no model)."""
    rank = table.groupby(["claim", "model"]).cumcount().astype(str)
    return table.claim + " | " + table.model + " | " + rank


def sensitivity(tables: ledger.Tables, base: ledger.Thresholds = ledger.DEFAULT) -> pd.DataFrame:
    """One row per ledger row with a verdict: claim, model, verdict, and "stable" or the
    threshold values that flip it (with the verdict they give)."""
    reference = ledger.ledger(tables, base)
    if reference.empty:
        return pd.DataFrame(columns=["claim", "model", "verdict", "sensitivity"])
    verdicts = reference.set_index(_key(reference)).verdict
    flips: dict[str, list[str]] = {key: [] for key in verdicts.index}
    for name, values in GRID.items():
        for value in values:
            moved = ledger.ledger(tables, replace(base, **{name: value}))
            for key, verdict in zip(_key(moved), moved.verdict):
                if key in flips and verdict != verdicts[key]:
                    flips[key].append(f"{name}={value}: {verdict}")
    out = reference[["claim", "model", "verdict"]].copy()
    out["sensitivity"] = ["; ".join(flips[k]) or "stable" for k in verdicts.index]
    return out[~out.verdict.isin([ledger.NOT_TESTABLE, ledger.NOT_TESTABLE_HERE])]


def grid_text() -> str:
    """The grid in words, for the report."""
    moves = ", ".join(
        f"`{name}` {getattr(ledger.DEFAULT, name)} -> {' / '.join(map(str, values))}"
        for name, values in GRID.items()
    )
    return f"One threshold moved at a time: {moves}. Not in the grid: {NOT_IN_GRID}."
