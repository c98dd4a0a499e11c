"""Next-token loss of a hooked forward pass, shared by the interventions, the massive-activation
edits and the KV-eviction perplexity (one definition, so their numbers are comparable)."""

from __future__ import annotations

import torch
from jaxtyping import Float

from sinkmech.data.prompts import TokenBatch


def next_token_losses(
    logits: Float[torch.Tensor, "batch pos vocab"], batch: TokenBatch
) -> Float[torch.Tensor, "batch target"]:
    """Next-token cross-entropy at every (query, target) pair; 0 where the target is padding."""
    tokens = batch.tokens.to(logits.device)
    mask = batch.attention_mask.to(logits.device)[:, 1:].float()
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none"
    )
    return losses.view(mask.shape) * mask


def prompt_losses(
    logits: Float[torch.Tensor, "batch pos vocab"], batch: TokenBatch
) -> torch.Tensor:
    """Mean next-token cross-entropy per prompt over its real targets, [batch]."""
    mask = batch.attention_mask.to(logits.device)[:, 1:].float()
    return next_token_losses(logits, batch).sum(1) / mask.sum(1).clamp_min(1.0)
