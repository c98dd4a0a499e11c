"""Pure-torch tiled attention with statistics: the reference implementation of the fused
algorithm, run on CPU and in tests; never holds more than one [block, block] tile of scores.

Two passes, as flash attention's forward and its dK backward pass:

1. forward, per query tile: online softmax over key tiles gives the output and each query's
   log-sum-exp ``lse_i = log sum_j exp(s_ij)`` (s = q k^T * scale, masked);
2. received attention, per key tile: sum over the query tiles that can see it of
   ``exp(s_ij - lse_i)`` (= A_ij) over real queries, the column sums the sink score needs.
"""

from __future__ import annotations

import torch

from sinkmech.attention.span import AttentionSpan

BLOCK = 128


def _group(q: torch.Tensor, k: torch.Tensor) -> int:
    """Query heads per key/value head (grouped-query attention)."""
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads do not divide into {k.shape[1]} kv heads")
    return q.shape[1] // k.shape[1]


def forward_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    span: AttentionSpan,
    block: int = BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output [batch, head, T, d] and log-sum-exp [batch, head, T] (float32).

    q is [batch, head, T, d], k and v [batch, kv_head, T, d]. A query that sees no key (a padded
    one) gets output 0 and lse 0; statistics exclude padded queries anyway.
    """
    batch, heads, length, _ = q.shape
    group = _group(q, k)
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    lse = torch.zeros(batch, heads, length, dtype=torch.float32, device=q.device)
    positions = torch.arange(length, device=q.device)
    for b in range(batch):
        for start in range(0, length, block):
            queries = positions[start : start + block]
            first, stop = span.key_range(start, int(queries[-1]), length)
            qb = q[b, :, queries].float()  # [head, m, d]
            best = torch.full((heads, len(queries)), -torch.inf, device=q.device)
            total = torch.zeros(heads, len(queries), device=q.device)
            acc = torch.zeros(heads, len(queries), q.shape[-1], device=q.device)
            for key_start in range(first - first % block, stop, block):
                keys = positions[max(key_start, first) : min(key_start + block, stop)]
                kb = k[b, :, keys].float().repeat_interleave(group, 0)
                vb = v[b, :, keys].float().repeat_interleave(group, 0)
                scores = (qb @ kb.transpose(-1, -2)) * scale
                scores = scores.masked_fill(~span.block(b, queries, keys), -torch.inf)
                new_best = torch.maximum(best, scores.amax(-1))
                safe = torch.where(torch.isinf(new_best), 0.0, new_best)
                p = torch.exp(scores - safe[..., None])
                rescale = torch.exp(best - safe)
                total = total * rescale + p.sum(-1)
                acc = acc * rescale[..., None] + p @ vb
                best = new_best
            seen = total > 0
            out[b, :, queries] = torch.where(
                seen[..., None], acc / total.clamp_min(1e-30)[..., None], 0.0
            )
            lse[b, :, queries] = torch.where(seen, best + torch.log(total.clamp_min(1e-30)), 0.0)
    return out.to(q.dtype), lse


def received_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    span: AttentionSpan,
    block: int = BLOCK,
) -> torch.Tensor:
    """Attention each key receives from the real queries that see it, sum_q A[q, k]:
    [batch, head, T] float32, from q [batch, head, T, d], k [batch, kv_head, T, d] and the
    forward's ``lse``."""
    batch, heads, length, _ = q.shape
    group = _group(q, k)
    received = torch.zeros(batch, heads, length, dtype=torch.float32, device=q.device)
    positions = torch.arange(length, device=q.device)
    for b in range(batch):
        for start in range(0, length, block):
            keys = positions[start : start + block]
            kb = k[b, :, keys].float().repeat_interleave(group, 0)  # [head, n, d]
            first, stop = span.query_range(start, int(keys[-1]), length)
            for query_start in range(first - first % block, stop, block):
                queries = positions[max(query_start, first) : min(query_start + block, stop)]
                scores = (q[b, :, queries].float() @ kb.transpose(-1, -2)) * scale
                p = torch.exp(scores - lse[b, :, queries, None])
                p = p.masked_fill(~span.block(b, queries, keys), 0.0)
                received[b, :, keys] += p.sum(-2)
    return received
