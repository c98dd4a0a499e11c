"""The claims ledger: one row per claim of arXiv 2502.00919 per model, computed from the tables.

Every rule reads only the tables and columns it names. When one is missing the row says "not
testable offline" and names what is missing and the command that would produce it; no rule
invents a number. Thresholds live in ``Thresholds`` (the sensitivity table varies them), each
commented where the rule applies it. Every row names its resampling unit. A verdict is
"reproduced" or "not reproduced" only when the interval decides it; an interval that holds both
answers gives "inconclusive", and "no difference" is claimed only by an equivalence test (TOST)
with a stated margin. Paper numbers are from public reading notes of the v2 PDF (Sec. 7 and the
appendix could not be read here), see ``/work/shared/docs/paper-notes.md``.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from sinkmech.reporting.claims_minimal import (
    SWEEP_VERDICT_CELL,
    minimal_rule,
    minimal_sweep_rule,
)
from sinkmech.reporting.claims_release import (
    RELEASE_READS,
    prompt_groups,
    release_edit_rule,
    release_read_rule,
)
from sinkmech.reporting.claims_sinks import (
    FIRST_TOKEN_MIN_SHARE,
    PUNCTUATION_MIN_SHARE,
    qk_norm_rule,
    reasoning_rule,
    sink_heads,
    sink_rule,
)
from sinkmech.reporting.claims_tags import (
    PROBE_COMMAND,
    PROBE_CONTROLS,
    SENTIMENT_BASELINES,
    SENTIMENT_COMMAND,
    VARIANCE_CONTROL,
    Z_95,
    probe_rule,
    rank_matched,
    variance_rule,
)
from sinkmech.reporting.verdicts import (
    DEFAULT,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    NOT_TESTABLE_HERE,
    REPRODUCED,
    VERDICTS,
    Row,
    Rule,
    Tables,
    Thresholds,
)

# The ledger's public face: the rules live in claims_*.py, their building blocks in verdicts.py.
__all__ = [
    "DEFAULT",
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "NOT_TESTABLE",
    "NOT_TESTABLE_HERE",
    "PROBE_CONTROLS",
    "RELEASE_READS",
    "REPRODUCED",
    "RULES",
    "Row",
    "SWEEP_VERDICT_CELL",
    "Tables",
    "Thresholds",
    "VARIANCE_CONTROL",
    "VERDICTS",
    "Z_95",
    "findings",
    "ledger",
    "minimal_rule",
    "minimal_sweep_rule",
    "prompt_groups",
    "qk_norm_rule",
    "rank_matched",
    "reasoning_rule",
    "release_edit_rule",
    "release_read_rule",
    "sink_heads",
    "variance_rule",
]

RULES: tuple[Rule, ...] = (
    sink_rule("first token", ("first",), FIRST_TOKEN_MIN_SHARE),
    sink_rule("punctuation", ("punctuation",), PUNCTUATION_MIN_SHARE),
    variance_rule,
    probe_rule(
        "truth_probes", "Tags carry truth (Sec. 4.4, Table 1)", (0.925, 0.995), PROBE_COMMAND
    ),
    probe_rule(
        "sentiment_probes",
        "Tags carry sentiment (App., Table 7)",
        (0.865, 0.940),
        SENTIMENT_COMMAND,
        ("sentiment_baselines", SENTIMENT_BASELINES),
    ),
    *(release_read_rule(read) for read in RELEASE_READS),
    release_edit_rule,
    reasoning_rule,
    qk_norm_rule,
    minimal_sweep_rule,  # first: the matrix shows the fixed cell's number
    minimal_rule,
)


def ledger(tables: Tables, th: Thresholds = DEFAULT) -> pd.DataFrame:
    """Every rule's rows under ``th``, in the paper's order."""
    rows = [row for rule in RULES for row in rule(tables, th)]
    return pd.DataFrame([asdict(row) for row in rows])


def findings(table: pd.DataFrame) -> str:
    """A short "what the suite found" paragraph: per claim, which models give which verdict."""
    lines = []
    judged = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    for claim, group in table.groupby("claim", sort=False):
        by = {v: sorted(group[group.verdict == v].model) for v in judged}
        if not any(by.values()):
            lines.append(f"- **{claim}**: {group.verdict.iloc[0]} ({group.reason.iloc[0]}).")
            continue
        parts = [f"{label} on {', '.join(models)}" for label, models in by.items() if models]
        lines.append(f"- **{claim}**: {'; '.join(parts)}.")
    return "\n".join(lines)
