"""Headline numbers (issue 33): each analysis declares them from its own tables, each beside its
null or control; they agree with the tables' own summaries and are NaN, never an error, where a
table is absent or empty."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sinkmech.analyses import REGISTRY
from sinkmech.analyses.headlines import HEADLINE_COLUMNS, headline_table
from sinkmech.mechanism.eviction import summarise_eviction
from sinkmech.mechanism.sinks import summarise


def _census(seed: int = 0) -> pd.DataFrame:
    """A census table of 3 layers x 4 heads with random scores, flags from the census's rule."""
    rng = np.random.default_rng(seed)
    rows = [
        dict(layer=layer, head=head, sink_kind=kind, token=token)
        for layer in range(3)
        for head in range(4)
        for kind, token in (("first", "<s>"), ("punctuation", "."), ("content", "cat"))
    ]
    table = pd.DataFrame(rows).assign(
        model="m",
        mean_score=rng.uniform(0, 0.6, len(rows)),
        null_mean_score=0.05,
        occurrences=10,
        frac_above_gu_eps=rng.uniform(0, 1, len(rows)),
    )
    table["is_sink"] = table.mean_score > 0.2
    return table


def test_census_headlines_agree_with_the_census_summary():
    table = _census()
    summary = summarise(table, n_prompts=10, qk_norm=False)
    headlines = REGISTRY["sinks"].headlines({"sinks": table, "sinks_summary": summary})
    row = summary.iloc[0]
    first, punct = headlines["sinks/first_token_share"], headlines["sinks/prompt_dependent_share"]
    assert first.value == row.first_token_sink_heads / row.n_heads
    assert punct.value == row.prompt_dependent_sink_heads / row.n_heads
    per_head = headlines["sinks/sinks_per_head"]
    assert per_head.value == pytest.approx(row.distinct_sink_labels_per_head)
    score = headlines["sinks/first_token_score"]
    assert score.value == pytest.approx(table[table.sink_kind == "first"].mean_score.mean())
    assert score.null == pytest.approx(row.first_token_null)
    for headline in headlines.values():
        assert headline.low <= headline.value <= headline.high and headline.null_label


@pytest.mark.parametrize("name", list(REGISTRY))
def test_absent_or_empty_tables_give_the_same_names_not_measured(name):
    analysis = REGISTRY[name]
    absent = analysis.headlines({})
    empty = analysis.headlines({table: pd.DataFrame() for table in analysis.tables})
    assert set(absent) == set(empty)
    assert all(math.isnan(h.value) for h in [*absent.values(), *empty.values()])
    prefixes = (f"{name}/", "sinks/") if name == "ctr" else (f"{name}/",)
    assert all(key.startswith(prefixes) for key in absent)
    if name != "long_context":  # its names carry the lengths the unit ran
        assert absent


def test_a_unit_table_holds_each_name_once():
    table = _census()
    tables = {"sinks": table, "sinks_summary": summarise(table, 10, False)}
    frame = headline_table(["sinks", "ctr"], tables)
    assert list(frame.columns) == list(HEADLINE_COLUMNS) and frame.name.is_unique
    assert {"sinks/first_token_share", "ctr/remove_minus_random"} <= set(frame.name)


def test_eviction_ratio_is_the_summary_ratio_beside_its_control():
    rng = np.random.default_rng(1)
    full = rng.normal(4.0, 0.2, 6)
    shifts = {"full": 0.0, "window": 0.9, "window+first": 0.3}
    sequences = pd.DataFrame(
        [
            dict(sequence=s, condition=c, nll=full[s] + shift + rng.normal(0, 0.05))
            for c, shift in shifts.items()
            for s in range(6)
        ]
    ).assign(mean_keys_seen=1.0, model="m", window=8, n_first=4, n_prompt_sinks=4, seq_len=64)
    ratios = summarise_eviction(sequences).set_index("condition").ppl_ratio_to_full
    headlines = REGISTRY["eviction"].headlines({"eviction_sequences": sequences})
    first = headlines["eviction/ppl_ratio_first"]
    assert first.value == pytest.approx(ratios["window+first"], rel=1e-5)
    assert first.null == pytest.approx(ratios["window"], rel=1e-5)
    assert first.low < first.value < first.high
    assert math.isnan(headlines["eviction/ppl_ratio_first_prompt_sinks"].value)  # no such rows


def test_release_reads_and_the_tag_edit_are_measured_against_their_nulls():
    pairs = pd.DataFrame(
        [dict(layer=0, head=h, later_layer=1, later_head=k) for h in range(3) for k in range(4)]
    )
    other = pairs.assign(direction="nonsink_value", query_read=np.arange(12) / 10, key_read=1.0)
    tag = other.assign(direction="tag", query_read=other.query_read + 0.5, key_read=1.2)
    ctr = REGISTRY["ctr"].headlines({"release": pd.concat([tag, other])})
    read, excess = ctr["ctr/release_query_read"], ctr["ctr/release_query_excess"]
    assert read.value == pytest.approx(tag.query_read.mean())
    assert (
        read.null == pytest.approx(other.query_read.mean()) and "nonsink_value" in read.null_label
    )
    assert excess.value == pytest.approx(0.5) and excess.low == pytest.approx(0.5)
    legacy = REGISTRY["ctr"].headlines({"release": tag.drop(columns="direction")})
    key = legacy["ctr/release_key_excess"]
    assert legacy["ctr/release_key_read"].null == 1.0 and key.value == pytest.approx(0.2)

    edits = pd.DataFrame(
        [
            dict(layer=0, heads="0", prompt=p, batch=0, intervention=mode, final_resid_change=e)
            for p in range(8)
            for mode, e in (("remove", 0.1 * p + 0.25), ("random_control", 0.1 * p))
        ]
    )
    gain = REGISTRY["ctr"].headlines({"interventions": edits})["ctr/remove_minus_random"]
    assert (
        gain.value == pytest.approx(0.25)
        and gain.null == 0.0
        and "prompt groups" in gain.resampling
    )


def test_probe_headline_takes_the_head_with_the_best_cross_validated_tag():
    def probe(head, feature, labels, cv, test):
        return dict(
            layer=1, head=head, head_role="sink", feature=feature, labels=labels, probe="logistic",
            cv_accuracy=cv, test_accuracy=test, test_accuracy_lo=test - 0.05,
            test_accuracy_hi=test + 0.05, chance=0.5, n_test_clusters=40,
        )  # fmt: skip

    truth = pd.DataFrame(
        [
            probe(0, "tag", "true", 0.90, 0.80),  # best by cross-validation
            probe(0, "tag", "shuffled", 0.50, 0.55),
            probe(0, "resid_random", "true", 0.60, 0.62),
            probe(0, "no_tag", "true", 0.52, 0.51),
            probe(1, "tag", "true", 0.70, 0.95),  # best by test accuracy: never chosen
            probe(1, "resid_random", "true", 0.60, 0.70),
        ]
    )
    headlines = REGISTRY["probing"].headlines({"truth_probes": truth})
    tag = headlines["probing/truth_tag_accuracy"]
    assert (tag.value, tag.low, tag.high) == pytest.approx((0.80, 0.75, 0.85))
    assert tag.null == 0.62 and "resid_random" in tag.null_label
    no_tag = headlines["probing/truth_no_tag_accuracy"]
    assert no_tag.value == 0.51 and no_tag.null == 0.5
    assert math.isnan(headlines["probing/sentiment_tag_accuracy"].value)
