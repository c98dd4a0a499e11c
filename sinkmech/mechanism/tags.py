"""Catch and tag: split each head's output into the sink tags and the rest.

For layer l, head h, query i (Sec. 3 and Fig. 1 of arXiv 2502.00919):

    head_out_i = sum_j A_ij v_j W_O = sum_{s in sinks} A_is (v_s W_O)  +  sum_{j not in sinks} A_ij v_j W_O
                                      `------------ tag ------------'    `------------ rest ------------'

Everything is computed in the head's d_head space (z = A v) and mapped through W_O only where a
d_model vector is needed, so the split is exact: tag + rest = z W_O to float precision.

Attention forms of issue 27: a learned sink (GPT-OSS, Granite-SWA) is a key with zero value, so
it adds nothing to either part (its mass is missing from A's rows, ``learned_sinks``); a gated
head (Qwen3-Next) writes (g_i * z_i) W_O with g_i = sigmoid(gate_i) per element or per head, so
both parts carry the gate, g_i * sum_s A_is v_s + g_i * sum_rest, and still sum to the output.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int

from sinkmech.attention.backends import tag_z
from sinkmech.mechanism.sinks import (
    MIN_QUERIES,
    NULL_MARGIN,
    KeyNull,
    is_sink_score,
    key_null,
    key_scores,
    visible_ranges,
)


def sink_mask(
    pattern: Float[torch.Tensor, "batch head query key"],
    attention_mask: Int[torch.Tensor, "batch pos"],
    causal: bool,
    threshold: float,
    min_queries: int = MIN_QUERIES,
    positions: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
    null_margin: float = NULL_MARGIN,
    window: int | None = None,
    null: KeyNull | None = None,
) -> Bool[torch.Tensor, "batch head key"]:
    """Which keys are sinks for which head in which prompt: boolean [batch, head, key].

    A key is a sink of head h when its mean received attention (``sinks.key_scores``) exceeds
    ``threshold`` (the paper's eps = 0.2) and ``null_margin`` times the score uniform attention
    would give it, and at least ``min_queries`` real queries see it. ``positions`` ([batch, key]
    bool) restricts candidates, e.g. to the first token or to punctuation. ``scores`` and
    ``null`` reuse values already computed; ``window`` is the layer's sliding window.
    """
    null = null or key_null(attention_mask, causal, window)
    if scores is None:
        scores = key_scores(pattern.float(), attention_mask, causal, window, null)
    sinks = is_sink_score(scores, null, threshold, null_margin, min_queries)
    sinks = sinks & attention_mask.bool()[:, None, :]
    if positions is not None:
        sinks = sinks & positions.bool()[:, None, :]
    return sinks


def decompose_head_outputs(
    pattern: Float[torch.Tensor, "batch head query key"],
    values: Float[torch.Tensor, "batch key head d_head"],
    sinks: Bool[torch.Tensor, "batch head key"],
    w_o: Float[torch.Tensor, "head d_head d_model"],
    gate: Float[torch.Tensor, "batch query head gate"] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tag, rest) head outputs in d_model, each [batch, query, head, d_model]; tag + rest = z W_O
    (z gated where the head is)."""
    z_tag = tag_z(pattern, values, sinks, gate)
    z_rest = tag_z(pattern, values, ~sinks, gate)
    tag = torch.einsum("bqhd,hdm->bqhm", z_tag, w_o.to(z_tag.dtype))
    rest = torch.einsum("bqhd,hdm->bqhm", z_rest, w_o.to(z_rest.dtype))
    return tag, rest


def catch_table(
    pattern: torch.Tensor,
    attention_mask: torch.Tensor,
    sinks: torch.Tensor,
    threshold: float,
    layer: int,
    n_visible: torch.Tensor,
) -> pd.DataFrame:
    """Catch: for each (prompt, head, sink), the queries whose attention to the sink exceeds
    ``threshold`` and the attention mass they give it (Sec. 3, "catch").

    Several sinks per prompt (first token and punctuation) each get their own row, so a prompt's
    segments can be seen caught by different sinks. ``n_visible`` ([batch, key], ``KeyNull``) is
    the number of real queries that can see each key (causal mask, sliding window, padding):
    ``n_queries``. Vectorised over sinks: one device-to-host copy per call.
    """
    prompt, head, position = sinks.nonzero(as_tuple=True)
    attention = pattern[prompt, head, :, position]  # [n, query]
    return catch_rows(
        attention, prompt, head, position, attention_mask, threshold, layer, n_visible
    )


def catch_rows(
    attention: Float[torch.Tensor, "sink query"],
    prompt: Int[torch.Tensor, " sink"],
    head: Int[torch.Tensor, " sink"],
    position: Int[torch.Tensor, " sink"],
    attention_mask: torch.Tensor,
    threshold: float,
    layer: int,
    n_visible: torch.Tensor,
) -> pd.DataFrame:
    """``catch_table`` from each sink's column of attention, A[:, s] per (prompt, head, key):
    what the fused backend reads without a pattern (``LayerAttention.sink_attention``)."""
    valid = attention_mask.bool()[prompt]  # [n, query]
    caught = (attention > threshold) & valid
    n_caught = caught.sum(-1)
    caught_mass = (attention * caught).sum(-1)
    total = (attention * valid).sum(-1)
    rows, columns = caught.nonzero(as_tuple=True)
    positions = torch.split(
        columns.cpu(), torch.bincount(rows, minlength=len(prompt)).cpu().tolist()
    )
    return pd.DataFrame(
        {
            "prompt": prompt.cpu().numpy(),
            "layer": layer,
            "head": head.cpu().numpy(),
            "sink_position": position.cpu().numpy(),
            "n_caught": n_caught.cpu().numpy(),
            "n_queries": n_visible[prompt, position].long().cpu().numpy(),
            "caught_positions": [p.tolist() for p in positions],
            "mean_caught_attention": (caught_mass / n_caught.clamp_min(1)).cpu().numpy(),
            "total_attention": total.cpu().numpy(),
        }
    )


def control_keys(
    sinks: torch.Tensor,
    attention_mask: torch.Tensor,
    n_visible: torch.Tensor,
    min_queries: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Equal-count random non-sink keys: boolean [..., batch, head, key] like ``sinks``.

    For each prompt and head, as many keys as it has sinks, drawn uniformly from the real keys
    that are not sinks and are seen by at least ``min_queries`` queries (fewer if there are not
    enough). Their value directions are the tag's "any key would do" baseline. ``sinks`` with a
    leading axis (``sinks.expand(n, ...)``) gives n independent draws. On device, no sync;
    one sort, the ranks scattered back to the keys. The numbers are drawn on the generator's
    device and moved, so a layer placed on another GPU (``model.n_devices``) gets the same keys as
    on one GPU.
    """
    eligible = ~sinks & (attention_mask.bool() & (n_visible >= min_queries))[:, None, :]
    draw = torch.rand(sinks.shape, device=generator.device, generator=generator).to(sinks.device)
    draw = torch.where(eligible, draw, -1.0)
    order = draw.argsort(dim=-1, descending=True)  # keys by draw, largest first
    rank = torch.arange(sinks.shape[-1], device=sinks.device)
    chosen = torch.zeros_like(eligible).scatter_(-1, order, rank < sinks.sum(-1, keepdim=True))
    return eligible & chosen


def uniform_z(
    values: torch.Tensor,
    attention_mask: torch.Tensor,
    causal: bool,
    window: int | None = None,
    null: KeyNull | None = None,
) -> torch.Tensor:
    """The head's z under uniform attention over each query's visible keys, values kept:
    [batch, query, head, d_head] from values [batch, key, head, d_head] (kv heads expanded or not:
    the output has the input's heads), float32 or wider.

    Bidirectional full attention is a plain mean (an expanded view); otherwise each query's mean
    is a difference of float64 prefix sums over its key range (causal, sliding window, any
    padding), in chunks of tokens: no [batch, T, T] matrix, no full float64 copy. Sums run over
    the last axis of a [batch, head, d, T] buffer (fast on CPU too); the result is a view of it.
    Full causal attention on the GPU sums in float32: each mean is one prefix sum, not a
    difference of two, and the GPU's blocked scan keeps it near float32 rounding (checked
    against float64 at 32768 tokens, ``tests/mechanism/test_moments_gpu.py``).
    ``null`` (``key_null`` of the same mask and window) supplies the visible-key counts.
    """
    dtype = torch.promote_types(values.dtype, torch.float32)
    batch, length, heads, d = values.shape
    prefix = dtype if values.is_cuda and causal and window is None else torch.float64
    real = attention_mask.to(values.device, prefix)
    chunks = token_chunks((batch, length, 2 * heads, d))  # sized for float64 prefix buffers
    if not causal and window is None:
        total = sum(
            torch.einsum("bk,bkhd->bhd", real[:, start:stop], values[:, start:stop].double())
            for start, stop in chunks
        )
        mean = total / real.sum(1).clamp_min(1.0)[:, None, None]
        return mean[:, None].to(dtype).expand(values.shape)
    if null is None or null.n_keys is None:
        null = key_null(attention_mask.to(values.device), causal, window)
    seen = null.n_keys.clamp_min(1.0)[:, None, None, :]  # [batch, 1, 1, query]
    if window is not None:
        key_low, key_high, _, _ = visible_ranges(length, causal, window, values.device)
    out = torch.empty(batch, heads, d, length, dtype=dtype, device=values.device)
    carry = None  # full causal attention: sum of the keys before the chunk
    for start, stop in chunks:
        # keys the chunk's queries see, [first, last), in Python (no host sync)
        first = start if window is None else max(start - window + 1, 0)
        last = stop if causal else min(stop - 1 + window, length)
        part = torch.empty(batch, heads, d, last - first, dtype=prefix, device=out.device)
        torch.mul(
            values[:, first:last].permute(0, 2, 3, 1), real[:, None, None, first:last], out=part
        )
        if window is None:
            if carry is not None:
                part[..., :1] += carry
            total = part.cumsum(-1)  # query q: keys [0, q]
            carry = total[..., -1:]
        else:
            sums = torch.nn.functional.pad(part.cumsum(-1), (1, 0))  # [..., j]: keys < first + j
            total = sums.index_select(-1, key_high[start:stop] - first) - sums.index_select(
                -1, key_low[start:stop] - first
            )
        torch.div(total, seen[..., start:stop], out=out[..., start:stop])
    return out.permute(0, 3, 1, 2)


# Elements of one float32 temporary of the per-layer work (64 MiB): token chunks keep memory
# bounded at long context (T = 131072, 32 heads of 128 take 32 chunks per prompt).
CHUNK_ELEMENTS = 2**24


def token_chunks(shape: torch.Size | tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, stop) token ranges of a [batch, T, head, d] tensor, each at most CHUNK_ELEMENTS."""
    batch, length, heads, d = shape
    step = max(1, CHUNK_ELEMENTS // (batch * heads * d))
    return [(start, min(start + step, length)) for start in range(0, length, step)]
