"""Materialised attention: the reference the tiled implementation and the kernels are tested
against."""

from __future__ import annotations

import torch

from sinkmech.attention.span import AttentionSpan


def eager_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, span: AttentionSpan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pattern [b, h, T, T], output, lse, received attention from real queries), in float32 on
    q's device; q is [b, head, T, d], k and v [b, kv_head, T, d]."""
    batch, heads, length, _ = q.shape
    group = heads // k.shape[1]
    keys = k.float().repeat_interleave(group, 1)
    scores = (q.float() @ keys.transpose(-1, -2)) * scale
    positions = torch.arange(length, device=q.device)
    visible = torch.stack([span.block(b, positions, positions) for b in range(batch)])[:, None]
    scores = scores.masked_fill(~visible, -torch.inf)
    lse = torch.logsumexp(scores, -1)
    pattern = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
    real = span.token_mask if span.token_mask is not None else torch.ones(batch, length)
    received = (pattern * real.float().to(q.device)[:, None, :, None]).sum(-2)
    return pattern, pattern @ v.float().repeat_interleave(group, 1), lse, received
