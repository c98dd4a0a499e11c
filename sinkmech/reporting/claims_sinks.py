"""Claims about sink counts: sinks are common (Sec. 2), reasoning training raises sinks per head
(Sec. 5), QK-norm keeps them with more off the first token (Sec. 6). Unit: heads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sinkmech.mechanism.sinks import PROMPT_DEPENDENT
from sinkmech.models.families import is_sink_architecture
from sinkmech.reporting import statistics as st
from sinkmech.reporting.verdicts import (
    CATCH_BREADTH,
    DEFAULT,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    SINK_NULL,
    Missing,
    Row,
    Rule,
    Tables,
    Thresholds,
    evidence_models,
    fmt,
    need,
    sink_flags,
    three_way,
    untestable,
)

# ---------------------------------------------------------------------------------------------
# Sec. 2: sinks are common, on the first token and on punctuation.
SINK_COMMAND = "python -m experiments.run -m model=gpt2,llama3_2_1b,qwen2_5_1_5b experiment=sinks"
SINK_COLUMNS = ("layer", "head", "sink_kind", "mean_score", "occurrences", SINK_NULL)
# "Common": at least a quarter of all heads have a first-token sink; punctuation sinks are rarer
# in the paper, so at least 5% of heads. Judged on the share's Wilson interval (unit: heads).
FIRST_TOKEN_MIN_SHARE = 0.25
PUNCTUATION_MIN_SHARE = 0.05
HEADS_UNIT = "heads (Wilson; the sinks table keeps no per-prompt scores)"


def sink_heads(
    tables: Tables, model: str, kinds: tuple[str, ...], th: Thresholds
) -> tuple[int, int, float]:
    """(heads with a sink of these kinds under ``th``, all heads, mean margin over the null)."""
    sinks = need(tables, "sinks", SINK_COLUMNS)
    summary = need(tables, "sinks_summary", ("n_heads",))
    n_heads = int(summary[summary.model == model].n_heads.iloc[0])
    frame = sinks[sinks.model == model]
    rows = frame[frame.sink_kind.isin(kinds) & sink_flags(frame, th)]
    margin = float((rows.mean_score - rows[SINK_NULL]).mean()) if len(rows) else float("nan")
    return rows[["layer", "head"]].drop_duplicates().shape[0], n_heads, margin


def _breadth_words(tables: Tables, kinds: tuple[str, ...], th: Thresholds) -> str:
    """The breadth part of the sink criterion, as applied to ``kinds`` in this table."""
    if not set(kinds) & set(PROMPT_DEPENDENT):
        return ""
    if CATCH_BREADTH not in tables["sinks"]:
        return "; catch breadth not in this table: not required"
    return f"; caught by >= {th.min_catch_breadth}x uniform attention's effective queries"


def sink_rule(kind: str, kinds: tuple[str, ...], min_share: float) -> "Rule":
    claim = f"Sinks are common: {kind} (Sec. 2)"
    paper = "common across models (Fig. 1)"

    def rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
        try:
            models = evidence_models(need(tables, "sinks_summary", ("model", "n_heads")))
        except Missing as why:
            return [untestable(claim, paper, why, SINK_COMMAND)]
        rows = []
        for model in models:
            try:
                heads, n_heads, margin = sink_heads(tables, model, kinds, th)
            except Missing as why:
                rows.append(untestable(claim, paper, why, SINK_COMMAND, model))
                continue
            low, high = st.wilson(heads, n_heads)
            share = fmt(heads / n_heads, low, high, pct=True)
            rows.append(
                Row(
                    claim,
                    paper,
                    model,
                    f"{heads}/{n_heads} heads, {share}",
                    share,
                    f"uniform attention: mean margin {margin:+.3f} over the null score",
                    three_way(low, high, min_share),
                    f"share's interval vs {min_share:.0%} of heads (sink: score > {th.sink}, "
                    f"> {th.null_margin}x null, >= {th.min_occurrences} prompts"
                    + _breadth_words(tables, kinds, th)
                    + ")",
                    HEADS_UNIT,
                    SINK_COMMAND,
                )
            )
        return rows

    return rule


# ---------------------------------------------------------------------------------------------
# Sinks per head, for the paired comparisons of Sec. 5 and Sec. 6 (unit: heads of each model).
PAIR_UNIT = "heads of each model (unpaired bootstrap; 90% interval for the equivalence test)"


def _sinks_per_head(
    tables: Tables, model: str, th: Thresholds, non_first: bool = False
) -> np.ndarray:
    """Sinks (token kinds and tokens above the thresholds) of every head, zeros kept; only those
    not on the first token with ``non_first``."""
    sinks = need(tables, "sinks", SINK_COLUMNS)
    frame = sinks[sinks.model == model]
    flags = sink_flags(frame, th) & ((frame.sink_kind != "first") | (not non_first))
    return flags.groupby([frame.layer, frame["head"]]).sum().to_numpy(float)


def matched_pairs(summary: pd.DataFrame, by: str) -> list[tuple[str, pd.DataFrame]]:
    """The ``pair`` groups that two values of ``by`` (``role``, ``qk_norm``) split, among plain
    softmax models: a learned-sink or gated model of the same matched set (issue 27) is the
    attention-form comparison's, not Sec. 5's or Sec. 6's."""
    summary = summary.dropna(subset=["pair", by])
    if "family" in summary:
        summary = summary[~summary.family.map(is_sink_architecture).astype(bool)]
    return [(pair, group) for pair, group in summary.groupby("pair") if group[by].nunique() == 2]


