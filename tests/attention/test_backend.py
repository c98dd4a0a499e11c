"""The fused backend inside real model families gives the hook backend's tables: sink scores,
moments for variance explained and catch rows, causal and bidirectional, GQA, sliding windows,
padding (the CPU runs the tiled reference; the GPU kernels are checked in results/fused_exactness)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import transformers

from sinkmech.attention.backend import fused_attention, fused_pass
from sinkmech.data.prompts import iter_batches, load_prompts
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass
from sinkmech.mechanism.hooks import run_hooked
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models import ModelSpec
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
