"""Ledger verdict rules on hand-made tables whose verdict is known: reproduced, not reproduced,
inconclusive, not testable (missing table or column)."""

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
                mean_score=0.6 if head < first_sinks else 0.1,
                occurrences=20,
                null_mean_score=null,
            )
        )
        rows.append(
            dict(
                layer=0,
                head=head,
                sink_kind="punctuation",
                token=".",
                mean_score=0.3 if head < punct_sinks else 0.0,
                occurrences=20,
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


def _variance(model, tag, control, half_width=0.02, rank=1):
    """Per-head rows at one rank, with the mechanism's jackknife interval of the excess."""
    n = len(tag)
    excess = np.asarray(tag) - np.asarray(control)
    return pd.DataFrame(
        dict(
            model=model,
            layer=0,
            head=np.arange(n),
            rank=rank,
            tag_variance_explained=tag,
            nonsink_key_variance_explained=control,
            tag_excess_over_nonsink=excess,
            tag_excess_low=excess - half_width,
            tag_excess_high=excess + half_width,
        )
    )


def test_variance_needs_range_and_control_and_says_inconclusive_when_the_interval_holds_0():
    rng = np.random.default_rng(0)
    tag = 0.3 + 0.02 * rng.standard_normal(30)
    tables = {
        "variance": pd.concat(
            [
                _variance("good", tag, np.full(30, 0.05)),
                _variance("weak", 0.05 + 0.01 * rng.standard_normal(30), np.full(30, 0.04)),
                _variance("control_wins", tag, np.full(30, 0.5)),
                _variance("noisy", tag, tag - 0.01, half_width=0.2),
            ]
        )
    }
    rows = ledger.variance_rule(tables)
    assert _verdicts(rows, "Tags explain") == {
        "good": ledger.REPRODUCED,
        "weak": ledger.NOT_REPRODUCED,
        "control_wins": ledger.NOT_REPRODUCED,
        "noisy": ledger.INCONCLUSIVE,
    }
    assert all(row.unit.startswith("prompt groups") for row in rows)


def test_variance_compares_tag_and_control_at_the_same_rank():
    # Rank 1: tag 0.30 vs control 0.20. Rank 2: the tag has no second direction (NaN) while the
    # control's rank-2 value is 0.40; the max over ranks taken separately would compare 0.30 with
    # 0.40 and call the control the winner.
    rank1 = _variance("m", np.full(20, 0.3), np.full(20, 0.2))
    rank2 = _variance("m", np.full(20, np.nan), np.full(20, 0.4), rank=2)
    (row,) = ledger.variance_rule({"variance": pd.concat([rank1, rank2])})
    assert row.verdict == ledger.REPRODUCED and row.cell.startswith("excess 10.0%")
    # Where both ranks exist the rank-2 pair is used, and rank-1-only mode keeps rank 1.
    rank2 = _variance("m", np.full(20, 0.5), np.full(20, 0.45), rank=2)
    both = {"variance": pd.concat([rank1, rank2])}
    assert ledger.variance_rule(both)[0].cell.startswith("excess 5.0%")
    only1 = ledger.Thresholds(variance_rank="1")
    assert ledger.variance_rule(both, only1)[0].cell.startswith("excess 10.0%")


def test_variance_counts_heads_raw_and_corrected():
    # 10 heads whose excess is 3 jackknife standard errors (p ~ 0.015 with 9 d.f.: significant
    # raw, not after Holm or Bonferroni over 10 heads), 10 heads at 10 standard errors.
    se = 0.01
    excess = np.r_[np.full(10, 3 * se), np.full(10, 10 * se)]
    frame = _variance("m", 0.3 + excess, np.full(20, 0.3), half_width=ledger.Z_95 * se)
    (row,) = ledger.variance_rule({"variance": frame})
    assert "20 raw, 10 Holm, 10 Bonferroni of 20" in row.ours


def test_variance_row_says_how_the_control_was_drawn():
    frame = _variance("m", np.full(10, 0.3), np.full(10, 0.2))
    (row,) = ledger.variance_rule({"variance": frame})
    assert "one draw, its spread in no interval" in row.control
    drawn = frame.assign(n_control_draws=20, nonsink_key_draw_sd=np.linspace(0.01, 0.05, 10))
    (row,) = ledger.variance_rule({"variance": drawn})
    assert "mean of 20 draws, median SD over draws 3.0%" in row.control
    # an older model's rows beside a newer one's: its draw columns are NaN, it had one draw
    old = _variance("old", np.full(10, 0.3), np.full(10, 0.2))
    rows = ledger.variance_rule({"variance": pd.concat([drawn, old], ignore_index=True)})
    controls = {row.model: row.control for row in rows}
    assert "mean of 20 draws" in controls["m"]
    assert "one draw, its spread in no interval" in controls["old"]


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
        "random": ledger.INCONCLUSIVE,  # the control's interval overlaps the tag's
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
                edits("weaker", 0.01 + noise, 0.05 + noise),
            ]
        )
    }
    rows = ledger.release_edit_rule(tables)
    assert _verdicts(rows, "Release: removing") == {
        "strong": ledger.REPRODUCED,
        "same": ledger.INCONCLUSIVE,
        "weaker": ledger.NOT_REPRODUCED,
    }
    # 20 prompts in pairs of neighbours: 10 prompt groups, named in the row.
    assert all("in 10 groups" in row.reason and "prompt groups" in row.unit for row in rows)


