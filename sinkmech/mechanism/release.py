"""Release and retrieval, weight-side: how strongly later heads' queries and keys read a tag
direction (Sec. 4 of arXiv 2502.00919: tokens are later retrieved by the tags they carry).

For a unit tag direction u and a later head with key weights W_K [d_model, d_head], the read
strength is ||u W_K||^2 relative to a random unit direction, whose expectation is
||W_K||_F^2 / d_model: a ratio above 1 means the head's keys (or queries) read the tag more than
an average direction. Normalisation gains before attention are not folded in (they differ per
architecture: pre-norm, post-norm, Gemma's 1 + w), so the ratio is of the raw projections.
The activation-side test of release is the ablation in ``interventions``.
"""

from __future__ import annotations

import pandas as pd
import torch

from sinkmech.models import LoadedModel


def read_strength(direction: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per head ratio ||u W||^2 / (||W||_F^2 / d_model) for W [head, d_model, d_head]."""
    unit = direction / direction.norm().clamp_min(1e-12)
    read = torch.einsum("m,hmd->hd", unit, weights).pow(2).sum(-1)
    baseline = weights.pow(2).sum(dim=(1, 2)) / weights.shape[1]
    return read / baseline.clamp_min(1e-30)


def release_alignment(
    loaded: LoadedModel, directions: dict[tuple[int, int], torch.Tensor]
) -> pd.DataFrame:
    """Rows per (source layer, head, later layer, later head): query and key read strength of the
    source head's tag direction. Key heads are expanded to query heads under grouped-query
    attention."""
    rows = []
    for (layer, head), direction in directions.items():
        for later in range(layer + 1, loaded.n_layers):
            attn = loaded.model.blocks[later].attn
            w_q, w_k = attn.W_Q.detach(), attn.W_K.detach()
            direction = direction.to(w_q.device, w_q.dtype)
            query = read_strength(direction, w_q)
            key = read_strength(direction, w_k).repeat_interleave(w_q.shape[0] // w_k.shape[0])
            for later_head in range(w_q.shape[0]):
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "later_layer": later,
                        "later_head": later_head,
                        "query_read": float(query[later_head]),
                        "key_read": float(key[later_head]),
                    }
                )
    return pd.DataFrame(rows)
