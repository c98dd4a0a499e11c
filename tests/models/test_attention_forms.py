"""Attention forms of issue 27 checked against Hugging Face's own eager attention on tiny models:
the learned sink's two forms (GPT-OSS's virtual key, Granite-SWA's output scale) are the same
function with mass sigmoid(s_h - LSE_i), the bridge reports them in the virtual-key form, and the
tag decomposition (with the output gate of Qwen3-Next / Qwen3.5) sums to the head output."""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from sinkmech.attention.hooks import (
    expand_kv_heads,
    gate_name,
    gather_per_layer,
    head_gate,
    output_weights,
    pattern_name,
    run_hooked,
    value_name,
)
from sinkmech.data.prompts import tokenize
from sinkmech.errors import ConfigError
from sinkmech.mechanism.tags import decompose_head_outputs
from sinkmech.models import ModelSpec
from sinkmech.models.families import FAMILIES, family_of_model_type
from sinkmech.models.loading import _build_tiny, describe, offline_tokenizer, wrap_hf

PROMPTS = ["The cat sat on the mat. It was warm, and the sun was out.", "Rain fell, and boats."]
NEW_FAMILIES = ["gpt_oss", "granite_swa", "qwen3_next", "qwen3_5"]
RECORD = "sinkmech_test_record"
_calls: list[dict[str, torch.Tensor]] = []


def _record_eager(module, query, key, value, attention_mask, scaling, **kwargs):
    """HF's own eager attention of the module's file, with its inputs and outputs kept."""
    eager = sys.modules[type(module).__module__].eager_attention_forward
    out, weights = eager(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    group = query.shape[1] // key.shape[1]
    scores = query @ key.repeat_interleave(group, 1).transpose(-1, -2) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    _calls.append(
        {
            "lse": torch.logsumexp(scores, -1),
            "sink": kwargs.get("s_aux"),
            "weights": weights,
            "plain_mix": torch.softmax(scores, -1) @ value.repeat_interleave(group, 1),
            "out": out,  # [batch, T, head, d]
        }
    )
    return out, weights


AttentionInterface.register(RECORD, _record_eager)
AttentionMaskInterface.register(RECORD, eager_mask)  # the additive [T, T] mask eager takes


def _model(family: str) -> torch.nn.Module:
    """A tiny model of ``family`` with learned sinks drawn far from 0 (HF initialises them
    near 0), so the sink's mass varies over heads and queries."""
    model = _build_tiny(ModelSpec(f"tiny_{family}", "tiny", family=family), torch.float32).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("sinks"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) + 1.0)
    return model


def _batch(tokenizer):
    return tokenize(tokenizer, PROMPTS, 64, prepend_bos=True)


def _eager_calls(model: torch.nn.Module, batch) -> list[dict[str, torch.Tensor]]:
    _calls.clear()
    model.config._attn_implementation = RECORD
    try:
        with torch.no_grad():
            model(batch.tokens, attention_mask=batch.attention_mask)
    finally:
        model.config._attn_implementation = "eager"
    return list(_calls)


def test_gpt_oss_rows_miss_exactly_the_learned_sink_mass():
    tokenizer = offline_tokenizer()
    batch = _batch(tokenizer)
    real = batch.attention_mask.bool()[:, None, :]
    for call in _eager_calls(_model("gpt_oss"), batch):
        mass = torch.sigmoid(call["sink"][None, :, None] - call["lse"])
        missing = 1 - call["weights"].sum(-1)
        assert (missing - mass)[real.expand_as(mass)].abs().max() < 1e-6
        assert mass[real.expand_as(mass)].min() > 0.01  # the sink takes real mass here


def test_granite_swa_output_is_the_plain_mix_scaled_by_the_sink():
    tokenizer = offline_tokenizer()
    batch = _batch(tokenizer)
    real = batch.attention_mask.bool()[:, None, :]
    for call in _eager_calls(_model("granite_swa"), batch):
        rows = real.expand_as(call["lse"])
        assert (call["weights"].sum(-1) - 1)[rows].abs().max() < 1e-6
        scale = torch.sigmoid(call["lse"] - call["sink"][None, :, None])
        expected = (call["plain_mix"] * scale[..., None]).transpose(1, 2)
        assert (call["out"] - expected)[real[:, 0]].abs().max() < 1e-6


def _bridge(family: str, model: torch.nn.Module):
    spec = ModelSpec(f"tiny_{family}", "tiny", family=family)
    tokenizer = offline_tokenizer()
    reference = _build_tiny(spec, torch.float32).eval()
    reference.load_state_dict(model.state_dict())
    return describe(spec, wrap_hf(model, spec, tokenizer), tokenizer), reference


