"""The fused algorithm's pure-torch reference equals eager attention: outputs, log-sum-exp,
received attention and single sink columns, for every mask the suite meets."""

from __future__ import annotations

import pytest
import torch

from sinkmech.attention import ops, tiled
from sinkmech.attention.span import AttentionSpan
from tests.attention.reference import eager_attention


def _span(causal: bool, window: int | None, padding: str | None, batch: int, length: int):
    mask = None
    if padding is not None:
        mask = torch.ones(batch, length, dtype=torch.bool)
        if padding == "right":
            mask[1, length - 9 :] = False
        else:
            mask[1, :7] = False
    return AttentionSpan(causal, window, mask)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("padding", [None, "right", "left"])
def test_tiled_attention_equals_eager(causal, window, padding):
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 2, 4, 2, 37, 8
    q, k, v = (torch.randn(batch, h, length, dim) for h in (heads, kv_heads, kv_heads))
    k[:, :, 0] *= 4  # a first-token sink
    span = _span(causal, window, padding, batch, length)
    pattern, out, lse, received = eager_attention(q, k, v, 0.3, span)
    got_out, got_lse = tiled.forward_with_lse(q, k, v, 0.3, span, block=8)
    got_received = tiled.received_attention(q, k, got_lse, 0.3, span, block=8)
    real = (span.token_mask if span.token_mask is not None else torch.ones(batch, length)).bool()
    rows = real[:, None, :].expand(-1, heads, -1)
    assert torch.allclose(got_out[rows], out[rows], atol=1e-5)
    assert torch.allclose(got_lse[rows], lse[rows], atol=1e-5)
    assert torch.allclose(got_received, received, atol=1e-5)
    prompt, head, position = (
        torch.tensor([0, 1, 1]),
        torch.tensor([0, 3, 2]),
        torch.tensor([0, 9, 20]),
    )
    columns = ops.sink_attention(q, k, got_lse, 0.3, span, prompt, head, position)
    expected = pattern[prompt, head, :, position] * real[prompt]
    assert torch.allclose(columns, expected, atol=1e-6)


def test_padded_queries_get_finite_outputs():
    """A left-padded query sees no real key: output 0 and lse 0, never NaN (NaN would leak into
    later layers through the padded positions' values)."""
    span = _span(True, None, "left", 2, 20)
    q, k, v = torch.randn(2, 2, 20, 8), torch.randn(2, 2, 20, 8), torch.randn(2, 2, 20, 8)
    out, lse = tiled.forward_with_lse(q, k, v, 0.35, span, block=8)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    assert (out[1, :, :7] == 0).all()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [None, 3])
def test_visible_keys_counts_the_visibility_rows(causal, window):
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    span = AttentionSpan(causal, window, mask)
    positions = torch.arange(9)
    dense = torch.stack([span.block(b, positions, positions) for b in range(2)]).sum(-1)
    real = mask.float()
    assert torch.equal(span.visible_keys(9) * real, dense.float() * real)
