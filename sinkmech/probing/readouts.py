"""What the truth probes read of one model, position by position (issue 29, item 3).

Each statement "The city of X is in Y." runs with ``PROBE_SUFFIX`` behind it (so its final period
has later tokens to catch, as in ``features``); under causal attention the suffix changes nothing
at or before the period. Read:

    resid          residual stream at the country's last token and at the final period, after
                   each block (``blocks.{l}.hook_resid_post``) and before the first
                   (``EMBEDDING_LAYER``: ``blocks.0.hook_resid_pre``, the token embeddings)
    tag            per layer, the tags its final-period sink heads write into the tokens they
                   catch (``features.extract_truth_features``), heads side by side
    embedding_bag  mean input-embedding row of the city's tokens beside that of the country's

Positions come from the tokenizer's character offsets, counted as ``data.prompts.tokenize``
counts them (BOS prepended where the tokenizer does not add it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from sinkmech.attention.hooks import resid_post_name, run_hooked
from sinkmech.data.prompts import iter_batches
from sinkmech.mechanism.positions import resid_pre_name
from sinkmech.models import LoadedModel
from sinkmech.probing.features import HeadKey, extract_truth_features

EMBEDDING_LAYER = -1  # the ``layer`` of the token embeddings, before block 0


@dataclass
class StatementTokens:
    """Token positions in each prompt (BOS counted) and the ids of its city and country tokens."""

    country: np.ndarray  # [n] the country phrase's last token
    period: np.ndarray  # [n] the token holding the statement-final period
    city_ids: list[list[int]]
    country_ids: list[list[int]]


def _overlapping(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens whose character span meets [start, end)."""
    return [i for i, (a, b) in enumerate(offsets) if a < end and b > start]


def statement_tokens(
    tokenizer: Any, prompts: Sequence[str], cities: Sequence[str], countries: Sequence[str]
) -> StatementTokens:
    """Where each prompt's city, country (as written: ``countries`` are the phrases) and final
    period sit. The prompt starts with the statement, the city after "The city of "."""
    positions: dict[str, list] = {"country": [], "period": [], "city_ids": [], "country_ids": []}
    bos = getattr(tokenizer, "bos_token_id", None)
    for prompt, city, country in zip(prompts, cities, countries):
        encoded = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
        if bos is not None and (not ids or ids[0] != bos):
            ids, offsets = [bos, *ids], [(0, 0), *offsets]
        city_start = prompt.index(f" {city} ") + 1
        country_end = prompt.index(f" {country}.", city_start + len(city)) + 1 + len(country)
        city_tokens = _overlapping(offsets, city_start, city_start + len(city))
        country_tokens = _overlapping(offsets, country_end - len(country), country_end)
        period = _overlapping(offsets, country_end, country_end + 1)
        if period[0] == country_tokens[-1]:
            raise ValueError(f"{prompt!r}: one token holds the country's end and the period")
        positions["country"].append(country_tokens[-1])
        positions["period"].append(period[0])
        positions["city_ids"].append([ids[i] for i in city_tokens])
        positions["country_ids"].append([ids[i] for i in country_tokens])
    return StatementTokens(
        np.array(positions["country"]),
        np.array(positions["period"]),
        positions["city_ids"],
        positions["country_ids"],
    )


def residual_at(
    loaded: LoadedModel,
    prompts: Sequence[str],
    positions: dict[str, np.ndarray],
    layers: Sequence[int],
    batch_size: int,
) -> dict[tuple[str, int], np.ndarray]:
    """(position name, layer) -> [prompt, d_model]: the residual stream at each prompt's named
    position, after block ``layer`` (``EMBEDDING_LAYER``: before block 0). One hooked pass per
    batch, keeping only the rows asked for."""
    names = {
        layer: resid_pre_name(0) if layer == EMBEDDING_LAYER else resid_post_name(layer)
        for layer in layers
    }
    chunks: dict[tuple[str, int], list[np.ndarray]] = {
        (p, l): [] for p in positions for l in layers
    }
    start = 0
    for batch in iter_batches(loaded.tokenizer, prompts, batch_size, loaded.max_length):
        size = len(batch.token_strings)
        where = {name: at[start : start + size] for name, at in positions.items()}

        def keep(layer: int):
            def hook(tensor: torch.Tensor, hook: object) -> None:
                rows = torch.arange(size, device=tensor.device)
                for name, at in where.items():
                    picked = tensor[rows, torch.as_tensor(at, device=tensor.device)]
                    chunks[(name, layer)].append(picked.float().cpu().numpy())

            return hook

        run_hooked(loaded, batch, [(names[layer], keep(layer)) for layer in layers])
        start += size
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


def tags_by_layer(
    loaded: LoadedModel,
    prompts: Sequence[str],
    heads: Sequence[HeadKey],
    batch_size: int,
    threshold: float,
) -> dict[int, np.ndarray]:
    """Layer -> [prompt, heads x d_head]: the tags of ``heads`` (final-period sink heads), those
    of one layer side by side in head order, each in its head's d_head output coordinates."""
    features = extract_truth_features(loaded, prompts, heads, batch_size, threshold)
    parts: dict[int, list[np.ndarray]] = {}
    for layer, head in features.heads:
        parts.setdefault(layer, []).append(features.arrays[(layer, head)]["tag"])
    return {layer: np.hstack(arrays) for layer, arrays in sorted(parts.items())}


def embedding_bag(loaded: LoadedModel, tokens: StatementTokens) -> np.ndarray:
    """[prompt, 2 d_model]: the mean input-embedding row of the city's tokens beside the mean row
    of the country's, from the model's own embedding table (what a probe gets from token identity
    and the embeddings alone, with no context)."""
    table = loaded.model.original_model.get_input_embeddings().weight.detach().float().cpu()
    table = table.numpy()
    city = np.stack([table[ids].mean(axis=0) for ids in tokens.city_ids])
    country = np.stack([table[ids].mean(axis=0) for ids in tokens.country_ids])
    return np.hstack([city, country])