def test_prompt_groups_keep_neighbouring_prompts_together():
    frame = pd.DataFrame(dict(prompt=[0, 1, 2, 3, 0], batch=[0, 0, 0, 0, 1]))
    assert list(ledger.prompt_groups(frame)) == ["0:0", "0:0", "0:1", "0:1", "1:0"]


def _release(reads):
    """Release rows of 6 tag heads x 5 later heads; ``reads`` maps direction -> (query, key)."""
    rows = []
    for direction, (query, key) in reads.items():
        for tag_head in range(6):
            for later in range(5):
                rows.append(
                    dict(
                        model="m",
                        layer=0,
                        head=tag_head,
                        later_layer=1,
                        later_head=later,
                        direction=direction,
                        query_read=query + 0.1 * later,
                        key_read=key + 0.1 * later,
                    )
                )
    return {"release": pd.DataFrame(rows)}


def _release_verdicts(tables):
    return [ledger.release_read_rule(read)(tables)[0] for read in ledger.RELEASE_READS]


def test_release_reads_are_judged_separately_against_a_random_direction_without_nulls():
    tables = _release({"tag": (2.0, 0.5)})
    tables["release"] = tables["release"].drop(columns="direction")
    query, key = _release_verdicts(tables)
    assert query.verdict == ledger.REPRODUCED and key.verdict == ledger.NOT_REPRODUCED
    assert "random direction only" in query.reason and "of 6 tag heads" in query.ours


def test_release_reads_face_the_strongest_other_direction_the_head_writes():
    # Queries read the tag (2.0) well above a random direction but no better than the head's
    # output principal direction (2.0); keys read the tag (1.5) above both nulls (1.2, 1.0).
    tables = _release({"tag": (2.0, 1.5), "nonsink_value": (1.6, 1.2), "output_pc": (2.0, 1.0)})
    query, key = _release_verdicts(tables)
    assert query.verdict == ledger.INCONCLUSIVE and "output_pc" in query.control
    assert key.verdict == ledger.REPRODUCED and "nonsink_value" in key.control


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
                        mean_score=0.5 if k < count else 0.0,
                        null_mean_score=0.01,
                        occurrences=20,
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
    assert ledger.reasoning_rule(same)[0].verdict == ledger.NOT_REPRODUCED  # equivalent (TOST)
    noisy = _pair_tables([0, 3] * 3, [3, 0] * 3, "role", ("base", "reasoning"))
    assert ledger.reasoning_rule(noisy)[0].verdict == ledger.INCONCLUSIVE
    (row,) = ledger.reasoning_rule({})
    assert row.verdict == ledger.NOT_TESTABLE and "r1_distill" in row.command


