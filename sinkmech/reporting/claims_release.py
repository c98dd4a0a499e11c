"""Claims about release (Sec. 4): later heads read the tag more than other directions the head
writes, and removing the tag moves the output more than an equal-norm random edit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sinkmech.reporting import statistics as st
from sinkmech.reporting.verdicts import (
    DEFAULT,
    NOT_TESTABLE_HERE,
    Missing,
    Row,
    Rule,
    Tables,
    Thresholds,
    evidence_models,
    fmt,
    need,
    three_way,
    untestable,
)

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


@dataclass(frozen=True)
class ReadTest:
    """One read judged against one null: values whose mean is compared with ``bound``, their
    clusters (tag heads), and the words the row uses."""

    values: np.ndarray
    clusters: pd.Series
    bound: float
    label: str  # what ``values`` are
    versus: str  # the null in the matrix cell
    null: str  # the null in words
    reason: str


def tag_heads(frame: pd.DataFrame) -> pd.Series:
    """Each release row's tag head, the cluster its bootstrap resamples."""
    return frame.layer.astype(str) + "." + frame["head"].astype(str)


def written_pairs(frame: pd.DataFrame, read: str) -> tuple[pd.DataFrame, str]:
    """The tag's reads and the null's, paired by (tag head, later head): the null is the other
    direction the same head writes that is read most on average (its name, ``kind``)."""
    others = frame[frame.direction != "tag"]
    kind = others.groupby("direction")[read].mean().idxmax()
    tag = frame[frame.direction == "tag"].set_index(RELEASE_PAIR)[read]
    null = others[others.direction == kind].set_index(RELEASE_PAIR)[read]
    return pd.DataFrame({"tag": tag, "null": null}).dropna().reset_index(), kind


def against_written(frame: pd.DataFrame, read: str) -> ReadTest:
    """Tag minus the other direction of the same head read most on average, paired by later head
    (bound 0)."""
    pairs, kind = written_pairs(frame, read)
    return ReadTest(
        (pairs.tag - pairs.null).to_numpy(float),
        tag_heads(pairs),
        0.0,
        f"tag {pairs.tag.mean():.3f} vs {kind} {pairs.null.mean():.3f}: difference",
        f"minus {kind}",
        f"the head's {kind} direction (read {pairs.null.mean():.3f})",
        "null: the other direction the same head writes that is read most",
    )


def against_random(frame: pd.DataFrame, read: str) -> ReadTest:
    """The read ratio itself against a random direction's 1 (tables without other directions)."""
    return ReadTest(
        frame[read].to_numpy(float),
        tag_heads(frame),
        RELEASE_RANDOM_RATIO,
        f"{read.split('_')[0]} read ratio",
        "x random",
        "a random direction only (ratio 1)",
        "against a random direction only: not a tag-specific read (the release table holds no "
        "other direction of the head)",
    )


def release_read_rule(read: str) -> Rule:
    side = {"query_read": "queries", "key_read": "keys"}[read]
    claim = f"Release: later heads' {side} read the tag (Sec. 4)"
    paper = "downstream heads retrieve tokens by their tags"

    def rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
        try:
            release = need(tables, "release", ("layer", "head", read))
        except Missing as why:
            return [untestable(claim, paper, why, RELEASE_COMMAND)]
        rows = []
        for model in evidence_models(release):
            frame = release[release.model == model]
            written = "direction" in frame and frame.direction.nunique() > 1
            test = (against_written if written else against_random)(frame, read)
            mean, low, high = st.cluster_bootstrap_ci(test.values, test.clusters)
            rows.append(
                Row(
                    claim,
                    paper,
                    model,
                    f"{test.label} {fmt(mean, low, high)} over {len(test.values)} later heads of "
                    f"{test.clusters.nunique()} tag heads",
                    f"{fmt(mean, low, high)} {test.versus}",
                    f"null: {test.null}",
                    three_way(low, high, test.bound),
                    f"interval vs {test.bound:g}; {test.reason}",
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


def remove_vs_random(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the ``remove`` and ``random_control`` effects per edited head and prompt; their paired
    difference ``gain`` with the prompt ``group`` of each pair), or ``Missing`` without both."""
    keys = [c for c in ("layer", "heads", "prompt", "batch") if c in frame]
    wide = frame.pivot_table(index=keys, columns="intervention", values=RELEASE_EFFECT)
    if not {"remove", "random_control"} <= set(wide.columns):
        raise Missing("`interventions` lacks `remove` or `random_control` rows", NOT_TESTABLE_HERE)
    paired = (wide["remove"] - wide["random_control"]).dropna().rename("gain").reset_index()
    return wide, paired.assign(group=prompt_groups(paired))


def release_edit_rule(tables: Tables, th: Thresholds = DEFAULT) -> list[Row]:
    claim = "Release: removing the tag beats an equal-norm random edit (beyond the paper)"
    paper = "— (App. K: no causal ablation in the paper)"
    columns = ("intervention", "prompt", "layer", RELEASE_EFFECT)
    try:
        edits = need(tables, "interventions", columns)
    except Missing as why:
        return [untestable(claim, paper, why, RELEASE_COMMAND)]
    rows = []
    for model in evidence_models(edits):
        try:
            wide, paired = remove_vs_random(edits[edits.model == model])
        except Missing as why:
            rows.append(untestable(claim, paper, why, RELEASE_COMMAND, model))
            continue
        groups = paired.group
        gain, low, high = st.group_mean_ci(paired.gain.to_numpy(), groups.to_numpy())
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
