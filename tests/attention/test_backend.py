"""The fused backend inside real model families gives the hook backend's tables: sink scores,
moments for variance explained and catch rows, causal and bidirectional, GQA, sliding windows,
padding (the CPU runs the tiled reference; the GPU kernels are checked in results/fused_exactness)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import transformers

from sinkmech.attention import backend, ops
from sinkmech.attention.backend import fused_attention, fused_pass
from sinkmech.data.prompts import iter_batches, load_prompts
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass
from sinkmech.mechanism.hooks import gather_per_layer, pattern_name, run_hooked, z_name
from sinkmech.mechanism.sinks import SinkThresholds, received_attention
from sinkmech.models import ModelSpec, load_model
from sinkmech.models.families import family_of
from sinkmech.models.loading import describe, offline_tokenizer, validate_spec, wrap_hf
from tests.helpers import FUSED_FAMILIES


def _batches(loaded, n_prompts=3, batch_size=2):
    prompts = load_prompts("prose_long", limit=n_prompts, tokenizer=loaded.tokenizer)
    return list(iter_batches(loaded.tokenizer, prompts, batch_size, 96, True))


def _assert_same_pass(loaded, batches):
    settings = CTRSettings(sinks=SinkThresholds(min_prompt_tokens=1))
    census, moments, catch = _stream_pass(loaded, batches, settings)
    f_census, f_moments, f_catch = _stream_pass(
        replace(loaded, attn_backend="fused"), batches, settings
    )
    table, f_table = census.table(), f_census.table()
    assert len(table) == len(f_table) > 0
    for column in table.select_dtypes("number").columns:
        assert torch.allclose(
            torch.tensor(f_table[column].to_numpy(float)),
            torch.tensor(table[column].to_numpy(float)),
            rtol=1e-5,
            atol=1e-6,
            equal_nan=True,
        ), column
    for layer, f_layer in zip(moments, f_moments):
        for name, value in layer.sums.items():
            scale = value.abs().max().clamp_min(1e-12)
            assert ((f_layer.sums[name] - value).abs().max() / scale) < 1e-5, name
    assert len(catch) == len(f_catch)
    if len(catch):
        assert (catch.n_caught.to_numpy() == f_catch.n_caught.to_numpy()).all()
        assert torch.allclose(
            torch.tensor(f_catch.total_attention.to_numpy()),
            torch.tensor(catch.total_attention.to_numpy()),
            rtol=1e-5,
        )


@pytest.mark.parametrize("family", FUSED_FAMILIES)
def test_fused_stream_pass_equals_hooks(tiny, family):
    loaded = tiny(family)
    _assert_same_pass(loaded, _batches(loaded))


def test_fused_stream_pass_equals_hooks_on_minilm(minilm):
    _assert_same_pass(minilm, _batches(minilm, n_prompts=2))


def test_fused_stream_pass_equals_hooks_on_sliding_window_layers():
    """Gemma-3 with a 6-token window on its local layers, so windows bind at prompt length."""
    family = family_of("gemma3")
    config = family.tiny_config(offline_tokenizer().vocab_size)
    config.sliding_window = 6
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = getattr(transformers, family.architecture)(config)
    spec = ModelSpec("tiny_gemma3_window", "tiny", family="gemma3")
    tokenizer = offline_tokenizer()
    loaded = describe(spec, wrap_hf(model, spec, tokenizer), tokenizer)
    _assert_same_pass(loaded, _batches(loaded))


def test_bridge_hooks_work_after_a_fused_pass(tiny):
    loaded = tiny("llama")
    batch = _batches(loaded, 2)[0]
    before = run_hooked(loaded, batch, [])
    fused_pass(replace(loaded, attn_backend="fused"), batch, lambda layer: None)
    assert torch.equal(run_hooked(loaded, batch, []), before)


def test_fused_attention_refuses_to_run_outside_a_pass():
    q = torch.zeros(1, 1, 4, 8)
    with pytest.raises(RuntimeError, match="fused_pass"):
        fused_attention(torch.nn.Module(), q, q, q, None)


def test_unknown_backend_is_one_line_config_error():
    with pytest.raises(ConfigError, match="attn_backend='flash'"):
        validate_spec(ModelSpec("x", "tiny", family="llama", attn_backend="flash"))


def _with_large_sinks(loaded):
    """``loaded`` with learned sink logits of +2: the sink takes much of every row."""
    with torch.no_grad():
        for block in loaded.model.blocks:
            block.attn.original_component.sinks.fill_(2.0)
    return loaded


def test_fused_backend_honours_the_learned_sink(monkeypatch):
    """With s_aux folded in, fused z and received attention equal the hooked bridge's; the same
    pass with the sink dropped (what a swallowing backend did) is far off."""
    loaded = _with_large_sinks(load_model(ModelSpec("sinks", "tiny", family="gpt_oss")))
    batch = _batches(loaded, 2)[0]
    hooked: dict[int, torch.Tensor] = {}
    names = {"pattern": pattern_name, "z": z_name}
    run_hooked(
        loaded,
        batch,
        gather_per_layer(range(loaded.n_layers), names, lambda l, a: hooked.update({l: a})),
    )
    fused = replace(loaded, attn_backend="fused")

    def fused_z() -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        fused_pass(fused, batch, lambda a: seen.update({a.layer: (a.z.clone(), a.received)}))
        return seen

    real = batch.attention_mask.bool()
    for layer, (z, received) in fused_z().items():
        assert (z - hooked[layer]["z"])[real].abs().max() < 1e-5
        expected = received_attention(hooked[layer]["pattern"], batch.attention_mask)
        assert (received - expected).abs().max() < 1e-5
    monkeypatch.setattr(ops, "with_learned_sink", lambda out, lse, sink_logits: (out, lse))
    dropped = fused_z()
    assert max((dropped[l][0] - hooked[l]["z"])[real].abs().max() for l in hooked) > 0.05


def test_fused_attention_refuses_an_argument_it_does_not_know():
    q = torch.zeros(1, 1, 4, 8)
    backend._consumer.append(lambda layer: None)
    try:
        with pytest.raises(ConfigError, match="attention argument 'block_mask'") as error:
            fused_attention(torch.nn.Module(), q, q, q, None, block_mask=object())
    finally:
        backend._consumer.pop()
    assert "\n" not in str(error.value)


def test_fused_backend_refuses_gated_heads(tiny):
    loaded = replace(tiny("qwen3_next"), attn_backend="fused")
    with pytest.raises(ConfigError, match="per_element output gate"):
        fused_pass(loaded, _batches(loaded, 2)[0], lambda layer: None)