def _hooked(loaded, batch) -> dict[int, dict[str, torch.Tensor]]:
    captured: dict[int, dict[str, torch.Tensor]] = {}
    names = {"pattern": pattern_name, "values": value_name}
    if loaded.gate != "none":
        names["gate"] = gate_name
    hooks = gather_per_layer(range(loaded.n_layers), names, lambda l, a: captured.update({l: a}))
    run_hooked(loaded, batch, hooks)
    return captured


@pytest.mark.parametrize("family", ["gpt_oss", "granite_swa"])
def test_bridge_pattern_is_the_virtual_key_form(family):
    """The bridge's pattern is A_ij (1 - m_i) for both forms: Hugging Face's own rows for GPT-OSS,
    Granite-SWA's (which sum to 1) times its output scale sigmoid(LSE_i - s_h)."""
    loaded, reference = _bridge(family, _model(family))
    batch = _batch(loaded.tokenizer)
    hooked = _hooked(loaded, batch)
    real = batch.attention_mask.bool()[:, None, :, None]
    for layer, call in enumerate(_eager_calls(reference, batch)):
        scale = torch.sigmoid(call["lse"] - call["sink"][None, :, None])
        expected = call["weights"] * (scale[..., None] if family == "granite_swa" else 1.0)
        assert ((hooked[layer]["pattern"] - expected) * real).abs().max() < 1e-6


@pytest.mark.parametrize("family", [*NEW_FAMILIES, "llama"])
def test_tag_plus_rest_is_the_eager_head_output(family):
    """tag + rest (random sink masks; the gate on both parts) equals the input of Hugging Face's
    o_proj per head (the head output before W_O) to float precision."""
    loaded, reference = _bridge(family, _model(family))
    batch = _batch(loaded.tokenizer)
    hooked = _hooked(loaded, batch)
    head_inputs: dict[int, torch.Tensor] = {}
    layers = reference.model.layers
    handles = [
        layer.self_attn.o_proj.register_forward_pre_hook(
            lambda module, args, i=i: head_inputs.__setitem__(i, args[0])
        )
        for i, layer in enumerate(layers)
    ]
    with torch.no_grad():
        reference(batch.tokens, attention_mask=batch.attention_mask)
    for handle in handles:
        handle.remove()
    real = batch.attention_mask.bool()
    generator = torch.Generator().manual_seed(0)
    for layer, acts in hooked.items():
        values = expand_kv_heads(acts["values"], loaded.n_heads)
        sinks = torch.rand(acts["pattern"][:, :, 0].shape, generator=generator) < 0.3
        gate = head_gate(acts["gate"], loaded.n_heads) if "gate" in acts else None
        w_o = output_weights(loaded, layer)
        tag, rest = decompose_head_outputs(acts["pattern"], values, sinks, w_o, gate)
        z = head_inputs[layer].view(*values.shape[:2], loaded.n_heads, -1)
        expected = torch.einsum("bqhd,hdm->bqhm", z, w_o)
        error = ((tag + rest - expected)[real].abs().max() / expected[real].abs().max()).item()
        assert error < 1e-5, (layer, error)
        assert tag[real].abs().max() > 0


def test_family_table_names_the_attention_forms():
    assert FAMILIES["gpt_oss"].learned_sink == "virtual_key"
    assert FAMILIES["granite_swa"].learned_sink == "output_scale"
    assert {FAMILIES[f].gate for f in ("qwen3_next", "qwen3_5")} == {"per_element"}
    assert {(f.learned_sink, f.gate) for n, f in FAMILIES.items() if n not in NEW_FAMILIES} == {
        ("none", "none")
    }


def test_unknown_model_type_is_one_line_error():
    with pytest.raises(ConfigError, match="model type 'deepseek_v4' is not supported") as error:
        family_of_model_type("deepseek_v4")
    assert "\n" not in str(error.value)


def test_hybrid_layers_are_refused_in_one_line():
    """Qwen3.5's released layout interleaves linear attention: no softmax pattern to measure."""
    family = FAMILIES["qwen3_5"]
    config = family.tiny_config(offline_tokenizer().vocab_size)
    config.layer_types = ["linear_attention", "full_attention"]
    config._attn_implementation = "eager"
    model = getattr(__import__("transformers"), family.architecture)(config)
    spec = ModelSpec("hybrid", "tiny", family="qwen3_5")
    tokenizer = offline_tokenizer()
    with pytest.raises(ConfigError, match="linear_attention") as error:
        describe(spec, wrap_hf(model, spec, tokenizer), tokenizer)
    assert "\n" not in str(error.value)
