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
    scores: torch.Tensor, scorable: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Boolean [batch, layer, key]: some head of the layer gives the key a mean attention above
    ``threshold``. ``scores`` is ``sinks.capture_key_scores``'s [batch, layer, head, key];
    ``scorable`` is ``sinks.scorable_keys``'s [batch, key]."""
    return (scores.amax(dim=2) > threshold) & scorable[:, None, :].to(scores.device)


def position_kinds(
    batch: TokenBatch, special_tokens: frozenset[str]
) -> list[list[tuple[str, str]]]:
    """(kind, label) of every real token of every prompt, as the census classifies them."""
    return [
        [classify(token, position, special_tokens) for position, token in enumerate(strings)]
        for strings in batch.token_strings
    ]
