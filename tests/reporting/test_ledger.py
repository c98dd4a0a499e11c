"""Ledger verdict rules on hand-made tables whose verdict is known: reproduced, not reproduced,
not testable (missing table or column)."""

import numpy as np
import pandas as pd

from sinkmech.reporting import ledger


def _sinks(model, n_heads, first_sinks, null=0.05, punct_sinks=0, source="local"):
    rows = []
    for head in range(n_heads):
        rows.append(
            dict(
                layer=0,
                head=head,
                sink_kind="first",
                token="<s>",
                mean_score=0.6,
                is_sink=head < first_sinks,
                null_mean_score=null,
            )
        )
        rows.append(
            dict(
                layer=0,
                head=head,
                sink_kind="punctuation",
                token=".",
                mean_score=0.3,
                is_sink=head < punct_sinks,
                null_mean_score=null,
            )
        )
    sinks = pd.DataFrame(rows).assign(model=model, source=source)
    summary = pd.DataFrame([dict(model=model, n_heads=n_heads, source=source)])
    return sinks, summary


def _verdicts(rows, claim_start):
    return {r.model: r.verdict for r in rows if r.claim.startswith(claim_start)}


def test_first_token_sinks_reproduced_or_not_by_share():
    many, many_summary = _sinks("many", 40, 30)
    few, few_summary = _sinks("few", 40, 2)
    tables = {
        "sinks": pd.concat([many, few]),
        "sinks_summary": pd.concat([many_summary, few_summary]),
    }
    verdicts = _verdicts(ledger.RULES[0](tables), "Sinks are common: first")
    assert verdicts == {"many": ledger.REPRODUCED, "few": ledger.NOT_REPRODUCED}


def test_sinks_below_the_uniform_null_do_not_count():
    sinks, summary = _sinks("short_prompts", 40, 40, null=0.7)  # uniform attention would give 0.7
    (row,) = ledger.RULES[0]({"sinks": sinks, "sinks_summary": summary})
    assert row.verdict == ledger.NOT_REPRODUCED and row.ours.startswith("0/40")


def test_random_weight_models_get_no_row():
    sinks, summary = _sinks("tiny_x", 8, 8, source="tiny")
    assert ledger.RULES[0]({"sinks": sinks, "sinks_summary": summary}) == []


def test_missing_null_column_is_not_testable_and_named():
    sinks, summary = _sinks("m", 8, 8)
    (row,) = ledger.RULES[0](
        {"sinks": sinks.drop(columns="null_mean_score"), "sinks_summary": summary}
    )
    assert row.verdict == ledger.NOT_TESTABLE_HERE and "null_mean_score" in row.reason
    assert row.ours == "—" and row.command.startswith("python -m experiments.run")


def _variance(model, tag, control):
    n = len(tag)
    return pd.DataFrame(
        dict(
            model=model,
            layer=0,
            head=np.arange(n),
            rank=1,
            tag_variance_explained=tag,
            nonsink_key_variance_explained=control,
        )
    )


def test_variance_needs_range_and_control():
    rng = np.random.default_rng(0)
    tables = {
        "variance": pd.concat(
            [
                _variance("good", 0.3 + 0.02 * rng.standard_normal(30), np.full(30, 0.05)),
                _variance("weak", 0.05 + 0.01 * rng.standard_normal(30), np.full(30, 0.04)),
                _variance("control_wins", 0.3 + 0.02 * rng.standard_normal(30), np.full(30, 0.5)),
            ]
        )
    }
    verdicts = _verdicts(ledger.variance_rule(tables), "Tags explain")
    assert verdicts == {
        "good": ledger.REPRODUCED,
        "weak": ledger.NOT_REPRODUCED,
        "control_wins": ledger.NOT_REPRODUCED,
    }


