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

from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from sinkmech.mechanism.variance import REPLICATE_PREFIX, Z_95
from sinkmech.reporting import statistics as st

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"  # the interval holds both the paper's answer and its negation
NOT_TESTABLE = "not testable offline"  # the models or runs it needs are not in the tree
NOT_TESTABLE_HERE = "not testable here"  # they ran, but a control column or feature is missing
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE_HERE, NOT_TESTABLE)

# Null and control columns the analyses write (names agreed with the null-model work; a tree
# without them makes the rules that need them "not testable", naming the column).
SINK_NULL = "null_mean_score"  # sinks: the key's mean score under uniform attention
VARIANCE_CONTROL = "nonsink_key_variance_explained"  # variance: value directions of non-sink keys
# Truth-probe controls (feature, labels): the tag probe on shuffled labels, and a probe on random
# directions of the residual of the tag's dimension. A country-only probe is at chance by
# construction (the statement split balances every country within train and within test; tested).
PROBE_CONTROLS = (("tag", "shuffled"), ("resid_random", "true"))

Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Thresholds:
    """The thresholds verdicts depend on that the committed tables let us vary (the sensitivity
    table recomputes every verdict over a grid of them). Defaults are the census's own
    (``sinkmech.mechanism.sinks.SinkThresholds``): the recomputed sinks equal the stored ones."""

    sink: float = 0.2  # a key's mean score must exceed this (the paper's eps)
    null_margin: float = 2.0  # ... and this multiple of its uniform-attention null
    min_occurrences: int = 5  # prompts a non-first token must occur in
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


def _models(frame: pd.DataFrame) -> list[str]:
    """Models whose weights are evidence: randomly initialised ``tiny`` models prove the
    pipeline, not the paper, so they get no ledger row."""
    if "source" in frame:
        frame = frame[frame.source != "tiny"]
    return sorted(frame.model.unique())


