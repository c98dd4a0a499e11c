"""The learned sink in the sink census (issue 27): GPT-OSS and Granite-SWA give every head a learned
logit s_h that acts as a key with zero value, visible to every query. Its mass in query i's row is

    m_i = sigmoid(s_h - LSE_i),   LSE_i = log sum_j exp(q_i . k_j * scale)  (the real keys)

(GPT-OSS: the real keys' row sums to 1 - m_i; Granite-SWA: the head output is scaled by 1 - m_i).
It is a sink by construction, so the question of arXiv 2502.00919 Sec. 2 becomes whether heads use
it and whether token sinks remain beside it. Each prompt gives the learned sink one score, the mean
of m_i over the real queries, as a token sink's score is the mean attention it receives; its null
is the same mean under uniform attention over each query's visible keys and the sink,
1 / (n_i + 1). The rows join the census table (``sink_kind = learned``) with its columns, so the
criterion (``sinks.sink`` and ``null_margin`` x null) reads the same.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from jaxtyping import Float

from sinkmech.attention.hooks import learned_sink_logits
from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import LEARNED, LEARNED_LABEL
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel

# What the learned-sink rows read of each layer (``sinkmech.attention.backends.DATA``).
LEARNED_SINK = frozenset({"learned_sink"})


def prompt_scores(
    mass: Float[torch.Tensor, "batch head query"],
    attention_mask: torch.Tensor,
    n_keys: Float[torch.Tensor, "batch query"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per prompt and head: (score = mean m_i over real queries [batch, head], its null
    mean 1 / (n_i + 1) [batch], real queries [batch])."""
    real = attention_mask.to(mass.device, torch.float32)
    n_queries = real.sum(1).clamp_min(1.0)
    score = (mass * real[:, None, :]).sum(-1) / n_queries[:, None]
    null = (real / (n_keys.to(real.device) + 1.0)).sum(1) / n_queries
    return score, null, real.sum(1)


def learned_sink_census(
    loaded: LoadedModel, batches: Sequence[TokenBatch], thresholds: SinkThresholds
) -> pd.DataFrame:
    """Census rows of the learned sink, one per (layer, head), in the sink census's columns.

    One pass per batch through ``loaded.backend``: hooked, each layer's masked scores give the
    mass inside the hook; fused, it comes from the forward's log-sum-exp, which includes the
    sink. Empty for a model without a learned sink.
    """
    if loaded.learned_sink == "none":
        return pd.DataFrame()
    logits = [learned_sink_logits(loaded, layer) for layer in range(loaded.n_layers)]
    per_layer: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in range(loaded.n_layers)]
    for batch in batches:
        mask = batch.attention_mask.to(loaded.device)

        def keep(layer: int, mass: torch.Tensor, n_keys: torch.Tensor) -> None:
            stats = prompt_scores(mass, mask.to(mass.device), n_keys)
            per_layer[layer].append(tuple(t.cpu() for t in stats))

        loaded.backend.layers(
            loaded,
            batch,
            LEARNED_SINK,
            lambda view: keep(view.layer, view.learned_sink_mass(), view.visible_keys()),
        )
    return pd.concat(
        [
            _rows(loaded, layer, *map(torch.cat, zip(*parts)), logits[layer].cpu(), thresholds)
            for layer, parts in enumerate(per_layer)
        ],
        ignore_index=True,
    )


def _rows(
    loaded: LoadedModel,
    layer: int,
    score: torch.Tensor,
    null: torch.Tensor,
    n_queries: torch.Tensor,
    sink_logits: torch.Tensor,
    t: SinkThresholds,
) -> pd.DataFrame:
    """One layer's census rows from per-prompt scores [prompt, head] and nulls [prompt]."""
    enough = (n_queries >= t.min_queries)[:, None]  # prompts the criterion may count
    above_sink = (score > t.sink) & (score > t.null_margin * null[:, None]) & enough
    mean_score, null_mean = score.mean(0), null.mean()
    table = pd.DataFrame(
        {
            "model": loaded.name,
            "layer": layer,
            "head": range(loaded.n_heads),
            "sink_kind": LEARNED,
            "token": LEARNED_LABEL,
            "occurrences": len(score),
            "mean_score": mean_score.numpy(),
            "null_mean_score": float(null_mean),
            "mean_visible_queries": float(n_queries.mean()),
            "max_score": score.max(0).values.numpy(),
            "frac_above_sink": above_sink.float().mean(0).numpy(),
            "frac_above_gu_eps": (score > t.gu_eps).float().mean(0).numpy(),
            "sink_logit": sink_logits.float().numpy(),
            "learned_sink_form": loaded.learned_sink,
        }
    )
    table["score_to_null"] = table.mean_score / table.null_mean_score
    table["enough_occurrences"] = True
    table["is_sink"] = (table.mean_score > t.sink) & (
        table.mean_score > t.null_margin * table.null_mean_score
    )
    return table


def with_learned_sinks(
    loaded: LoadedModel,
    batches: Sequence[TokenBatch],
    census: pd.DataFrame,
    thresholds: SinkThresholds,
) -> pd.DataFrame:
    """The census table with the learned sink's rows added and the model's ``learned_sink_form``
    on every row (``sink_logit`` is NaN on token rows); unchanged for other models."""
    learned = learned_sink_census(loaded, batches, thresholds)
    if learned.empty:
        return census
    census = census.assign(learned_sink_form=loaded.learned_sink)
    return pd.concat([census, learned], ignore_index=True)
