"""Probes recover planted directions, sit at chance on shuffled labels, and the model features are
the paper's tag decomposition (Sec. 4.4 of arXiv 2502.00919)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sinkmech.attention.hooks import (
    expand_kv_heads,
    gate_name,
    gather_per_layer,
    head_gate,
    output_weights,
    pattern_name,
    run_hooked,
    value_name,
    z_name,
)
from sinkmech.data.prompts import tokenize
from sinkmech.data.statements import load_statements
from sinkmech.mechanism.sinks import special_token_strings
from sinkmech.mechanism.tags import decompose_head_outputs
from sinkmech.probing.analysis import ProbingSettings, run_probing
from sinkmech.probing.features import (
    PROBE_SUFFIX,
    HeadBasis,
    extract_truth_features,
    last_punctuation,
)
from sinkmech.probing.probes import (
    PROBES,
    abs_cosine,
    auroc,
    cluster_bootstrap,
    converged,
    cross_validated_accuracy,
    evaluate_probe,
    probe_direction,
)
from sinkmech.reporting.plots import probe_summary_figure

N, D = 800, 24


def _planted(seed: int = 0, shift: float = 8.0):
    """Labels planted along a known unit direction w: x = noise + (2y - 1) * shift / 2 * w."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(D)
    w /= np.linalg.norm(w)
    y = rng.integers(0, 2, N)
    x = (
        rng.standard_normal((N, D)) + np.outer(2 * y - 1, w) * shift / 2 + 3.0
    )  # offset: centring matters
    groups = np.arange(N) // 2
    is_test = groups % 4 == 0
    return x, y, groups, is_test, w


@pytest.mark.parametrize("kind", ["logistic", "diff_means"])
def test_probe_recovers_a_planted_direction(kind):
    x, y, groups, is_test, w = _planted()
    result, probe = evaluate_probe(kind, x, y, groups, is_test, n_folds=5)
    assert result.test_accuracy > 0.99 and result.cv_accuracy > 0.99
    assert result.test_auroc > 0.99 and result.test_accuracy_lo > 0.9
    assert abs_cosine(probe_direction(probe), w) > 0.97


@pytest.mark.parametrize("kind", ["logistic", "diff_means"])
def test_shuffled_labels_give_chance(kind):
    x, y, groups, is_test, _ = _planted(seed=1)
    results = [
        evaluate_probe(kind, x, y, groups, is_test, n_folds=5, seed=seed, shuffle_labels=True)[0]
        for seed in range(4)
    ]
    for result in results:
        assert abs(result.test_accuracy - 0.5) < 0.12 and abs(result.cv_accuracy - 0.5) < 0.1
        assert abs(result.test_auroc - 0.5) < 0.12
    assert sum(r.test_accuracy_lo < 0.5 < r.test_accuracy_hi for r in results) >= 3
    assert abs(np.mean([r.test_accuracy for r in results]) - 0.5) < 0.06


def test_probes_are_rotation_invariant():
    """Probing d_head coordinates is exact: an isometric embedding in more dimensions changes nothing."""
    x, y, groups, is_test, _ = _planted(seed=2, shift=1.0)
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((3 * D, D)))[
        0
    ]  # [3D, D], orthonormal cols
    for kind in ("logistic", "diff_means"):
        low, probe_low = evaluate_probe(kind, x, y, groups, is_test)
        high, probe_high = evaluate_probe(kind, x @ q.T, y, groups, is_test)
        assert low.test_accuracy == pytest.approx(high.test_accuracy)
        assert low.test_auroc == pytest.approx(high.test_auroc, abs=1e-6)
        assert abs_cosine(q @ probe_direction(probe_low), probe_direction(probe_high)) > 0.9999


def test_cross_validation_keeps_groups_together():
    x, y, groups, _, _ = _planted()
    seen = []

    class Recorder:
        def __init__(self):
            self.probe = PROBES["diff_means"](0)

        def fit(self, xs, ys):
            seen.append({tuple(row) for row in xs})
            self.probe.fit(xs, ys)
            return self

        def predict(self, xs):
            return self.probe.predict(xs)

    cross_validated_accuracy(Recorder, x, y, groups, n_folds=5, seed=0)
    rows = {tuple(row): g for row, g in zip(x, groups)}
    for train_rows in seen:
        train_groups = {rows[row] for row in train_rows}
        held_out = {g for row, g in rows.items() if row not in train_rows}
        assert train_groups.isdisjoint(held_out)