def _untestable(
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
    """``is_sink`` recomputed from the stored scores under ``th`` (the census's own rule)."""
    enough = (sinks.sink_kind == "first") | (sinks.occurrences >= th.min_occurrences)
    return (
        (sinks.mean_score > th.sink)
        & (sinks.mean_score > th.null_margin * sinks[SINK_NULL])
        & enough
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


def _sink_heads(
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


def sink_rule(kind: str, kinds: tuple[str, ...], min_share: float) -> "Rule":
    claim = f"Sinks are common: {kind} (Sec. 2)"
    paper = "common across models (Fig. 1)"

    def rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
        try:
            models = _models(need(tables, "sinks_summary", ("model", "n_heads")))
        except Missing as why:
            return [_untestable(claim, paper, why, SINK_COMMAND)]
        rows = []
        for model in models:
            try:
                heads, n_heads, margin = _sink_heads(tables, model, kinds, th)
            except Missing as why:
                rows.append(_untestable(claim, paper, why, SINK_COMMAND, model))
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
                    f"> {th.null_margin}x null, >= {th.min_occurrences} prompts)",
                    HEADS_UNIT,
                    SINK_COMMAND,
                )
            )
        return rows

    return rule


# ---------------------------------------------------------------------------------------------
# Sec. 3.2, Fig. 3: one or two tag directions explain 20-40% of a head's output variance (up to
# ~70%), and more than the value directions of as many non-sink keys (same rank).
VARIANCE_COMMAND = "python -m experiments.run -m model=gpt2,llama3_2_1b,qwen2_5_1_5b experiment=ctr"
VARIANCE_RANGE = (0.20, 0.40)  # the paper's typical range; reproduced when our interval meets it
# The variance table's excess columns carry a delete-one-group jackknife interval over
# ``ctr.n_prompt_groups`` prompt groups (written with the normal quantile ``Z_95``). Tables made
# since RESULTS_VERSION 3 also keep each group's replicate (``REPLICATE_PREFIX``<g>; groups of
# neighbouring prompts): the mean over heads then gets its exact jackknife interval. Older tables
# (groups i mod 10, which split prose_long's overlapping neighbours) keep only each head's
# interval: the ledger recovers the standard errors and bounds the mean's conservatively.
LEGACY_PROMPT_GROUPS = 10  # ctr.n_prompt_groups of every table without replicates
EXCESS = ("tag_excess_over_nonsink", "tag_excess_low", "tag_excess_high")
SHARE_UNIT = "heads (bootstrap) for the tag's share"


def _replicate_columns(frame: pd.DataFrame) -> list[str]:
    """The delete-one-group replicate columns, in group order."""
    names = [c for c in frame if str(c).startswith(REPLICATE_PREFIX)]
    return sorted(names, key=lambda c: int(c[len(REPLICATE_PREFIX) :]))


def rank_matched(variance: pd.DataFrame, mode: str) -> pd.DataFrame:
    """One row per head, tag and control at the same rank: rank 2 where both the tag's and the
    control's rank-2 values exist (``mode="matched"``), else rank 1; ``mode="1"``: rank 1 only."""
    columns = ["tag_variance_explained", VARIANCE_CONTROL, *EXCESS, *_replicate_columns(variance)]
    ranks = variance.set_index(["layer", "head", "rank"])[columns].unstack("rank")
    rank1 = ranks.xs(1, axis=1, level="rank")
    if mode == "1" or 2 not in ranks.columns.get_level_values("rank"):
        return rank1.dropna(subset=["tag_variance_explained"])
    rank2 = ranks.xs(2, axis=1, level="rank")
    both = rank2[["tag_variance_explained", VARIANCE_CONTROL]].notna().all(axis=1)
    chosen = rank1.where(~both, rank2)
    return chosen.dropna(subset=["tag_variance_explained"])


def excess_interval(heads: pd.DataFrame) -> tuple[st.Interval, dict[str, int], str]:
    """Mean excess over heads with its interval over prompt groups, the heads beating the control
    (raw, Holm, Bonferroni) and the unit's description; ``heads`` hold the excess columns."""
    jack = [heads[c].to_numpy(float) for c in EXCESS]
    replicates = heads[_replicate_columns(heads)]
    replicates = replicates.loc[:, replicates.notna().any()]  # groups that held prompts
    if replicates.shape[1] >= 2 and replicates.notna().all(axis=None):
        g = replicates.shape[1]
        interval = st.jackknife_mean_from_replicates(jack[0], replicates.to_numpy(float))
        unit = f"prompt groups ({g} groups of neighbouring prompts, jackknife, t with {g - 1} d.f.)"
    else:
        g = LEGACY_PROMPT_GROUPS
        interval = st.jackknife_mean_ci(*jack, g, Z_95)
        unit = (
            f"prompt groups ({g}, per-head jackknife bounds only: conservative; t with {g - 1} "
            "d.f.; groups i mod 10 split prose_long's overlapping neighbours)"
        )
    counts = st.significant_counts(st.jackknife_pvalues(*jack, g, Z_95))
    return interval, counts, unit


def variance_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    claim = "Tags explain head-output variance (Sec. 3.2, Fig. 3)"
    paper = "20-40% typical, up to ~70%; beats non-sink keys"
    columns = ("layer", "head", "rank", "tag_variance_explained", VARIANCE_CONTROL, *EXCESS)
    try:
        variance = need(tables, "variance", columns)
    except Missing as why:
        return [_untestable(claim, paper, why, VARIANCE_COMMAND)]
    rows = []
    for model in _models(variance):
        heads = rank_matched(variance[variance.model == model], th.variance_rank)
        excess = heads.dropna(subset=list(EXCESS))
        if heads.empty or excess.empty:
            rows.append(
                _untestable(claim, paper, "no head with sink keys", VARIANCE_COMMAND, model)
            )
            continue
        mean, low, high = st.mean_ci(heads.tag_variance_explained.to_numpy())
        (gain, gain_low, gain_high), counts, unit = excess_interval(excess)
        in_range = high >= VARIANCE_RANGE[0] and low <= VARIANCE_RANGE[1]
        beats = three_way(gain_low, gain_high, 0.0)
        verdict = beats if in_range else NOT_REPRODUCED
        rank = "rank 1" if th.variance_rank == "1" else "equal rank (2 where both exist, else 1)"
        rows.append(
            Row(
                claim,
                paper,
                model,
                f"{fmt(mean, low, high, pct=True)} over {len(heads)} heads, "
                f"max {heads.tag_variance_explained.max():.0%}; heads beating the control "
                f"(p < 0.05): {counts['raw']} raw, {counts['holm']} Holm, "
                f"{counts['bonferroni']} Bonferroni of {counts['tested']}",
                f"excess {fmt(gain, gain_low, gain_high, pct=True)}",
                f"non-sink keys at {rank}: tag minus control {fmt(gain, gain_low, gain_high, True)}",
                verdict,
                f"tag's share {'meets' if in_range else 'misses'} {VARIANCE_RANGE[0]:.0%}-"
                f"{VARIANCE_RANGE[1]:.0%}; excess over the control at {rank}: interval "
                + {REPRODUCED: "above 0", NOT_REPRODUCED: "below 0", INCONCLUSIVE: "holds 0"}[
                    beats
                ],
                f"{unit} for the excess over {len(excess)} heads; {SHARE_UNIT}",
                VARIANCE_COMMAND,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Sec. 4.4, Table 1 (truth of city statements) and Table 7 (sentiment): a probe on the tag reads
# the label, the head output without the tag is near chance, and the tag beats the controls
# (and, for sentiment, the word's own embedding and the position baseline).
PROBE_COMMAND = (
    "python -m experiments.run -m model=llama3_2_1b,qwen2_5_1_5b experiment=probing "
    "model.device=cuda"
)
PROBE_TOLERANCE = (
    0.025  # reproduced when our tag accuracy is within 2.5 points of the paper's low end
)
NO_TAG_NEAR_CHANCE = 0.10  # "near chance": no-tag accuracy at most 10 points above chance
# Table 7 on our VADER-lexicon set (sinkmech.data.sentiment; the paper's data are unknown): the
# label is the word's, so the tag must also beat a probe on the word's own input embedding and
# the position + template baseline (sinkmech.probing.sentiment).
SENTIMENT_COMMAND = (
    "python -m experiments.run -m model=minilm,ladder_s_qknorm,ladder_s_noqknorm "
    "experiment=probing data.statements=sentiment"
)
SENTIMENT_BASELINES = ("word_embedding", "position_template")
PROBE_UNIT = "held-out statements (the probe table's test interval)"


def _probe(frame: pd.DataFrame, feature: str, labels: str = "true") -> pd.Series | None:
    rows = frame[(frame.feature == feature) & (frame.labels == labels)]
    return rows.iloc[0] if len(rows) else None


def probe_rule(
    table: str,
    claim: str,
    paper_range: tuple[float, float],
    command: str,
    baselines: tuple[str, tuple[str, ...]] | None = None,
) -> "Rule":
    """Best sink head's tag probe (chosen by CV accuracy) against the paper's range; reproduced
    when it is within ``PROBE_TOLERANCE`` of the low end, the no-tag probe is near chance, and
    its test interval lies above every control's; not reproduced when the tag's interval lies
    below the paper's range, the no-tag probe reads the label, or a control's interval lies above
    the tag's; inconclusive otherwise. ``baselines`` = (table, features): head-free
    controls of the same model the tag must beat too (the sentiment word's own embedding)."""
    paper = f"tag {paper_range[0]:.1%}-{paper_range[1]:.1%}, no-tag near chance"
    columns = ("layer", "head", "head_role", "feature", "probe", "labels", "cv_accuracy")
    columns += ("test_accuracy", "test_accuracy_lo", "test_accuracy_hi", "chance")

    def rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
        try:
            probes = need(tables, table, columns)
            extra = need(tables, baselines[0], columns[3:]) if baselines else None
        except Missing as why:
            return [_untestable(claim, paper, why, command)]
        rows = []
        for model in _models(probes):
            frame = probes[
                (probes.model == model)
                & (probes.head_role == "sink")
                & (probes.probe == "logistic")
            ]
            tags = frame[(frame.feature == "tag") & (frame.labels == "true")]
            if tags.empty:
                rows.append(_untestable(claim, paper, "no sink head was probed", command, model))
                continue
            # The head is chosen by cross-validated accuracy, never by test accuracy.
            best = tags.loc[tags.cv_accuracy.idxmax()]
            head = frame[(frame.layer == best.layer) & (frame["head"] == best["head"])]
            wanted = [("no_tag", "true"), *PROBE_CONTROLS]
            missing = [f"{f} ({lab})" for f, lab in wanted if _probe(head, f, lab) is None]
            if missing:
                reason = f"`{table}` lacks feature(s) {', '.join(missing)}"
                rows.append(_untestable(claim, paper, reason, command, model))
                continue
            no_tag = _probe(head, "no_tag")
            controls = {f"{f} ({lab})": _probe(head, f, lab) for f, lab in PROBE_CONTROLS}
            if baselines:
                own = extra[(extra.model == model) & (extra.probe == "logistic")]
                absent = [f for f in baselines[1] if _probe(own, f) is None]
                if absent:
                    reason = f"`{baselines[0]}` lacks feature(s) {', '.join(absent)} for {model}"
                    rows.append(_untestable(claim, paper, reason, command, model))
                    continue
                controls |= {f: _probe(own, f) for f in baselines[1]}
            low_end = paper_range[0] - PROBE_TOLERANCE
            near_chance = no_tag.test_accuracy <= no_tag.chance + NO_TAG_NEAR_CHANCE
            beats = all(best.test_accuracy_lo > c.test_accuracy_hi for c in controls.values())
            beaten = any(c.test_accuracy_lo > best.test_accuracy_hi for c in controls.values())
            if best.test_accuracy_hi < low_end or not near_chance or beaten:
                verdict = NOT_REPRODUCED
            elif best.test_accuracy >= low_end and beats:
                verdict = REPRODUCED
            else:
                verdict = INCONCLUSIVE
            tag = fmt(best.test_accuracy, best.test_accuracy_lo, best.test_accuracy_hi, True)
            rows.append(
                Row(
                    claim,
                    paper,
                    model,
                    f"L{best.layer}H{best['head']} tag {tag}"
                    f", no-tag {no_tag.test_accuracy:.1%} (chance {no_tag.chance:.1%})",
                    f"tag {tag}",
                    "; ".join(f"{f} {c.test_accuracy:.1%}" for f, c in controls.items())
                    + (" (beaten)" if beats else " (a control above)" if beaten else " (overlap)"),
                    verdict,
                    f"tag interval vs {low_end:.1%}; no-tag "
                    f"{'near' if near_chance else 'far from'} chance; controls "
                    f"{'beaten' if beats else 'beat the tag' if beaten else 'overlap the tag'}",
                    PROBE_UNIT,
                    command,
                )
            )
        return rows

    return rule


# ---------------------------------------------------------------------------------------------
# Sec. 4: release. Later heads' queries and keys read the tag direction, each read judged on its
# own (the maximum of two reads would inflate the null: random directions give 1.13-1.17 as a
# maximum). The null is the strongest honest one the release table holds: the other directions
# the same head writes (value directions of its non-sink keys, its outputs' principal direction;
# ``direction`` column, from RESULTS_VERSION 3), the one read more on average, paired with the tag
# by later head. Older tables hold tag reads only: the verdict is then against a random direction
# (ratio 1 in expectation) and says so.
RELEASE_COMMAND = "python -m experiments.run -m model=llama3_2_1b,qwen2_5_1_5b experiment=ctr"
RELEASE_RANDOM_RATIO = 1.0  # read strength of a random unit direction, in expectation
RELEASE_UNIT = "tag heads (cluster bootstrap; a tag head keeps all the later heads that read it)"
RELEASE_READS = ("query_read", "key_read")
RELEASE_PAIR = ["layer", "head", "later_layer", "later_head"]


def _strongest_null(frame: pd.DataFrame, read: str) -> tuple[str, pd.DataFrame]:
    """The other written direction read most on average, and the tag's reads paired with it."""
    others = frame[frame.direction != "tag"]
    kind = others.groupby("direction")[read].mean().idxmax()
    tag = frame[frame.direction == "tag"].set_index(RELEASE_PAIR)[read]
    null = others[others.direction == kind].set_index(RELEASE_PAIR)[read]
    return kind, pd.DataFrame({"tag": tag, "null": null}).dropna().reset_index()


def release_read_rule(read: str) -> "Rule":
    side, name = {"query_read": ("queries", "query"), "key_read": ("keys", "key")}[read]
    paper = "downstream heads retrieve tokens by their tags"

    def rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
        claim = f"Release: later heads' {side} read the tag (Sec. 4)"
        try:
            release = need(tables, "release", ("layer", "head", read))
        except Missing as why:
            return [_untestable(claim, paper, why, RELEASE_COMMAND)]
        rows = []
        for model in _models(release):
            frame = release[release.model == model]
            has_nulls = "direction" in frame and frame.direction.nunique() > 1
            if has_nulls:
                kind, pairs = _strongest_null(frame, read)
                clusters = pairs.layer.astype(str) + "." + pairs["head"].astype(str)
                values = (pairs.tag - pairs.null).to_numpy(float)
                bound, null_text = (
                    0.0,
                    f"the head's {kind} direction (read {pairs.null.mean():.3f})",
                )
                ours = f"tag {pairs.tag.mean():.3f} vs {kind} {pairs.null.mean():.3f}"
            else:
                pairs = frame
                clusters = frame.layer.astype(str) + "." + frame["head"].astype(str)
                values = frame[read].to_numpy(float)
                bound, null_text = RELEASE_RANDOM_RATIO, "a random direction only (ratio 1)"
                ours = f"{name} read ratio"
            mean, low, high = st.cluster_bootstrap_ci(values, clusters)
            if has_nulls:
                number = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] over {kind}"
            else:
                number = f"{fmt(mean, low, high)} x random"
            rows.append(
                Row(
                    claim,
                    paper,
                    model,
                    f"{ours}: {'difference ' if has_nulls else ''}{fmt(mean, low, high)} over "
                    f"{len(pairs)} later heads of {clusters.nunique()} tag heads",
                    number,
                    f"null: {null_text}",
                    three_way(low, high, bound),
                    f"{'tag minus null' if has_nulls else 'read ratio'} interval vs {bound}; "
                    + (
                        "null: another direction the same head writes"
                        if has_nulls
                        else "against a random direction only: not a tag-specific read (the release "
                        "table holds no other direction of the head)"
                    ),
                    RELEASE_UNIT,
                    RELEASE_COMMAND,
                )
            )
        return rows

    return rule


# Removing the tag moves the output more than an equal-norm random edit of the same head
# (activation side; beyond the paper). Unit: prompt groups. prose_long's prompt i holds passages
# 2i..2i+3, so neighbouring prompts share two passages; contiguous pairs of prompts form a group
# (no partition of the chain removes every overlap; this one keeps half of them inside groups).
RELEASE_EFFECT = "final_resid_change"  # defined for encoders too (KL needs a trained LM head)
PROMPTS_PER_GROUP = 2


def prompt_groups(frame: pd.DataFrame) -> pd.Series:
    """Group label per row: contiguous runs of ``PROMPTS_PER_GROUP`` prompts within a batch."""
    batch = frame["batch"] if "batch" in frame else 0
    return (
        pd.Series(batch, index=frame.index).astype(str)
        + ":"
        + (frame.prompt // PROMPTS_PER_GROUP).astype(str)
    )


def release_edit_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    claim = "Release: removing the tag beats an equal-norm random edit (beyond the paper)"
    paper = "— (App. K: no causal ablation in the paper)"
    columns = ("intervention", "prompt", "layer", RELEASE_EFFECT)
    try:
        edits = need(tables, "interventions", columns)
    except Missing as why:
        return [_untestable(claim, paper, why, RELEASE_COMMAND)]
    rows = []
    for model in _models(edits):
        frame = edits[edits.model == model]
        keys = [c for c in ("layer", "heads", "prompt", "batch") if c in frame]
        wide = frame.pivot_table(index=keys, columns="intervention", values=RELEASE_EFFECT)
        if not {"remove", "random_control"} <= set(wide.columns):
            reason = "`interventions` lacks `remove` or `random_control` rows"
            rows.append(_untestable(claim, paper, reason, RELEASE_COMMAND, model))
            continue
        paired = (wide["remove"] - wide["random_control"]).dropna().reset_index()
        groups = prompt_groups(paired)
        gain, low, high = st.group_mean_ci(paired[0].to_numpy(), groups.to_numpy())
        rows.append(
            Row(
                claim,
                paper,
                model,
                f"{RELEASE_EFFECT} remove {wide['remove'].mean():.3f}",
                f"{gain:+.4f} [{low:+.4f}, {high:+.4f}]",
                f"random edit {wide['random_control'].mean():.3f}; "
                f"difference {fmt(gain, low, high)}",
                three_way(low, high, 0.0),
                f"paired difference's interval vs 0 ({len(paired)} prompt x head pairs in "
                f"{groups.nunique()} groups)",
                f"prompt groups ({PROMPTS_PER_GROUP} neighbouring prompts; t with groups - 1 d.f.)",
                RELEASE_COMMAND,
            )
        )
    return rows


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


def _pairs(tables: Tables, by: str) -> list[tuple[str, pd.DataFrame]]:
    summary = need(tables, "sinks_summary", ("model", "pair", by))
    summary = summary.dropna(subset=["pair", by])
    return [(pair, group) for pair, group in summary.groupby("pair") if group[by].nunique() == 2]


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
        return [_untestable(claim, paper, why, REASONING_COMMAND)]
    if not pairs:
        return [
            _untestable(
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
            rows.append(_untestable(claim, paper, why, REASONING_COMMAND, pair))
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
        return [_untestable(claim, paper, why, QK_COMMAND)]
    if not pairs:
        reason = "no matched pair with and without QK-norm ran"
        return [_untestable(claim, paper, reason, QK_COMMAND, verdict=NOT_TESTABLE)]
    rows = []
    for pair, group in pairs:
        with_qk = group[group.qk_norm.astype(bool)].model.iloc[0]
        without = group[~group.qk_norm.astype(bool)].model.iloc[0]
        try:
            a, b = _sinks_per_head(tables, with_qk, th), _sinks_per_head(tables, without, th)
            na = _sinks_per_head(tables, with_qk, th, non_first=True)
            nb = _sinks_per_head(tables, without, th, non_first=True)
        except Missing as why:
            rows.append(_untestable(claim, paper, why, QK_COMMAND, pair))
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
        return [_untestable(MINIMAL_CLAIM, MINIMAL_PAPER, why, MINIMAL_COMMAND)]
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
        return [_untestable(MINIMAL_CLAIM, MINIMAL_PAPER, why, SWEEP_COMMAND)]
    cell = sweep[sweep.cell == SWEEP_VERDICT_CELL]
    if cell.empty:
        reason = f"the sweep has no `{SWEEP_VERDICT_CELL}` cell (its fixed verdict cell)"
        return [_untestable(MINIMAL_CLAIM, MINIMAL_PAPER, reason, SWEEP_COMMAND)]
    run = cell.iloc[0]
    passing = int(((sweep.n_emerged_strict >= 1) & (sweep.n_emerged_strict <= 4)).sum())
    old = (
        f" strict; {run.n_emerged}/{run.n_runs} on the old criterion; {passing} of {len(sweep)} "
        "cells have 1-4 strict successes (not a verdict: cells chosen after the sweep)"
    )
    control = "equal-variance edit orthogonal to the tag; tag-only patch"
    label = f"minimal sweep, fixed cell {SWEEP_VERDICT_CELL} (strict)"
    return [_emergence_row(label, run.n_emerged_strict, run.n_runs, old, control, SWEEP_COMMAND)]


Rule = Callable[..., list[Row]]
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
