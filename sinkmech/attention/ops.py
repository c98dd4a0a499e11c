"""The fused algorithm's three operations, dispatched by device: Triton kernels (and PyTorch's
flash kernel where it serves) on CUDA, the pure-torch tiled reference elsewhere."""

from __future__ import annotations

import torch

from sinkmech.attention import tiled
from sinkmech.attention.span import AttentionSpan

# Rows of queries per chunk when reading the attention of individual sink keys.
SINK_ROW_CHUNK = 16384


def _library_attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal: bool
):
    """PyTorch's fused attention kernels that also return the log-sum-exp (half precision, no
    padding, no window): cuDNN's (what SDPA itself runs on Hopper, about twice FlashAttention-2's
    speed there, benchmarks/NOTES.md), else FlashAttention-2's. Grouped-query heads are expanded
    where a kernel does not take them."""
    batch, heads, length, _ = q.shape
    for expand in (False, True):
        if expand and k.shape[1] != heads:
            group = heads // k.shape[1]
            k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        try:
            cudnn = torch.ops.aten._scaled_dot_product_cudnn_attention
            out, lse = cudnn(q, k, v, None, True, 0.0, causal, False, scale=scale)[:2]
            return out, lse.reshape(batch, heads, -1)[..., :length].float()
        except RuntimeError:
            continue
    flash = torch.ops.aten._scaled_dot_product_flash_attention
    out, lse = flash(q, k, v, 0.0, causal, False, scale=scale)[:2]
    return out, lse[..., :length].float()


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, span: AttentionSpan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output [batch, head, T, d] and per-query log-sum-exp [batch, head, T]."""
    if not q.is_cuda:
        return tiled.forward_with_lse(q, k, v, scale, span)
    if (
        span.token_mask is None
        and span.window is None
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] <= 256
    ):
        return _library_attention_with_lse(q, k, v, scale, span.causal)
    from sinkmech.attention import kernels

    return kernels.forward_with_lse(q, k, v, scale, span.causal, span.window, span.token_mask)


def with_learned_sink(
    out: torch.Tensor, lse: torch.Tensor, sink_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a learned per-head sink logit s_h (``s_aux``: GPT-OSS, Granite-SWA) into a softmax
    forward's output [batch, head, T, d] and log-sum-exp [batch, head, T]: the sink is a key with
    zero value, so LSE'_i = log(exp(LSE_i) + exp(s_h)) and the output shrinks by
    exp(LSE_i - LSE'_i) = sigmoid(LSE_i - s_h). Attention read back through LSE' (received
    attention, a sink's column) is then the model's own, whose row sums to 1 - sigmoid(s_h - LSE_i)."""
    total = torch.logaddexp(lse, sink_logits.float()[None, :, None])
    return (out.float() * torch.exp(lse - total)[..., None]).to(out.dtype), total


def received_attention(
    q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float, span: AttentionSpan
) -> torch.Tensor:
    """sum_q A[q, k] over the real queries that see k: [batch, head, T] float32."""
    if not q.is_cuda:
        return tiled.received_attention(q, k, lse, scale, span)
    from sinkmech.attention import kernels

    return kernels.received_attention(q, k, lse, scale, span.causal, span.window, span.token_mask)


def sink_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    span: AttentionSpan,
    prompt: torch.Tensor,
    head: torch.Tensor,
    position: torch.Tensor,
) -> torch.Tensor:
    """A[:, s] for a few (prompt, head, key) triples: [n, T] float32, 0 where the query cannot
    see the key. A[i, s] = exp(q_i . k_s * scale - lse_i), read in chunks of queries."""
    length = q.shape[2]
    group = q.shape[1] // k.shape[1]
    keys = k[prompt, head // group, position].float()  # [n, d]
    rows = torch.empty(len(prompt), length, dtype=torch.float32, device=q.device)
    for start in range(0, length, SINK_ROW_CHUNK):
        stop = min(start + SINK_ROW_CHUNK, length)
        q_rows = q[prompt, head, start:stop].float()  # [n, chunk, d]
        scores = torch.einsum("ncd,nd->nc", q_rows, keys) * scale
        rows[:, start:stop] = torch.exp(scores - lse[prompt, head, start:stop])
    queries = torch.arange(length, device=q.device)
    visible = span.allowed(queries[None, :] - position[:, None])
    if span.token_mask is not None:
        visible &= span.token_mask[prompt].bool()
        visible &= span.token_mask[prompt, position].bool()[:, None]
    return rows * visible
