"""Probe features from a model: the tag a statement's final punctuation sink writes into the
tokens it catches, and baselines at the same positions (Sec. 4.4 / Table 1 of arXiv 2502.00919).

For layer l, head h, prompt b with final punctuation at s, caught queries C = {i : A_is > eps}
(the sink token itself if none) and value v_s:

    tag        = mean_{i in C} A_is v_s W_O          (theta_tag's input)
    tag_sink   = A_ss v_s W_O                        (the tag at the sink token itself)
    head_out   = mean_{i in C} z_i W_O               (the head's full output)
    no_tag     = head_out - tag                      (theta_no_tag's input: the tag removed)
    resid      = mean_{i in C} resid_post_i          (raw residual stream, same positions)

Head vectors are kept in d_head coordinates of W_O's row space (z U S for W_O = U S V^T), exact
for rotation-invariant probes and d_model / d_head times smaller; ``HeadBasis.to_model`` maps a
direction back to d_model. A gated head (Qwen3-Next) writes g_i * A_is v_s, so its tags carry
the gate of each caught query (``tags.tag_z``). Two passes: sink frequency from attention patterns only, then the
features of the chosen heads only, reduced inside the hooks (no activation cache is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from sinkmech.attention.backends import LayerView
from sinkmech.attention.hooks import expand_kv_heads, output_weights
from sinkmech.data.prompts import TokenBatch, iter_batches
from sinkmech.data.tokens import is_punctuation
from sinkmech.mechanism.sinks import (
    RECEIVED,
    is_sink_score,
    key_null,
    layer_windows,
    scores_from_received,
    special_token_strings,
)
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.mechanism.variance import output_basis
from sinkmech.models import LoadedModel

HeadKey = tuple[int, int]
# Appended to each statement so that the statement-final period has later tokens to catch under
# causal attention (alone it is seen only by itself and an end token, too few to count as a sink).
# It carries no punctuation, so the period stays the prompt's last punctuation token.
PROBE_SUFFIX = " This statement is"
# The statement's final punctuation is seen only by itself and the suffix's few tokens, so the
# truth probes score it with 3 visible queries (the census's default, 8, would never see it).
PROBE_MIN_QUERIES = 3


@dataclass
class HeadBasis:
    """Orthonormal coordinates of one head's output space: z W_O = (z @ k) @ v_t."""

    k: torch.Tensor  # [d_head, d_head] = U S
    v_t: torch.Tensor  # [d_head, d_model], orthonormal rows

    @classmethod
    def of(cls, loaded: LoadedModel, layer: int, head: int) -> "HeadBasis":
        return cls(*output_basis(output_weights(loaded, layer)[head]))

    def to_model(self, coords: np.ndarray) -> np.ndarray:
        """Coordinates (last axis d_head) -> d_model vectors."""
        return coords @ self.v_t.cpu().numpy()


def last_punctuation(batch: TokenBatch, special: frozenset[str]) -> torch.Tensor:
    """Position of each prompt's last punctuation token (special tokens excluded), [batch]."""
    positions = []
    for row, strings in enumerate(batch.token_strings):
        found = [
            i for i, token in enumerate(strings) if token not in special and is_punctuation(token)
        ]
        if not found:
            raise ValueError(f"prompt {row} has no punctuation token: {strings}")
        positions.append(found[-1])
    return torch.tensor(positions)


# What the probes read of each layer (``sinkmech.attention.backends.DATA``).
TRUTH = frozenset({"sink_attention", "values", "z", "block_out"})


def final_sink_frequency(
    loaded: LoadedModel, prompts: Sequence[str], batch_size: int, criterion: SinkThresholds
) -> np.ndarray:
    """[layer, head]: share of prompts whose final punctuation is a sink of the head under
    ``criterion`` (mean received attention > ``criterion.sink`` and ``null_margin`` x its
    uniform-attention null, seen by ``min_queries`` queries: ``tags.sink_mask``), from the
    attention each key receives (``loaded.backend``)."""
    special = special_token_strings(loaded.tokenizer)
    windows = layer_windows(loaded)
    counts = torch.zeros(loaded.n_layers, loaded.n_heads)
    for batch in iter_batches(loaded.tokenizer, prompts, batch_size, loaded.max_length):
        mask = batch.attention_mask.to(loaded.device)
        final = last_punctuation(batch, special).to(loaded.device)
        rows = torch.arange(len(final), device=loaded.device)

        def reduce(view: LayerView) -> None:
            received = view.received  # a later layer of a split model sits on another GPU
            device = received.device
            here = mask.to(device)
            null = key_null(here, loaded.causal, windows[view.layer])
            scores = scores_from_received(received.float(), here, null)
            is_sink = (
                is_sink_score(
                    scores, null, criterion.sink, criterion.null_margin, criterion.min_queries
                )
                & here.bool()[:, None, :]
            )  # [b, h, key], as tags.sink_mask
            counts[view.layer] += is_sink[rows.to(device), :, final.to(device)].float().sum(0).cpu()

        loaded.backend.layers(loaded, batch, RECEIVED, reduce)
    return (counts / len(prompts)).numpy()


