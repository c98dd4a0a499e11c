"""Catch, tag, release on one model: one streamed pass for catch + tag variance, then release
alignment and interventions on the strongest tag heads.

Reproduces Sec. 3 (catch and tag, Fig. 1-3: variance explained by tags) of arXiv 2502.00919 and
extends its Sec. 4 (release/retrieval) with causal ablation and patching (App. K limitation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from sinkmech.data.prompts import TokenBatch
from sinkmech.mechanism.hooks import (
    expand_kv_heads,
    gather_per_layer,
    output_weights,
    pattern_name,
    run_hooked,
    value_name,
    z_name,
)
from sinkmech.mechanism.interventions import (
    TagEditSpec,
    capture_outputs,
    capture_tags,
    measure_edit,
)
from sinkmech.mechanism.release import release_alignment
from sinkmech.mechanism.sinks import (
    SinkCensus,
    SinkThresholds,
    key_scores,
    special_token_strings,
    summarise,
)
from sinkmech.mechanism.tags import catch_table, sink_mask
from sinkmech.mechanism.variance import HeadMoments, tag_directions, variance_explained
from sinkmech.models import LoadedModel


@dataclass
class CTRSettings:
    """Thresholds and sizes of the catch-tag-release analyses."""

    sink_threshold: float = 0.2
    gu_eps: float = 0.3
    catch_threshold: float = 0.2
    min_queries: int = 3
    ranks: tuple[int, ...] = (1, 2)
    n_random: int = 32
    top_heads: int = 4
    intervention_batches: int = 1
    seed: int = 0
    collect_catch: bool = True  # per-sink catch rows; off for pure sink/tag statistics


def _stream_pass(
    loaded: LoadedModel, batches: Iterable[TokenBatch], settings: CTRSettings
) -> tuple[SinkCensus, list[HeadMoments], pd.DataFrame]:
    """One forward pass per batch feeding the sink census, z/sink moments and catch rows.

    Each layer's pattern is reduced to key scores once; scores, sink masks, moments and catch
    rows are computed inside the hooks, and the layer's activations are dropped right after.
    """
    d_head = output_weights(loaded, 0).shape[1]
    moments = [HeadMoments(loaded.n_heads, d_head, loaded.device) for _ in range(loaded.n_layers)]
    census = SinkCensus(
        loaded.name,
        loaded.n_layers,
        loaded.n_heads,
        special_token_strings(loaded.tokenizer),
        SinkThresholds(settings.sink_threshold, settings.gu_eps, settings.min_queries),
    )
    catches: list[pd.DataFrame] = []
    for batch_index, batch in enumerate(
        tqdm(batches, desc=f"{loaded.name}: catch/tag", unit="batch")
    ):
        mask = batch.attention_mask.to(loaded.device)
        scores: dict[int, torch.Tensor] = {}

        def consume(layer: int, acts: dict[str, torch.Tensor]) -> None:
            pattern = acts["pattern"].float()
            values = expand_kv_heads(acts["values"].float(), loaded.n_heads)
            scores[layer] = key_scores(pattern, mask, loaded.causal)
            sinks = sink_mask(
                pattern,
                mask,
                loaded.causal,
                settings.sink_threshold,
                settings.min_queries,
                scores=scores[layer],
            )
            moments[layer].update(acts["z"].float(), values, sinks, mask)
            if not settings.collect_catch:
                return
            rows = catch_table(pattern, mask, sinks, settings.catch_threshold, layer)
            if not rows.empty:
                rows["prompt"] += batch_index * 10**6
                catches.append(rows)

        names = {"pattern": pattern_name, "values": value_name, "z": z_name}
        run_hooked(loaded, batch, gather_per_layer(range(loaded.n_layers), names, consume))
        census.update(
            torch.stack([scores[l] for l in range(loaded.n_layers)], dim=1), batch, loaded.causal
        )
    catch = pd.concat(catches, ignore_index=True) if catches else pd.DataFrame()
    return census, moments, catch


def _label_catches(catch: pd.DataFrame, batches: Sequence[TokenBatch]) -> pd.DataFrame:
    """Add the sink token's text to catch rows (prompt ids encode batch * 1e6 + row)."""
    if catch.empty:
        return catch
    tokens = [
        batches[prompt // 10**6].token_strings[prompt % 10**6][position]
        for prompt, position in zip(catch.prompt, catch.sink_position)
    ]
    return catch.assign(sink_token=tokens)


def analyse_ctr(
    loaded: LoadedModel, batches: Sequence[TokenBatch], settings: CTRSettings | None = None
) -> dict[str, pd.DataFrame]:
    """Run the sink census, catch, tag (variance explained), release and interventions.

    Returns tidy tables: ``sinks`` and ``sinks_summary`` (as ``sinks.detect_sinks``), ``catch`` (one row per prompt, layer, head, sink), ``variance`` (per
    layer, head, rank), ``release`` (tag directions of the top heads read by later heads) and
    ``interventions`` (per prompt and edit, with the equal-norm random control in the same table).
    """
    settings = settings or CTRSettings()
    census, moments, catch = _stream_pass(loaded, batches, settings)
    sinks = census.table()
    variance = pd.concat(
        [
            variance_explained(
                moments[layer],
                output_weights(loaded, layer),
                settings.ranks,
                settings.n_random,
                settings.seed,
            ).assign(layer=layer)
            for layer in range(loaded.n_layers)
        ],
        ignore_index=True,
    )
    variance["model"] = loaded.name
    top = _top_tag_heads(variance, settings.top_heads)
    directions = {
        (layer, head): tag_directions(moments[layer], output_weights(loaded, layer))[head, 0]
        for layer, head in top
    }
    release = release_alignment(loaded, directions).assign(model=loaded.name)
    interventions = _interventions(loaded, batches[: settings.intervention_batches], top, settings)
    return {
        "sinks": sinks,
        "sinks_summary": summarise(sinks, census.n_prompts, loaded.qk_norm),
        "catch": _label_catches(catch, batches).assign(model=loaded.name),
        "variance": variance,
        "release": release,
        "interventions": interventions.assign(model=loaded.name),
    }


def _top_tag_heads(variance: pd.DataFrame, k: int) -> list[tuple[int, int]]:
    """The k heads whose rank-1 tag explains the most output variance."""
    rank1 = variance[(variance["rank"] == 1) & variance.tag_variance_explained.notna()]
    best = rank1.nlargest(k, "tag_variance_explained")
    return [(int(row.layer), int(row.head)) for row in best.itertuples()]


def _shifted_tags(tags: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Tags of the next prompt in the batch (cyclic), zero where that prompt is padding."""
    source_mask = batch.attention_mask.roll(-1, dims=0).to(tags.device, tags.dtype)
    return tags.roll(-1, dims=0) * source_mask[:, :, None, None]


def _interventions(
    loaded: LoadedModel,
    batches: Sequence[TokenBatch],
    heads: list[tuple[int, int]],
    settings: CTRSettings,
) -> pd.DataFrame:
    """Remove, random control, cross-prompt patch and self-patch for each top head."""
    frames = []
    for batch_index, batch in enumerate(
        tqdm(batches, desc=f"{loaded.name}: interventions", unit="batch")
    ):
        batch = batch.to(loaded.device)
        clean = capture_outputs(loaded, batch)
        for layer, head in heads:
            spec = TagEditSpec(
                layer,
                [head],
                threshold=settings.sink_threshold,
                min_queries=settings.min_queries,
                seed=settings.seed,
            )
            own_tags = capture_tags(loaded, batch, spec)
            edits = [
                (replace(spec, mode="remove"), None, "remove"),
                (replace(spec, mode="random"), None, "random_control"),
                (replace(spec, mode="patch"), _shifted_tags(own_tags, batch), "patch_other_prompt"),
                (replace(spec, mode="patch"), own_tags, "patch_self"),
            ]
            for edit, source, label in edits:
                frame = measure_edit(loaded, batch, edit, own_tags, source, clean)
                frames.append(frame.assign(intervention=label, batch=batch_index))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
