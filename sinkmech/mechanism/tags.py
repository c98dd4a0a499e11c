"""Catch and tag: split each head's output into the sink tags and the rest.

For layer l, head h, query i (Sec. 3 and Fig. 1 of arXiv 2502.00919):

    head_out_i = sum_j A_ij v_j W_O = sum_{s in sinks} A_is (v_s W_O)  +  sum_{j not in sinks} A_ij v_j W_O
                                      `------------ tag ------------'    `------------ rest ------------'

Everything is computed in the head's d_head space (z = A v) and mapped through W_O only where a
d_model vector is needed, so the split is exact: tag + rest = z W_O to float precision.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int

from sinkmech.mechanism.sinks import (
    MIN_QUERIES,
    NULL_MARGIN,
    KeyNull,
    is_sink_score,
    key_null,
    key_scores,
    visibility,
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


def tag_z(
    pattern: Float[torch.Tensor, "batch head query key"],
    values: Float[torch.Tensor, "batch key head d_head"],
    sinks: Bool[torch.Tensor, "batch head key"],
) -> Float[torch.Tensor, "batch query head d_head"]:
    """Tag part of z: sum over sinks s of A_is v_s, [batch, query, head, d_head].

    ``pattern`` [batch, head, query, key]; ``values`` [batch, key, head, d_head] (kv heads already
    expanded); ``sinks`` [batch, head, key] boolean.
    """
    caught = pattern * sinks[:, :, None, :].to(pattern.dtype)
    return torch.einsum("bhqk,bkhd->bqhd", caught, values.to(pattern.dtype))


def decompose_head_outputs(
    pattern: Float[torch.Tensor, "batch head query key"],
    values: Float[torch.Tensor, "batch key head d_head"],
    sinks: Bool[torch.Tensor, "batch head key"],
    w_o: Float[torch.Tensor, "head d_head d_model"],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tag, rest) head outputs in d_model, each [batch, query, head, d_model]; tag + rest = z W_O."""
    z_tag = tag_z(pattern, values, sinks)
    z_rest = tag_z(pattern, values, ~sinks)
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
    """Equal-count random non-sink keys: boolean [batch, head, key].

    For each prompt and head, as many keys as it has sinks, drawn uniformly from the real keys
    that are not sinks and are seen by at least ``min_queries`` queries (fewer if there are not
    enough). Their value directions are the tag's "any key would do" baseline. On device, no sync.
    The numbers are drawn on the generator's device and moved, so a layer placed on another GPU
    (``model.n_devices``) gets the same keys as on one GPU.
    """
    eligible = ~sinks & (attention_mask.bool() & (n_visible >= min_queries))[:, None, :]
    draw = torch.rand(sinks.shape, device=generator.device, generator=generator).to(sinks.device)
    draw = torch.where(eligible, draw, torch.full_like(draw, -1.0))
    order = draw.argsort(dim=-1, descending=True).argsort(dim=-1)  # rank of each key's draw
    return eligible & (order < sinks.sum(-1, keepdim=True))


def uniform_z(
    values: torch.Tensor, attention_mask: torch.Tensor, causal: bool, window: int | None = None
) -> torch.Tensor:
    """The head's z under uniform attention over each query's visible keys, values kept:
    [batch, query, head, d_head] from values [batch, key, head, d_head] (kv heads expanded).

    Causal full attention is a running mean (cumsum), bidirectional a plain mean; only
    sliding-window layers build the [batch, T, T] visibility matrix.
    """
    mask = attention_mask.to(values.dtype)[:, :, None, None]
    masked = values * mask
    if window is not None:
        visible = visibility(attention_mask, causal, window).to(values.dtype)
        visible = visible / visible.sum(-1, keepdim=True).clamp_min(1.0)
        return torch.einsum("bqk,bkhd->bqhd", visible, values)
    if causal:
        return masked.cumsum(1) / mask.cumsum(1).clamp_min(1.0)
    return (masked.sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1.0)).expand_as(
        values
    )
