"""A learned sink logit folded into the fused algorithm (``ops.with_learned_sink``) equals eager
attention with the sink as an extra key of zero value (GPT-OSS's eager form): output,
log-sum-exp and received attention, on the tiled reference (CPU) and the GPU kernels.

GPU part: ``python -m pytest tests/attention/test_learned_sink.py`` on a CUDA machine.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sinkmech.attention import ops
from sinkmech.attention.backends import FusedBackend, HookBackend
from sinkmech.attention.span import AttentionSpan
from sinkmech.mechanism.learned_sinks import learned_sink_census
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models import ModelSpec, load_model
from tests.attention.test_backend import _assert_same_pass, _batches, _with_large_sinks

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU only: CUDA kernels")
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]


def _eager_with_sink(q, k, v, sinks, scale, span):
    """(output, lse with the sink, received attention) with the sink as a zero-value key."""
    batch, heads, length, _ = q.shape
    group = heads // k.shape[1]
    scores = (q.float() @ k.float().repeat_interleave(group, 1).transpose(-1, -2)) * scale
    positions = torch.arange(length, device=q.device)
    visible = torch.stack([span.block(b, positions, positions) for b in range(batch)])[:, None]
    scores = scores.masked_fill(~visible, -torch.inf)
    sink_column = sinks.float()[None, :, None, None].expand(batch, -1, length, 1)
    combined = torch.cat([scores, sink_column], -1)
    lse = torch.logsumexp(combined, -1)
    pattern = torch.exp(scores - lse[..., None])  # the sink's column dropped: rows sum to 1 - m
    out = pattern @ v.float().repeat_interleave(group, 1)
    real = span.token_mask if span.token_mask is not None else torch.ones(batch, length)
    received = (pattern * real.float().to(q.device)[:, None, :, None]).sum(-2)
    return out, lse, received


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window", [None, 40])
@pytest.mark.parametrize("padding", [False, True])
def test_folded_sink_equals_eager_sink_key(device, window, padding):
    torch.manual_seed(0)
    batch, heads, kv_heads, dim, length = 2, 4, 2, 32, 300
    q, k, v = (
        torch.randn(batch, h, length, dim, device=device) for h in (heads, kv_heads, kv_heads)
    )
    sinks = torch.tensor([-1.0, 0.0, 2.0, 5.0], device=device)
    mask = None
    if padding:
        mask = torch.ones(batch, length, dtype=torch.bool, device=device)
        mask[1, length // 2 :] = False
    span = AttentionSpan(True, window, mask)
    out, lse, received = _eager_with_sink(q, k, v, sinks, dim**-0.5, span)
    got_out, got_lse = ops.with_learned_sink(
        *ops.attention_with_lse(q, k, v, dim**-0.5, span), sinks
    )
    got_received = ops.received_attention(q, k, got_lse, dim**-0.5, span)
    real = (mask if mask is not None else torch.ones(batch, length, device=device)).bool()
    rows = real[:, None, :].expand(-1, heads, -1)
    assert (got_out.float()[rows] - out[rows]).abs().max() < 1e-5
    assert (got_lse[rows] - lse[rows]).abs().max() < 1e-5
    assert (got_received - received).abs().max() < 1e-4


@GPU
@pytest.mark.parametrize("family", ["gpt_oss", "granite_swa"])
def test_fused_equals_hooks_with_learned_sinks_on_gpu(family):
    loaded = _with_large_sinks(load_model(ModelSpec(family, "tiny", family=family, device="cuda")))
    _assert_same_pass(replace(loaded, backend=HookBackend()), _batches(loaded))


@GPU
@pytest.mark.parametrize("family", ["gpt_oss", "granite_swa"])
def test_fused_learned_sink_census_equals_hooks_on_gpu(family):
    loaded = _with_large_sinks(load_model(ModelSpec(family, "tiny", family=family, device="cuda")))
    thresholds = SinkThresholds(min_prompt_tokens=1)
    batches = _batches(loaded)
    hooked = learned_sink_census(loaded, batches, thresholds)
    fused = learned_sink_census(replace(loaded, backend=FusedBackend()), batches, thresholds)
    assert (fused.mean_score - hooked.mean_score).abs().max() < 1e-5
