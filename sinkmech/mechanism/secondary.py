"""Secondary sinks by hidden-state similarity to the first token (after "Secondary Attention
Sinks", arXiv 2512.22213), compared position by position with the census's attention sinks.

The paper (not readable here; assumption) finds tokens beyond the first whose hidden states align
with the first token's and which then draw attention like it. Here a non-first token is a
similarity sink of layer l when the cosine between the residual stream entering block l (what the
layer's keys are computed from) at the token and at the first token exceeds ``cosine``; it is an
attention sink of layer l when some head of l gives it a mean attention above the census threshold.
Null: the same count with the second token in place of the first (how many tokens align with an
arbitrary early token at the same cosine), and the overlap expected if the two sets were independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from sinkmech.attention.hooks import HookFn
from sinkmech.data.prompts import TokenBatch
from sinkmech.errors import ConfigError
from sinkmech.mechanism.positions import attention_sink_positions, position_kinds, resid_pre_name
from sinkmech.mechanism.sinks import capture_key_scores, scorable_keys, special_token_strings
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel

METHODS = ("both", "similarity_only", "attention_only")


# What the pass reads (``attention.backends.DATA``): key scores and the residual stream.
NEEDS = frozenset({"received", "resid"})


@dataclass
class SecondarySettings:
    """Cosine criterion for similarity sinks and the census criterion for attention sinks."""

    cosine: float = 0.8  # assumption: arXiv 2512.22213's exact criterion is not readable here
    sinks: SinkThresholds = field(default_factory=SinkThresholds)  # the run's `sinks` node

    def __post_init__(self) -> None:
        if not -1.0 < self.cosine < 1.0:
            raise ConfigError(f"secondary.cosine must lie in (-1, 1), got {self.cosine}")


def cosine_to(hidden: torch.Tensor, anchor: int) -> torch.Tensor:
    """Cosine of every position's hidden state with position ``anchor``'s, [batch, pos]."""
    return torch.nn.functional.cosine_similarity(hidden, hidden[:, anchor : anchor + 1], dim=-1)


def capture_similarity(
    loaded: LoadedModel, batch: TokenBatch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass: cosine to the first and to the second token [batch, layer, pos] and key scores
    [batch, layer, head, key]."""
    to_first: dict[int, torch.Tensor] = {}
    to_second: dict[int, torch.Tensor] = {}

    def reduce(layer: int) -> HookFn:
        def hook(hidden: torch.Tensor, hook: object) -> None:
            to_first[layer] = cosine_to(hidden.float(), 0)
            to_second[layer] = cosine_to(hidden.float(), 1)

        return hook

    hooks = [(resid_pre_name(layer), reduce(layer)) for layer in range(loaded.n_layers)]
    scores, _ = capture_key_scores(loaded, batch, hooks, NEEDS)
    layers = range(loaded.n_layers)
    first = torch.stack([to_first[l] for l in layers], dim=1)
    second = torch.stack([to_second[l] for l in layers], dim=1)
    return first, second, scores


def secondary_sinks(
    loaded: LoadedModel, batches: list[TokenBatch], settings: SecondarySettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-layer overlap table, per-layer token table of what each method finds)."""
    special = special_token_strings(loaded.tokenizer)
    counts, tokens = [], []
    for batch in batches:
        first, second, scores = capture_similarity(loaded, batch)
        compared = scorable_keys(batch.attention_mask, loaded.causal, settings.sinks.min_queries)
        compared = compared.to(first.device)
        compared[:, :2] = False  # the anchors themselves (first, and second for the null)
        compared = compared[:, None, :].expand_as(first)
        attention = attention_sink_positions(loaded, batch, scores, settings.sinks)
        attention &= compared[:, 0][:, None, :]
        similar = (first > settings.cosine) & compared
        null = (second > settings.cosine) & compared
        counts.append(_layer_counts(similar, attention & compared, null, compared, first))
        tokens.extend(_token_rows(similar, attention & compared, position_kinds(batch, special)))
    table = pd.concat(counts).groupby("layer").sum().reset_index()
    table["expected_both_if_independent"] = (
        table.n_similarity * table.n_attention / table.n_compared.clip(lower=1)
    )
    table["jaccard"] = table.n_both / (table.n_similarity + table.n_attention - table.n_both).clip(
        lower=1
    )
    table["mean_cosine_to_first"] = table.pop("sum_cosine") / table.n_compared.clip(lower=1)
    token_table = (
        pd.DataFrame(tokens, columns=["layer", "method", "sink_kind", "token"])
        .value_counts()
        .rename("count")
        .reset_index()
    )
    return table.assign(model=loaded.name), token_table.assign(model=loaded.name)


def _layer_counts(
    similar: torch.Tensor,
    attention: torch.Tensor,
    null: torch.Tensor,
    compared: torch.Tensor,
    cosine: torch.Tensor,
) -> pd.DataFrame:
    def per_layer(flags: torch.Tensor) -> list[int]:
        return flags.sum(dim=(0, 2)).tolist()

    return pd.DataFrame(
        {
            "layer": range(similar.shape[1]),
            "n_compared": per_layer(compared),
            "n_similarity": per_layer(similar),
            "n_attention": per_layer(attention),
            "n_both": per_layer(similar & attention),
            "n_similarity_only": per_layer(similar & ~attention),
            "n_attention_only": per_layer(attention & ~similar),
            "n_similar_to_second": per_layer(null),
            "sum_cosine": (cosine * compared).sum(dim=(0, 2)).tolist(),
        }
    )


def _token_rows(
    similar: torch.Tensor, attention: torch.Tensor, kinds: list[list[tuple[str, str]]]
) -> list[tuple[int, str, str, str]]:
    rows = []
    for name, flags in zip(
        METHODS, (similar & attention, similar & ~attention, attention & ~similar)
    ):
        for prompt, layer, position in flags.nonzero().tolist():
            rows.append((layer, name, *kinds[prompt][position]))
    return rows
