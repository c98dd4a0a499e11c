"""Catch, tag, release: exact decompositions, variance on hand-built heads, exact interventions."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from sinkmech.attention.backends import tag_z
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
from sinkmech.data.prompts import iter_batches, load_prompts, tokenize
from sinkmech.mechanism.ctr import CTRSettings, analyse_ctr
from sinkmech.mechanism.interventions import TagEditSpec, capture_tags, measure_edit, tag_edit_hooks
from sinkmech.mechanism.release import read_strength
from sinkmech.mechanism.sinks import detect_sinks
from sinkmech.mechanism.tags import catch_table, decompose_head_outputs, sink_mask
from sinkmech.mechanism.variance import HeadMoments, tag_directions, variance_explained
from tests.helpers import ALL_FAMILIES

PROMPTS = [
    "The bridge was built in 1932. It carried trains, then cars.",
    "Bees visit flowers. They carry pollen.",
]


def _layer_acts(loaded, batch, layer):
    acts = {}
    names = {"pattern": pattern_name, "values": value_name, "z": z_name}
    if loaded.gate != "none":
        names["gate"] = gate_name
    run_hooked(loaded, batch, gather_per_layer([layer], names, lambda l, a: acts.update(a)))
    return acts


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_tag_plus_rest_reconstructs_head_output(tiny, family):
    loaded = tiny(family)
    batch = tokenize(loaded.tokenizer, PROMPTS, loaded.max_length, loaded.causal)
    for layer in range(loaded.n_layers):
        acts = _layer_acts(loaded, batch, layer)
        values = expand_kv_heads(acts["values"], loaded.n_heads)  # GQA: kv heads expanded
        # Random tiny heads have no real sinks: margin 0.5 keeps any key above 0.05 for this
        # check (a learned sink takes a share of every row, so tokens may not reach their null).
        sinks = sink_mask(
            acts["pattern"], batch.attention_mask, loaded.causal, threshold=0.05, null_margin=0.5
        )
        assert sinks.any()
        w_o = output_weights(loaded, layer)
        gate = head_gate(acts["gate"], loaded.n_heads) if "gate" in acts else None
        tag, rest = decompose_head_outputs(acts["pattern"], values, sinks, w_o, gate)
        head_out = torch.einsum("bqhd,hdm->bqhm", acts["z"], w_o)
        assert torch.allclose(tag + rest, head_out, atol=1e-5)
        # The hooked z is A v (gated where the head is): the decomposition is of the model's own
        # computation.
        assert torch.allclose(
            tag_z(acts["pattern"], values, torch.ones_like(sinks), gate), acts["z"], atol=1e-5
        )


@pytest.mark.parametrize("family", ["llama", "qwen3", "bert", "gpt_oss", "qwen3_next"])
def test_tag_removal_changes_head_output_by_exactly_the_tag(tiny, family):
    loaded = tiny(family)
    batch = tokenize(loaded.tokenizer, PROMPTS, loaded.max_length, loaded.causal)
    layer, heads = loaded.n_layers - 1, [1, 2]
    spec = TagEditSpec(layer, heads, "remove", threshold=0.05, min_queries=3, null_margin=0.5)
    z_tag = capture_tags(loaded, batch, spec)
    assert z_tag.abs().sum() > 0
    clean = _layer_acts(loaded, batch, layer)["z"]
    edited = {}
    hooks = tag_edit_hooks(loaded, spec, z_tag) + [
        (z_name(layer), lambda z, hook: edited.update(z=z.clone()))
    ]
    run_hooked(loaded, batch, hooks)
    w_o = output_weights(loaded, layer)
    change = torch.einsum("bqhd,hdm->bqhm", clean - edited["z"], w_o)
    tag = torch.einsum("bqhd,hdm->bqhm", z_tag, w_o[heads])
    assert torch.allclose(change[:, :, heads], tag, atol=1e-5)
    untouched = [h for h in range(loaded.n_heads) if h not in heads]
    assert torch.equal(clean[:, :, untouched], edited["z"][:, :, untouched])


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_self_patch_is_a_no_op_and_random_control_has_equal_norm(tiny, family):
    loaded = tiny(family)
    batch = tokenize(loaded.tokenizer, PROMPTS, loaded.max_length, loaded.causal)
    spec = TagEditSpec(0, [0, 3], "patch", threshold=0.05, min_queries=3, null_margin=1.0)
    z_tag = capture_tags(loaded, batch, spec)
    clean = run_hooked(loaded, batch, [])
    patched = run_hooked(loaded, batch, tag_edit_hooks(loaded, spec, z_tag, source_tags=z_tag))
    assert torch.allclose(clean, patched, atol=1e-5)
    effect = measure_edit(loaded, batch, spec, z_tag, source_tags=z_tag)
    assert effect.kl.abs().max() < 1e-6 and effect.final_resid_change.abs().max() < 1e-5
    removed = measure_edit(loaded, batch, replace(spec, mode="remove"), z_tag)
    assert (removed.final_resid_change > 1e-4).all()
    # Equal-norm control: the random edit moves each head output by the tag's norm.
    random = TagEditSpec(0, [0, 3], "random", threshold=0.05, min_queries=3, null_margin=1.0)
    edited = {}
    hooks = tag_edit_hooks(loaded, random, z_tag) + [
        (z_name(0), lambda z, hook: edited.update(z=z.clone()))
    ]
    run_hooked(loaded, batch, hooks)
    w_o = output_weights(loaded, 0)[[0, 3]]
    clean_z = _layer_acts(loaded, batch, 0)["z"][:, :, [0, 3]]
    moved = torch.einsum("bqhd,hdm->bqhm", clean_z - edited["z"][:, :, [0, 3]], w_o).norm(dim=-1)
    tag_norm = torch.einsum("bqhd,hdm->bqhm", z_tag, w_o).norm(dim=-1)
    assert torch.allclose(moved, tag_norm, atol=1e-5)


def _moments_for(pattern, values, sinks):
    moments = HeadMoments(pattern.shape[1], values.shape[-1])
    moments.update(
        torch.einsum("bhqk,bkhd->bqhd", pattern, values),
        values,
        sinks,
        torch.ones(pattern.shape[0], pattern.shape[2]),
    )
    return moments


def test_variance_explained_is_one_for_a_head_that_only_reads_the_sink():
    torch.manual_seed(0)
    batch, t, d, m = 64, 12, 8, 32
    values = torch.randn(batch, t, 1, d) * 1e-3
    values[:, 0, 0] = torch.randn(d)  # the sink's value, a fixed vector
    values[:, 0, 0] = values[0, 0, 0]
    to_sink = torch.rand(batch, 1, t, 1) * 0.7 + 0.3
    pattern = torch.cat([to_sink, (1 - to_sink).expand(-1, -1, -1, t - 1) / (t - 1)], dim=-1)
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    w_o = torch.randn(1, d, m)
    table = variance_explained(_moments_for(pattern, values, sinks), w_o, ranks=(1, 2))
    row, second = table.iloc[0], table.iloc[1]
    assert row.tag_variance_explained > 0.99
    # One sink value vector: the rank-1 tag span is sharply defined and there is no rank-2 tag.
    assert row.tag_eigengap > 0.99 and second.tag_eigengap < 1e-6
    assert pd.isna(second.tag_variance_explained) and second.pca_variance_explained > 0
    assert row.pca_variance_explained >= row.tag_variance_explained - 1e-9
    assert row.random_variance_explained < 0.5


def test_variance_explained_is_near_random_for_uniform_attention_over_random_values():
    torch.manual_seed(1)
    batch, t, d, m = 512, 10, 8, 32
    values = torch.randn(batch, t, 1, d)
    pattern = torch.full((batch, 1, t, t), 1.0 / t)
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True  # call token 0 a sink although nothing singles it out
    w_o = torch.linalg.qr(torch.randn(m, d))[0].T[None]  # isotropic head output map
    row = variance_explained(_moments_for(pattern, values, sinks), w_o, ranks=(1,)).iloc[0]
    assert abs(row.tag_variance_explained - row.random_variance_explained) < 0.08
    assert row.pca_variance_explained > row.tag_variance_explained


def test_variance_explained_does_not_depend_on_the_svd_backends_sign_choice(monkeypatch):
    """SVD backends (LAPACK on CPU, cuSOLVER on GPU) may return singular vectors with other signs.
    Simulate one that flips some of them: every column, the seeded random baseline included,
    must stay the same (it moved by up to 0.04 between an H100 and a CPU run before)."""
    torch.manual_seed(3)
    batch, t, d, m = 32, 8, 6, 20
    values = torch.randn(batch, t, 2, d)
    pattern = torch.softmax(torch.randn(batch, 2, t, t), dim=-1)
    sinks = torch.zeros(batch, 2, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    moments = _moments_for(pattern, values, sinks)
    w_o = torch.randn(2, d, m)
    reference = variance_explained(moments, w_o)
    svd = torch.linalg.svd

    def flipped_svd(a, full_matrices=True):
        u, s, vh = svd(a, full_matrices=full_matrices)
        signs = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, 1.0], dtype=u.dtype)
        return u * signs, s, vh * signs[:, None]  # the same matrix, other singular-vector signs

    monkeypatch.setattr(torch.linalg, "svd", flipped_svd)
    pd.testing.assert_frame_equal(variance_explained(moments, w_o), reference)


def test_tag_direction_is_the_sink_value_mapped_by_w_o():
    torch.manual_seed(2)
    batch, t, d, m = 16, 6, 4, 10
    values = torch.randn(batch, t, 1, d)
    values[:, 0, 0] = values[0, 0, 0]
    pattern = torch.softmax(torch.randn(batch, 1, t, t), -1)
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    w_o = torch.randn(1, d, m)
    direction = tag_directions(_moments_for(pattern, values, sinks), w_o)[0, 0]
    expected = values[0, 0, 0] @ w_o[0]
    cosine = torch.nn.functional.cosine_similarity(direction.float(), expected, dim=0)
    assert abs(cosine) > 0.999


def test_catch_table_lists_caught_queries():
    pattern = torch.tensor(
        [[[[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.1, 0.8, 0], [0.5, 0.1, 0.1, 0.3]]]]
    )
    sinks = torch.tensor([[[True, False, False, False]]])
    visible = torch.tensor([[4, 3, 2, 1]])
    table = catch_table(pattern, torch.ones(1, 4), sinks, threshold=0.2, layer=3, n_visible=visible)
    row = table.iloc[0]
    assert row.n_queries == 4
    assert row.caught_positions == [0, 1, 3] and row.n_caught == 3 and row.layer == 3
    assert row.mean_caught_attention == pytest.approx((1.0 + 0.9 + 0.5) / 3)


def test_read_strength_against_random_baseline():
    w = torch.zeros(1, 8, 2)
    w[0, 0, 0] = w[0, 1, 1] = 1.0  # reads only the first two residual directions
    inside = torch.zeros(8)
    inside[0] = 1.0
    outside = torch.zeros(8)
    outside[5] = 1.0
    assert read_strength(inside, w)[0] == pytest.approx(4.0)  # 1 / (2 / 8)
    assert read_strength(outside, w)[0] == 0.0


def test_analyse_ctr_end_to_end_streams_tables(minilm):
    batches = list(iter_batches(minilm.tokenizer, load_prompts(limit=8), 4, 512, False))
    tables = analyse_ctr(
        minilm, batches, CTRSettings(top_heads=2, intervention_batches=1, n_random=4)
    )
    variance = tables["variance"]
    assert len(variance) == minilm.n_layers * minilm.n_heads * 2
    rank1 = variance[variance["rank"] == 1].dropna(subset=["tag_variance_explained"])
    # Real [CLS] sink heads: tags explain more than equal-rank random directions on average.
    assert rank1.tag_variance_explained.mean() > rank1.random_variance_explained.mean()
    interventions = tables["interventions"]
    assert set(interventions.intervention) == {
        "remove",
        "random_control",
        "patch_other_prompt",
        "patch_self",
    }
    assert (
        interventions[interventions.intervention == "patch_self"].final_resid_change.abs().max()
        < 1e-5
    )
    assert interventions.kl.isna().all()  # MiniLM's masked-LM head is untrained: no KL is reported
    assert (tables["catch"].sink_token == "[CLS]").any()
    release = tables["release"]
    assert release.later_layer.gt(release.layer).all()
    # Every tag read has its nulls: the same later head reading the other directions written.
    counts = release.groupby("direction").size()
    assert set(counts.index) == {"tag", "nonsink_value", "output_pc"} and counts.nunique() == 1
    # The census fed inside the one-pass analysis equals the stand-alone sink detection.
    alone, _ = detect_sinks(minilm, batches)
    pd.testing.assert_frame_equal(tables["sinks"], alone)


@pytest.mark.parametrize("family", ["gpt_oss", "granite_swa", "qwen3_next"])
def test_analyse_ctr_runs_on_learned_sink_and_gated_families(tiny, family):
    """Census, variance, release and interventions run on the issue-27 families and add the
    attention-form tables; the form columns say which quantities are defined."""
    loaded = tiny(family)
    prompts = load_prompts("prose_long", limit=4, tokenizer=loaded.tokenizer)
    batches = list(iter_batches(loaded.tokenizer, prompts, 2, 96, True))
    settings = CTRSettings(
        # random tiny heads: a low threshold gives per-prompt sinks, so tags and edits exist
        sinks=replace(CTRSettings().sinks, sink=0.01, null_margin=1.0, min_prompt_tokens=1),
        top_heads=1,
        n_random=2,
    )
    tables = analyse_ctr(loaded, batches, settings)
    assert len(tables["variance"]) == loaded.n_layers * loaded.n_heads * 2
    assert not tables["interventions"].empty and not tables["release"].empty
    form = tables["attention_form"]
    assert len(form) == loaded.n_layers * loaded.n_heads
    assert len(tables["value_norms"]) == loaded.n_layers * loaded.n_heads
    has_sink = loaded.learned_sink != "none"
    assert form.learned_sink_mass.notna().all() == has_sink
    assert form.learned_sink_mass.isna().all() == (not has_sink)
    assert form.mean_gate.notna().all() == (loaded.gate != "none")
    assert (tables["sinks"].sink_kind == "learned").any() == has_sink


def test_models_without_a_new_form_get_no_new_tables(tiny):
    loaded = tiny("llama")
    prompts = load_prompts("prose_long", limit=2, tokenizer=loaded.tokenizer)
    batches = list(iter_batches(loaded.tokenizer, prompts, 2, 96, True))
    settings = CTRSettings(sinks=replace(CTRSettings().sinks, min_prompt_tokens=1), top_heads=0)
    tables = analyse_ctr(loaded, batches, settings)
    assert "attention_form" not in tables and "value_norms" not in tables