def test_variance_without_control_column_is_not_testable():
    frame = _variance("m", np.full(5, 0.3), np.full(5, 0.1)).drop(
        columns="nonsink_key_variance_explained"
    )
    (row,) = ledger.variance_rule({"variance": frame})
    assert (
        row.verdict == ledger.NOT_TESTABLE_HERE and "nonsink_key_variance_explained" in row.reason
    )


def _probes(model, accuracies, half_width=0.02):
    """Probe rows; a key ``"feature/labels"`` sets the labels (default ``true``)."""
    rows = []
    for key, acc in accuracies.items():
        feature, _, labels = key.partition("/")
        rows.append(
            dict(
                model=model,
                layer=1,
                head=2,
                head_role="sink",
                feature=feature,
                probe="logistic",
                labels=labels or "true",
                cv_accuracy=acc,
                test_accuracy=acc,
                test_accuracy_lo=acc - half_width,
                test_accuracy_hi=acc + half_width,
                chance=0.5,
            )
        )
    return pd.DataFrame(rows)


def test_truth_probe_rule():
    good = {"tag": 0.95, "no_tag": 0.52, "tag/shuffled": 0.5, "resid_random": 0.6}
    no_tag_reads_it = {**good, "no_tag": 0.9}
    random_enough = {**good, "resid_random": 0.95}
    tables = {
        "truth_probes": pd.concat(
            [
                _probes("good", good),
                _probes("leaky", no_tag_reads_it),
                _probes("random", random_enough),
            ]
        )
    }
    verdicts = _verdicts(ledger.RULES[3](tables), "Tags carry truth")
    assert verdicts == {
        "good": ledger.REPRODUCED,
        "leaky": ledger.NOT_REPRODUCED,
        "random": ledger.NOT_REPRODUCED,
    }


def test_truth_probe_without_baselines_is_not_testable():
    (row,) = ledger.RULES[3]({"truth_probes": _probes("m", {"tag": 0.95, "no_tag": 0.5})})
    assert (
        row.verdict == ledger.NOT_TESTABLE_HERE
        and "tag (shuffled)" in row.reason
        and "resid_random" in row.reason
    )


def test_sentiment_without_table_is_not_testable():
    (row,) = ledger.RULES[4]({})
    assert row.verdict == ledger.NOT_TESTABLE and "sentiment_probes" in row.reason


def test_release_edit_rule_pairs_remove_with_random():
    def edits(model, remove, random):
        n = len(remove)
        frame = pd.DataFrame(
            dict(
                prompt=np.tile(np.arange(n), 2),
                layer=0,
                heads="[1]",
                intervention=["remove"] * n + ["random_control"] * n,
                final_resid_change=np.r_[remove, random],
            )
        )
        return frame.assign(model=model)

    rng = np.random.default_rng(0)
    noise = 0.01 * rng.standard_normal(20)
    tables = {
        "interventions": pd.concat(
            [
                edits("strong", 0.2 + noise, 0.05 + noise),
                edits("same", 0.05 + noise, 0.05 + noise[::-1]),
            ]
        )
    }
    verdicts = _verdicts(ledger.release_edit_rule(tables), "Release: removing")
    assert verdicts == {"strong": ledger.REPRODUCED, "same": ledger.NOT_REPRODUCED}


def _pair_tables(per_head_a, per_head_b, by, values, kinds_b="first"):
    """Two models of one pair with the given sinks per head (all heads)."""
    sinks, summary = [], []
    for model, counts, value, kind in (
        ("a", per_head_a, values[0], "first"),
        ("b", per_head_b, values[1], kinds_b),
    ):
        for head, count in enumerate(counts):
            for k in range(max(count, 1)):
                sinks.append(
                    dict(
                        model=model,
                        layer=0,
                        head=head,
                        is_sink=k < count,
                        sink_kind="first" if k == 0 else kind,
                    )
                )
        summary.append(dict(model=model, pair="p", **{by: value}))
    return {"sinks": pd.DataFrame(sinks), "sinks_summary": pd.DataFrame(summary)}