def test_qk_norm_rule():
    # b has QK-norm: same counts, but its second sinks are punctuation.
    kept = _pair_tables([1, 2] * 20, [2, 1] * 20, "qk_norm", (False, True), kinds_b="punctuation")
    assert ledger.qk_norm_rule(kept)[0].verdict == ledger.REPRODUCED
    fewer = _pair_tables([2] * 40, [1] * 40, "qk_norm", (False, True), kinds_b="punctuation")
    assert ledger.qk_norm_rule(fewer)[0].verdict == ledger.NOT_REPRODUCED
    # Same mean but too few heads to show equivalence within 25%: not "similar".
    few = _pair_tables([0, 4] * 3, [4, 0] * 3, "qk_norm", (False, True), kinds_b="punctuation")
    assert ledger.qk_norm_rule(few)[0].verdict == ledger.INCONCLUSIVE


def test_minimal_rule():
    success = pd.DataFrame(
        dict(variant=["rare", "often", "always", "never"], n_runs=10, n_emerged=[3, 6, 10, 0])
    )
    verdicts = _verdicts(ledger.minimal_rule({"minimal_success": success}), "The minimal")
    assert verdicts == {
        "minimal (rare)": ledger.REPRODUCED,
        "minimal (often)": ledger.INCONCLUSIVE,  # interval [26%, 88%] holds 40%, count above it
        "minimal (always)": ledger.NOT_REPRODUCED,
        "minimal (never)": ledger.NOT_REPRODUCED,
    }


def test_minimal_sweep_is_judged_on_its_fixed_cell_only():
    sweep = pd.DataFrame(
        dict(
            cell=["base", "paper_like", "rare"],
            n_runs=10,
            n_emerged=[10, 10, 10],
            n_emerged_strict=[10, 0, 4],
        )
    )
    (row,) = ledger.minimal_sweep_rule({"minimal_sweep": sweep})
    assert row.model == "minimal sweep, fixed cell base (strict)"
    assert row.verdict == ledger.NOT_REPRODUCED and "1 of 3 cells" in row.ours
    (row,) = ledger.minimal_sweep_rule({"minimal_sweep": sweep[sweep.cell != "base"]})
    assert row.verdict == ledger.NOT_TESTABLE_HERE and "base" in row.reason


def test_the_sweep_config_fixes_the_ledger_s_verdict_cell():
    from omegaconf import OmegaConf

    config = OmegaConf.load("conf/minimal_sweep/gpu.yaml")
    assert config.verdict_cell == ledger.SWEEP_VERDICT_CELL
    assert ledger.SWEEP_VERDICT_CELL in [cell.name for cell in config.cells]


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


def test_variance_uses_the_group_replicates_when_the_table_has_them():
    # 20 heads, excess 0.05, each head's jackknife interval +-0.2 (inconclusive when bounded
    # conservatively); their replicates over 5 prompt groups cancel between heads, so the mean's
    # own jackknife interval is tight and clears 0.
    frame = _variance("m", np.full(20, 0.35), np.full(20, 0.3), half_width=0.2)
    wiggle = np.array([0.02, -0.02, 0.01, -0.01, 0.0])
    for group, shift in enumerate(wiggle):
        signs = np.where(np.arange(20) % 2 == 0, 1.0, -1.0)
        frame[f"tag_excess_without_group_{group}"] = 0.05 + signs * shift
    (row,) = ledger.variance_rule({"variance": frame})
    assert row.verdict == ledger.REPRODUCED and "5 groups of neighbouring prompts" in row.unit
    legacy = frame.drop(columns=[f"tag_excess_without_group_{g}" for g in range(5)])
    (row,) = ledger.variance_rule({"variance": legacy})
    assert row.verdict == ledger.INCONCLUSIVE and "conservative" in row.unit