def test_interval_and_auroc_helpers():
    rng = np.random.default_rng(0)
    y, scores = rng.integers(0, 2, 300), rng.standard_normal(300)
    scores[y == 1] += 1.0
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores))
    (acc_lo, acc_hi), (area, low, high) = cluster_bootstrap(
        y, (scores > 0.5).astype(int), scores, np.arange(300)
    )
    assert low < area < high and high - low < 0.2
    assert acc_lo < ((scores > 0.5) == y).mean() < acc_hi


def test_cluster_bootstrap_is_wider_when_items_come_in_correlated_pairs():
    # 200 items = 100 clusters of two with identical outcomes: 100 independent draws, not 200.
    rng = np.random.default_rng(1)
    correct = np.repeat(rng.integers(0, 2, 100), 2)
    y = np.tile([0, 1], 100)
    predictions = np.where(correct == 1, y, 1 - y)
    (lo_items, hi_items), _ = cluster_bootstrap(y, predictions, None, np.arange(200))
    (lo_pairs, hi_pairs), _ = cluster_bootstrap(y, predictions, None, np.arange(200) // 2)
    assert hi_pairs - lo_pairs > 1.25 * (hi_items - lo_items)


@pytest.mark.parametrize(
    "model, layer, head_ids", [("minilm", 2, [0, 5]), ("qwen3_next", 1, [0, 3])]
)
def test_tag_features_match_the_tag_decomposition(request, tiny, model, layer, head_ids):
    """The probe features are tags.decompose_head_outputs restricted to the final-period sink
    (with the output gate on a gated head)."""
    minilm = request.getfixturevalue("minilm") if model == "minilm" else tiny(model)
    statements = load_statements().head(6)
    prompts = [text + PROBE_SUFFIX for text in statements.statement]
    heads = [(layer, head) for head in head_ids]
    features = extract_truth_features(minilm, prompts, heads, batch_size=4, threshold=0.2)
    batch = tokenize(minilm.tokenizer, prompts, minilm.max_length)
    acts = {}
    names = {"pattern": pattern_name, "values": value_name, "z": z_name}
    if minilm.gate != "none":
        names["gate"] = gate_name
    run_hooked(minilm, batch, gather_per_layer([layer], names, lambda _, a: acts.update(a)))
    final = last_punctuation(batch, special_token_strings(minilm.tokenizer))
    assert all(batch.token_strings[b][final[b]] == "." for b in range(len(prompts)))
    sinks = torch.zeros(len(prompts), minilm.n_heads, batch.tokens.shape[1], dtype=torch.bool)
    sinks[torch.arange(len(prompts)), :, final] = True
    values = expand_kv_heads(acts["values"], minilm.n_heads)
    gate = head_gate(acts["gate"], minilm.n_heads) if "gate" in acts else None
    tag, rest = decompose_head_outputs(
        acts["pattern"], values, sinks, output_weights(minilm, layer), gate
    )
    rows = torch.arange(len(prompts))
    for key in heads:
        basis, arrays = features.bases[key], features.arrays[key]
        expected_sink_tag = tag[rows, final, key[1]].numpy()
        np.testing.assert_allclose(basis.to_model(arrays["tag_sink"]), expected_sink_tag, atol=1e-4)
        caught = acts["pattern"][:, key[1]][rows, :, final] > 0.2
        caught &= batch.attention_mask.bool()
        for b in range(len(prompts)):
            at = (
                caught[b]
                if caught[b].any()
                else torch.nn.functional.one_hot(final[b], caught.shape[1]).bool()
            )
            np.testing.assert_allclose(
                basis.to_model(arrays["tag"][b]), tag[b, at, key[1]].mean(0).numpy(), atol=1e-4
            )
            np.testing.assert_allclose(
                basis.to_model(arrays["no_tag"][b]), rest[b, at, key[1]].mean(0).numpy(), atol=1e-4
            )
    assert isinstance(features.bases[heads[0]], HeadBasis)


def test_run_probing_tables_are_tidy_and_honest(minilm):
    statements = load_statements()
    statements = statements[statements.groupby("split").cumcount() < 48]
    tables = run_probing(minilm, statements, ProbingSettings(n_folds=3, max_heads=2), batch_size=32)
    assert set(tables) == {
        "truth_probes",
        "tag_direction",
        "segment_probes",
        "final_sink_frequency",
    }
    assert all((table.model == "minilm").all() for table in tables.values())
    truth = tables["truth_probes"]
    assert (
        set(truth.head_role) == {"sink", "non_sink"}
        and truth.groupby("head_role")[["layer", "head"]].value_counts().le(16).all()
    )
    assert {"tag", "no_tag", "resid", "resid_random", "head_out", "tag_sink"} <= set(truth.feature)
    assert (truth.test_accuracy_lo <= truth.test_accuracy).all() and (
        truth.test_accuracy <= truth.test_accuracy_hi
    ).all()
    assert set(truth.labels) == {"true", "shuffled"} and (truth.n_test == 48).all()
    assert (truth.n_test_clusters == 24).all()  # intervals resample the 24 test cities
    segments = tables["segment_probes"]
    fitted = segments[segments.skipped == ""]
    assert {"position", "position_length"} <= set(fitted.feature)
    tag = fitted[(fitted.feature == "tag") & (fitted.labels == "true")]
    np.testing.assert_allclose(
        tag.accuracy_over_position, tag.test_accuracy - tag.position_baseline_accuracy
    )
    directions = tables["tag_direction"]
    assert (
        len(directions)
        == (truth.head_role == "sink").groupby([truth.layer, truth["head"]]).any().sum()
    )
    assert directions.filter(like="cos_").stack().between(0, 1 + 1e-9).all()
    probe_summary_figure(tables)


def test_bootstrap_auroc_of_a_single_class_is_undefined_not_an_error():
    y = np.ones(6, dtype=int)
    _, area = cluster_bootstrap(y, y, np.arange(6.0), np.arange(6))
    assert all(np.isnan(v) for v in area)


def test_sentiment_set_gets_its_own_tables_and_word_baselines(minilm):
    from sinkmech.data.sentiment import TEMPLATES

    statements = load_statements("sentiment")
    words = pd.concat(
        [part.drop_duplicates("word").head(4) for _, part in statements.groupby(["split", "label"])]
    ).word
    statements = statements[statements.word.isin(words)]
    tables = run_probing(minilm, statements, ProbingSettings(n_folds=2, max_heads=1), batch_size=32)
    assert "truth_probes" not in tables and {"sentiment_probes", "sentiment_baselines"} <= set(
        tables
    )
    baselines = tables["sentiment_baselines"].set_index("feature")
    assert set(baselines.index) == {"word_embedding", "position", "position_template"}
    assert (baselines.n_test_clusters == 8).all() and (baselines.chance == 0.5).all()
    assert baselines.loc["word_embedding", "dim"] == minilm.model.cfg.d_model
    # every word sits in every template: template and period position carry no label
    assert baselines.loc["position_template", "dim"] >= len(TEMPLATES)
    assert (tables["sentiment_probes"].n_test_clusters == 8).all()


def test_a_probe_reaches_its_optimum_and_one_stopped_early_says_so():
    """Newton steps reach the unique optimum of the penalised loss whatever the input precision
    (issue 26): float32 and float64 features give the same predictions; a fit cut at one step
    is reported as not converged."""
    x, y, groups, is_test, _ = _planted(shift=1.0)
    result, probe = evaluate_probe("logistic", x, y, groups, is_test)
    result32, probe32 = evaluate_probe("logistic", x.astype(np.float32), y, groups, is_test)
    assert result.converged and result32.converged
    assert (probe.predict(x) == probe32.predict(x.astype(np.float32))).all()
    np.testing.assert_allclose(probe[-1].coef_, probe32[-1].coef_, rtol=1e-5, atol=1e-7)
    cut = PROBES["logistic"](0)
    cut[-1].set_params(max_iter=1)
    with pytest.warns(Warning):
        cut.fit(x, y)
    assert not converged(cut)
