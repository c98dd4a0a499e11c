"""The minimal problem's claim (Sec. 7): the mechanism emerges in training, in at most 4 of 10
runs, judged on one setting fixed before the runs."""

from __future__ import annotations

from sinkmech.reporting import statistics as st
from sinkmech.reporting.verdicts import (
    DEFAULT,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Missing,
    Row,
    Tables,
    Thresholds,
    fmt,
    need,
    untestable,
)

# Sec. 7, App. K.1: catch-tag-release emerges in training the minimal problem, in at most 4 of
# 10 runs. Reproduced when it emerges in 1 to 4 of the runs (the paper's own statement); not
# reproduced when it never emerges or the rate's Clopper-Pearson interval lies above 40%;
# inconclusive in between (5-7 of 10: the interval holds 40% but the count exceeds the paper's).
MINIMAL_COMMAND = "python -m experiments.train_minimal minimal=paper"
PAPER_SUCCESS_RATE = 0.4
MINIMAL_CLAIM = "The minimal problem's mechanism emerges in training (Sec. 7, Fig. 7)"
MINIMAL_PAPER = "emerges in at most 4 of 10 runs"
MINIMAL_UNIT = "training runs (seeds; Clopper-Pearson)"


def _emergence_row(
    model: str, emerged: int, runs: int, detail: str, control: str, command: str
) -> Row:
    """The one verdict of the minimal problem on one fixed setting (see the rule above)."""
    low, high = st.clopper_pearson(emerged, runs)
    if emerged == 0 or low > PAPER_SUCCESS_RATE:
        verdict = NOT_REPRODUCED
    elif emerged / runs <= PAPER_SUCCESS_RATE:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    share = fmt(emerged / runs, low, high, pct=True)
    return Row(
        MINIMAL_CLAIM,
        MINIMAL_PAPER,
        model,
        f"{emerged}/{runs} runs, {share}{detail}",
        f"{emerged}/{runs}, {share}",
        control,
        verdict,
        ("emerges" if emerged else "never emerges")
        + f"; count {'<=' if emerged / runs <= PAPER_SUCCESS_RATE else '>'} "
        f"{PAPER_SUCCESS_RATE:.0%} of runs, interval {'above' if low > PAPER_SUCCESS_RATE else 'holds'}"
        f" {PAPER_SUCCESS_RATE:.0%} (task details are our assumptions)",
        MINIMAL_UNIT,
        command,
    )


def minimal_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    try:
        success = need(tables, "minimal_success", ("variant", "n_runs", "n_emerged"))
    except Missing as why:
        return [untestable(MINIMAL_CLAIM, MINIMAL_PAPER, why, MINIMAL_COMMAND)]
    control = "SEP-blind baseline loss; equal-norm random edit of the tag"
    return [
        _emergence_row(
            f"minimal ({run.variant})", run.n_emerged, run.n_runs, "", control, MINIMAL_COMMAND
        )
        for _, run in success.iterrows()
    ]


# The factor sweep (issue 15), on its strict criterion (tag removal hurts >= 5x an equal-variance
# orthogonal edit and the tag alone restores the loss), judged on one cell only: the one its
# config names as ``verdict_cell`` (conf/minimal_sweep/gpu.yaml, the paper-size base setting;
# a test holds the two equal). The other cells describe the landscape and are never the verdict.
SWEEP_COMMAND = (
    "python -m experiments.sweep_minimal minimal_sweep=gpu   # GPU, results/minimal_sweep"
)
SWEEP_VERDICT_CELL = "base"


def minimal_sweep_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    try:
        sweep = need(tables, "minimal_sweep", ("cell", "n_runs", "n_emerged", "n_emerged_strict"))
    except Missing as why:
        return [untestable(MINIMAL_CLAIM, MINIMAL_PAPER, why, SWEEP_COMMAND)]
    cell = sweep[sweep.cell == SWEEP_VERDICT_CELL]
    if cell.empty:
        reason = f"the sweep has no `{SWEEP_VERDICT_CELL}` cell (its fixed verdict cell)"
        return [untestable(MINIMAL_CLAIM, MINIMAL_PAPER, reason, SWEEP_COMMAND)]
    run = cell.iloc[0]
    passing = int(((sweep.n_emerged_strict >= 1) & (sweep.n_emerged_strict <= 4)).sum())
    old = (
        f" strict; {run.n_emerged}/{run.n_runs} on the old criterion; {passing} of {len(sweep)} "
        "cells have 1-4 strict successes (not a verdict: cells chosen after the sweep)"
    )
    control = "equal-variance edit orthogonal to the tag; tag-only patch"
    label = f"minimal sweep, fixed cell {SWEEP_VERDICT_CELL} (strict)"
    return [_emergence_row(label, run.n_emerged_strict, run.n_runs, old, control, SWEEP_COMMAND)]