def _pairs(tables: Tables, by: str) -> list[tuple[str, pd.DataFrame]]:
    return matched_pairs(need(tables, "sinks_summary", ("model", "pair", by)), by)


def _change(a: np.ndarray, b: np.ndarray, th: Thresholds) -> tuple[str, str, st.Interval]:
    """Mean of a vs mean of b: "higher" / "lower" (95% interval excludes 0), "equivalent" (TOST
    within +-margin x mean of b), else "inconclusive"; with its text and the 95% interval."""
    interval = st.diff_ci(a, b)
    margin = th.equivalence_margin * b.mean()
    same, _ = st.equivalent(a, b, margin) if margin > 0 else (False, interval)
    if interval[1] > 0:
        word = "higher"
    elif interval[2] < 0:
        word = "lower"
    else:
        word = "equivalent" if same else "inconclusive"
    text = f"difference {fmt(*interval)}, equivalence margin +-{margin:.3f}"
    return word, text, interval


# Sec. 5, Fig. 5: DeepSeek-R1-distilled Qwen has more sinks per head than its base model.
REASONING_COMMAND = (
    "python -m experiments.run -m model=qwen2_5_math_1_5b,r1_distill_qwen_1_5b experiment=ctr"
)


def reasoning_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    claim = "Reasoning training raises sinks per head (Sec. 5, Fig. 5)"
    paper = "1.125 -> 2.196 sinks per head"
    try:
        pairs = _pairs(tables, "role")
    except Missing as why:
        return [untestable(claim, paper, why, REASONING_COMMAND)]
    if not pairs:
        return [
            untestable(
                claim, paper, "no base/reasoning pair ran", REASONING_COMMAND, verdict=NOT_TESTABLE
            )
        ]
    rows = []
    for pair, group in pairs:
        base = group[group.role == "base"].model.iloc[0]
        reasoning = group[group.role == "reasoning"].model.iloc[0]
        try:
            a, b = _sinks_per_head(tables, reasoning, th), _sinks_per_head(tables, base, th)
        except Missing as why:
            rows.append(untestable(claim, paper, why, REASONING_COMMAND, pair))
            continue
        word, text, interval = _change(a, b, th)
        verdict = {"higher": REPRODUCED, "inconclusive": INCONCLUSIVE}.get(word, NOT_REPRODUCED)
        rows.append(
            Row(
                claim,
                paper,
                f"{base} -> {reasoning}",
                f"{b.mean():.3f} -> {a.mean():.3f} ({text})",
                f"{interval[0]:+.3f} [{interval[1]:+.3f}, {interval[2]:+.3f}]",
                f"base model {base}",
                verdict,
                f"sinks per head {word} after reasoning training",
                PAIR_UNIT,
                REASONING_COMMAND,
            )
        )
    return rows


# Sec. 6: QK-norm keeps total sink counts about the same, with more non-first-token sinks.
# "About the same" is an equivalence test: the difference in sinks per head lies within
# +-equivalence_margin of the model without QK-norm (TOST); more non-first-token sinks per head
# with QK-norm: that difference's 95% interval lies above 0.
QK_COMMAND = (
    "python -m experiments.run -m model=olmo2_1b,gemma3_1b,qwen3_0_6b,llama3_2_1b experiment=sinks"
)


def qk_norm_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    claim = "QK-norm keeps sinks, more of them not on the first token (Sec. 6)"
    paper = "similar sink counts; more non-first-token sinks with QK-norm"
    try:
        pairs = _pairs(tables, "qk_norm")
    except Missing as why:
        return [untestable(claim, paper, why, QK_COMMAND)]
    if not pairs:
        reason = "no matched pair with and without QK-norm ran"
        return [untestable(claim, paper, reason, QK_COMMAND, verdict=NOT_TESTABLE)]
    rows = []
    for pair, group in pairs:
        with_qk = group[group.qk_norm.astype(bool)].model.iloc[0]
        without = group[~group.qk_norm.astype(bool)].model.iloc[0]
        try:
            a, b = _sinks_per_head(tables, with_qk, th), _sinks_per_head(tables, without, th)
            na = _sinks_per_head(tables, with_qk, th, non_first=True)
            nb = _sinks_per_head(tables, without, th, non_first=True)
        except Missing as why:
            rows.append(untestable(claim, paper, why, QK_COMMAND, pair))
            continue
        counts, text, interval = _change(a, b, th)
        non_first = st.diff_ci(na, nb)
        if counts == "equivalent" and non_first[1] > 0:
            verdict = REPRODUCED
        elif counts in ("higher", "lower") or non_first[2] <= 0:
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
        rows.append(
            Row(
                claim,
                paper,
                f"{without} vs {with_qk}",
                f"sinks per head {b.mean():.3f} vs {a.mean():.3f} ({text}); non-first sinks "
                f"per head {nb.mean():.3f} vs {na.mean():.3f} (difference {fmt(*non_first)})",
                f"{interval[0]:+.3f} [{interval[1]:+.3f}, {interval[2]:+.3f}]",
                f"same pair without QK-norm ({without})",
                verdict,
                f"counts {counts} with QK-norm (TOST at +-{th.equivalence_margin:.0%}); "
                f"non-first sinks per head: interval "
                + ("above 0" if non_first[1] > 0 else "not above 0"),
                PAIR_UNIT,
                QK_COMMAND,
            )
        )
    return rows