@dataclass
class TruthFeatures:
    """Per chosen head, arrays over prompts: tag, tag_sink, head_out, no_tag (d_head coordinates),
    resid (d_model), sink_value (v_s W_O coordinates) and n_caught."""

    heads: list[HeadKey]
    bases: dict[HeadKey, HeadBasis]
    arrays: dict[HeadKey, dict[str, np.ndarray]] = field(default_factory=dict)


def extract_truth_features(
    loaded: LoadedModel,
    prompts: Sequence[str],
    heads: Sequence[HeadKey],
    batch_size: int,
    threshold: float,
) -> TruthFeatures:
    """Tag and baseline features of ``heads`` at the tokens each prompt's final punctuation catches."""
    heads = sorted(heads)
    bases = {key: HeadBasis.of(loaded, *key) for key in heads}
    k = {key: basis.k.float() for key, basis in bases.items()}  # on the head's layer's device
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    special = special_token_strings(loaded.tokenizer)
    chunks: dict[HeadKey, dict[str, list[np.ndarray]]] = {key: {} for key in heads}
    for batch in iter_batches(loaded.tokenizer, prompts, batch_size, loaded.max_length):
        batch_mask = batch.attention_mask.to(loaded.device).bool()
        batch_final = last_punctuation(batch, special).to(loaded.device)
        batch_rows = torch.arange(len(batch_final), device=loaded.device)

        def consume(view: LayerView) -> None:
            layer = view.layer
            values = expand_kv_heads(view.values.float(), loaded.n_heads)
            device = values.device  # a later layer of a split model sits on another GPU
            mask, final, rows = (t.to(device) for t in (batch_mask, batch_final, batch_rows))
            gates = view.gate
            for head in by_layer[layer]:
                key = (layer, head)
                attention = view.sink_attention(rows, torch.full_like(rows, head), final)  # A_is
                caught = (attention > threshold) & mask
                none = ~caught.any(1)
                caught[rows[none], final[none]] = True
                weights = caught.float() / caught.sum(1, keepdim=True)  # mean over caught queries
                v_s = values[rows, final, head] @ k[key]  # [b, d_head] coordinates of v_s W_O
                tag = (weights * attention).sum(1, keepdim=True) * v_s
                tag_sink = attention[rows, final, None] * v_s
                if gates is not None:  # a gated head writes g_i * A_is v_s (tags.tag_z)
                    gate = gates[:, :, head]  # [b, query, d|1]
                    raw = values[rows, final, head]
                    mixed = torch.einsum("bq,bqd->bd", weights * attention, gate)
                    tag = (mixed * raw) @ k[key]
                    tag_sink = attention[rows, final, None] * (gate[rows, final] * raw) @ k[key]
                head_out = torch.einsum("bq,bqd->bd", weights, view.z[:, :, head].float()) @ k[key]
                features = {
                    "tag": tag,
                    "tag_sink": tag_sink,
                    "head_out": head_out,
                    "no_tag": head_out - tag,
                    "resid": torch.einsum("bq,bqm->bm", weights, view.resid.float()),
                    "sink_value": v_s,
                    "n_caught": caught.sum(1).float(),
                }
                for name, tensor in features.items():
                    chunks[key].setdefault(name, []).append(tensor.cpu().numpy())

        loaded.backend.layers(loaded, batch, TRUTH, consume, only=by_layer)
    arrays = {
        key: {name: np.concatenate(parts) for name, parts in chunks[key].items()} for key in heads
    }
    return TruthFeatures(list(heads), bases, arrays)
