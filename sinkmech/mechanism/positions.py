"""Per-position views shared by the side-by-side sink measures (issue 19): residual-stream hook
names, which positions the suite's attention census calls sinks, and what kind of token sits there.

The census (``sinks.py``) aggregates by token label; the neighbouring measures (massive
activations, hidden-state similarity, KV eviction) are about positions, so they need the same
criterion per position: a key is an attention sink of layer l when some head of l gives it a mean
attention above the sink threshold, among keys seen by at least ``min_queries`` queries.
"""

from __future__ import annotations

import torch

from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import classify
from sinkmech.mechanism.sinks import NullCache, is_sink_score, layer_windows
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel


def resid_pre_name(layer: int) -> str:
    """Residual stream entering block ``layer`` (what its attention reads), [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_resid_pre"


def resid_post_name(layer: int) -> str:
    """Residual stream leaving block ``layer`` (Sun et al.'s "hidden state" of a layer)."""
    return f"blocks.{layer}.hook_resid_post"


def attn_scores_name(layer: int) -> str:
    """Pre-softmax attention scores, [batch, head, query, key], masked entries at the dtype's min."""
    return f"blocks.{layer}.attn.hook_attn_scores"


def attention_sink_positions(
    loaded: LoadedModel, batch: TokenBatch, scores: torch.Tensor, sinks: SinkThresholds
) -> torch.Tensor:
    """Boolean [batch, layer, key]: some head of the layer makes the key a sink under the run's
    criterion, as the census does per prompt (``sinks.is_sink_score``: above ``sinks.sink`` and
    ``null_margin`` x its uniform-attention null, seen by ``min_queries`` real queries).
    ``scores`` is ``sinks.capture_key_scores``'s [batch, layer, head, key]."""
    mask = batch.attention_mask.to(scores.device)
    nulls, windows = NullCache(mask, loaded.causal), layer_windows(loaded)
    per_layer = [
        is_sink_score(
            scores[:, layer], nulls(window), sinks.sink, sinks.null_margin, sinks.min_queries
        ).any(1)
        for layer, window in enumerate(windows)
    ]
    return torch.stack(per_layer, dim=1) & mask.bool()[:, None, :]


def position_kinds(
    batch: TokenBatch, special_tokens: frozenset[str]
) -> list[list[tuple[str, str]]]:
    """(kind, label) of every real token of every prompt, as the census classifies them."""
    return [
        [classify(token, position, special_tokens) for position, token in enumerate(strings)]
        for strings in batch.token_strings
    ]
