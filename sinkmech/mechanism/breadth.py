"""How broadly a sink is caught (issue 28, item 8): a key can clear the sink threshold on the
attention of a handful of queries, as keys near the end of a causal prompt do (few queries see
them), which is not the catching of Sec. 3 of arXiv 2502.00919, where a sink gathers the
attention of many queries.

For a sink key k of one prompt and head, with attention column A[:, k] over the real queries,
p_q = A[q, k] / sum_q' A[q', k] is query q's share of what k receives. Its breadth is the
effective number of catching queries, 1 / sum_q p_q^2 (n when n queries give equal shares, 1 when
one query gives everything), beside the best query's share, max_q p_q. The null is the same
number under uniform attention over each query's visible keys (``sinks.key_null``'s
``n_effective``): the number of queries that see k for bidirectional attention, fewer for causal
attention, whose early queries see few keys and so give each of them more. The census
(``sinks.SinkCensus``) averages both over the prompts where the key is a sink, and asks a
prompt-dependent (punctuation or content) sink to be caught at least
``SinkThresholds.min_catch_breadth`` times as broadly as its null.

Both backends give the columns of chosen keys (``LayerView.sink_attention``): only the sink keys'
columns are read, never a [T, T] pattern.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int


def catch_breadth(
    columns: Float[torch.Tensor, "sink query"], queries: Bool[torch.Tensor, "sink query"]
) -> tuple[Float[torch.Tensor, " sink"], Float[torch.Tensor, " sink"]]:
    """(effective number of catching queries, best query's share) of each column, counting the
    real ``queries`` only (a padded query's row is not attention)."""
    caught = columns.float() * queries
    total = caught.sum(-1)
    squares = (caught**2).sum(-1).clamp_min(torch.finfo(caught.dtype).tiny)
    return total**2 / squares, caught.amax(-1) / total.clamp_min(torch.finfo(caught.dtype).tiny)


def sink_breadth(
    columns: Float[torch.Tensor, "sink query"],
    sinks: Bool[torch.Tensor, "batch head key"],
    prompt: Int[torch.Tensor, " sink"],
    attention_mask: Int[torch.Tensor, "batch pos"],
) -> tuple[Float[torch.Tensor, "batch head key"], Float[torch.Tensor, "batch head key"]]:
    """``catch_breadth`` of every sink key placed at its (prompt, head, key), 0 elsewhere:
    ``columns`` are the sinks' attention columns in ``sinks.nonzero()`` order and ``prompt`` their
    prompts (its first column)."""
    effective, best = catch_breadth(columns, attention_mask.bool()[prompt])
    maps = torch.zeros(2, *sinks.shape, device=columns.device)
    maps[0].masked_scatter_(sinks, effective)
    maps[1].masked_scatter_(sinks, best)
    return maps[0], maps[1]


def stack_layers(
    per_layer: dict[int, tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each layer's ``sink_breadth`` stacked in layer order, [batch, layer, head, key] each (the
    census's ``breadth``)."""
    layers = sorted(per_layer)
    return tuple(torch.stack([per_layer[l][i] for l in layers], dim=1) for i in (0, 1))