def test_reasoning_rule():
    more = _pair_tables([1] * 40, [2] * 20 + [3] * 20, "role", ("base", "reasoning"))
    (row,) = ledger.reasoning_rule(more)
    assert row.verdict == ledger.REPRODUCED and row.model == "a -> b"
    same = _pair_tables([1, 2] * 20, [2, 1] * 20, "role", ("base", "reasoning"))
    assert ledger.reasoning_rule(same)[0].verdict == ledger.NOT_REPRODUCED
    (row,) = ledger.reasoning_rule({})
    assert row.verdict == ledger.NOT_TESTABLE and "r1_distill" in row.command


def test_qk_norm_rule():
    # b has QK-norm: same counts, but its second sinks are punctuation.
    kept = _pair_tables([1, 2] * 20, [2, 1] * 20, "qk_norm", (False, True), kinds_b="punctuation")
    assert ledger.qk_norm_rule(kept)[0].verdict == ledger.REPRODUCED
    fewer = _pair_tables([2] * 40, [1] * 40, "qk_norm", (False, True), kinds_b="punctuation")
    assert ledger.qk_norm_rule(fewer)[0].verdict == ledger.NOT_REPRODUCED


def test_minimal_rule():
    success = pd.DataFrame(
        dict(variant=["rare", "always", "never"], n_runs=10, n_emerged=[3, 10, 0])
    )
    verdicts = _verdicts(ledger.minimal_rule({"minimal_success": success}), "The minimal")
    assert verdicts == {
        "minimal (rare)": ledger.REPRODUCED,
        "minimal (always)": ledger.NOT_REPRODUCED,
        "minimal (never)": ledger.NOT_REPRODUCED,
    }


def test_minimal_sweep_rule_reads_the_strict_criterion_of_base_paper_like_and_nearest_cell():
    sweep = pd.DataFrame(
        dict(
            cell=["base", "paper_like", "rare", "other"],
            n_runs=10,
            n_emerged=[10, 10, 10, 10],
            n_emerged_strict=[10, 0, 4, 9],
        )
    )
    verdicts = _verdicts(ledger.minimal_sweep_rule({"minimal_sweep": sweep}), "The minimal")
    assert verdicts == {
        "minimal sweep, cell base (strict)": ledger.NOT_REPRODUCED,
        "minimal sweep, cell paper_like (strict)": ledger.NOT_REPRODUCED,
        "minimal sweep, cell rare (strict)": ledger.REPRODUCED,
    }


def test_empty_tree_gives_only_untestable_rows():
    table = ledger.ledger({})
    assert len(table) == len(ledger.RULES)
    assert (table.verdict == ledger.NOT_TESTABLE).all() and (table.reason != "").all()
    assert "not testable offline" in ledger.findings(table)


def test_sentiment_rule_needs_the_tag_to_beat_the_word_embedding_and_position():
    good = {"tag": 0.92, "no_tag": 0.52, "tag/shuffled": 0.5, "resid_random": 0.6}
    probes = pd.concat([_probes("good", good), _probes("wordy", good), _probes("bare", good)])
    baselines = pd.concat(
        [
            _probes("good", {"word_embedding": 0.8, "position_template": 0.5}),
            _probes("wordy", {"word_embedding": 0.99, "position_template": 0.5}),
        ]
    ).drop(columns=["layer", "head", "head_role"])
    rows = ledger.RULES[4]({"sentiment_probes": probes, "sentiment_baselines": baselines})
    verdicts = _verdicts(rows, "Tags carry sentiment")
    assert verdicts == {
        "good": ledger.REPRODUCED,
        "wordy": ledger.NOT_REPRODUCED,
        "bare": ledger.NOT_TESTABLE_HERE,
    }
    (bare,) = [row for row in rows if row.model == "bare"]
    assert "word_embedding" in bare.reason
