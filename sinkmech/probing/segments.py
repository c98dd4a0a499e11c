"""Segment identity: can a linear probe on the tag tell which punctuation sink caught a token?

The release step of Sec. 3-4 of arXiv 2502.00919 needs tags to mark *which* segment a token was
caught by: in a prompt of several punctuation-terminated segments, each period sink writes its own
value v_s W_O into the tokens it catches. Per head, each token caught by a period (attention
> eps to it) is labelled with the ordinal of the period that catches it most; the feature is the
tag sum_{s in periods} A_is v_s (d_head coordinates of W_O's row space), against the raw residual
stream at the token, shuffled labels, and position baselines (the token's position one-hot; position
plus prompt length, one-hot each): segment ordinals follow position, so the tag shows segment
identity only where it beats position. Every period counts as a candidate sink here: the
mean-received-attention criterion of ``tags.sink_mask`` divides a segment-local sink's catch by
the number of segments, so it would hide exactly the sinks this probe is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sinkmech.attention.backends import LayerView
from sinkmech.data.prompts import TokenBatch, iter_batches
from sinkmech.data.tokens import is_punctuation
from sinkmech.mechanism.sinks import special_token_strings
from sinkmech.models import LoadedModel
from sinkmech.probing.features import HeadBasis, HeadKey


def segment_prompts(
    statements: pd.DataFrame, per_prompt: int = 3, max_prompts: int = 240
) -> pd.DataFrame:
    """Prompts of ``per_prompt`` consecutive statements of one split, joined by spaces.

    At most ``max_prompts``, split between train and test in the statements' proportion.
    """
    frames = []
    for split, part in statements.sort_values("statement_id").groupby("split", sort=True):
        texts = part.statement.tolist()
        prompts = [
            " ".join(texts[i : i + per_prompt])
            for i in range(0, len(texts) - per_prompt + 1, per_prompt)
        ]
        share = round(max_prompts * len(part) / len(statements))
        frames.append(pd.DataFrame({"prompt": prompts[:share], "split": split}))
    return pd.concat(frames, ignore_index=True)


def punctuation_positions(batch: TokenBatch, special: frozenset[str]) -> torch.Tensor:
    """Boolean [batch, seq]: punctuation tokens, special tokens excluded."""
    flags = torch.zeros_like(batch.attention_mask, dtype=torch.bool)
    for row, strings in enumerate(batch.token_strings):
        for i, token in enumerate(strings):
            flags[row, i] = token not in special and is_punctuation(token)
    return flags


@dataclass
class SegmentFeatures:
    """Per head: tag coordinates, residual, catching-sink ordinal, position and prompt length of
    each caught token, and the prompt it comes from."""

    arrays: dict[HeadKey, dict[str, np.ndarray]]


# What the segment probes read of each layer (``sinkmech.attention.backends.DATA``).
SEGMENTS = frozenset({"sink_attention", "mix", "block_out"})


def extract_segment_features(
    loaded: LoadedModel,
    prompts: Sequence[str],
    heads: Sequence[HeadKey],
    batch_size: int,
    threshold: float,
) -> SegmentFeatures:
    """Per head, every token caught by a period: its tag, residual and which period caught it."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    k = {key: HeadBasis.of(loaded, *key).k.float() for key in heads}  # on the layer's device
    special = special_token_strings(loaded.tokenizer)
    chunks: dict[HeadKey, dict[str, list[np.ndarray]]] = {key: {} for key in heads}
    offset = 0
    for batch in iter_batches(loaded.tokenizer, prompts, batch_size, loaded.max_length):
        batch_mask = batch.attention_mask.to(loaded.device)
        batch_periods = punctuation_positions(batch, special).to(loaded.device)
        # which punctuation mark a period position is
        batch_ordinal = batch_periods.long().cumsum(1) - 1
        prompt_ids = torch.arange(offset, offset + len(batch.token_strings))
        batch_lengths = batch_mask.sum(1).float()

        def consume(view: LayerView) -> None:
            layer = view.layer
            resid = view.resid.float()
            device = resid.device  # a later layer of a split model sits on another GPU
            mask, periods, ordinal, lengths = (
                t.to(device) for t in (batch_mask, batch_periods, batch_ordinal, batch_lengths)
            )
            prompt, position = periods.nonzero(as_tuple=True)
            for head in by_layer[layer]:
                key = (layer, head)
                columns = view.sink_attention(prompt, torch.full_like(prompt, head), position)
                to_sinks = columns.new_zeros(periods.shape[0], periods.shape[1], periods.shape[1])
                to_sinks[prompt, :, position] = columns  # [b, query, key]: A to the periods only
                strength, catcher = to_sinks.max(-1)
                caught = (strength > threshold) & mask.bool()
                tag = view.mix(torch.tensor([head]), periods[:, None, :])
                b, q = caught.nonzero(as_tuple=True)
                features = {
                    "tag": tag[:, :, 0][b, q] @ k[key],
                    "resid": resid[b, q],
                    "label": ordinal[b, catcher[b, q]].float(),
                    "prompt": prompt_ids.to(device)[b].float(),
                    "position": q.float(),
                    "length": lengths[b],
                }
                for name, tensor in features.items():
                    chunks[key].setdefault(name, []).append(tensor.cpu().numpy())

        loaded.backend.layers(loaded, batch, SEGMENTS, consume, only=by_layer)
        offset += len(batch.token_strings)
    return SegmentFeatures(
        {key: {name: np.concatenate(parts) for name, parts in chunks[key].items()} for key in heads}
    )
