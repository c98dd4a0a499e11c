"""The field's other sink measures as pipeline analyses (issue 19), each with the runner signature
of ``experiments.pipeline.ANALYSIS_RUNNERS``: ``(loaded, batches, settings) -> (tables, figures)``.

- ``massive``: Sun et al.'s massive activations and the zero / mean interventions;
- ``secondary``: secondary sinks by hidden-state similarity vs the census's attention sinks;
- ``eviction``: StreamingLLM's sliding-window cache test, with the prompt-dependent sinks;
- ``gu_sink``: Gu et al.'s Sink_eps at eps = 0.3 on 64-token prompts;
- ``long_context``: first-token sinks, their attention share and tag variance as T grows (issue 17).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import PUNCTUATION, SPECIAL
from sinkmech.mechanism.eviction import (
    EvictionSettings,
    eviction_perplexity,
    long_sequences,
    require_causal,
    summarise_eviction,
)
from sinkmech.mechanism.gu import GuSettings, gu_sink_table
from sinkmech.mechanism.long_context import (
    LongContextSettings,
    long_context_profile,
    summarise_long_context,
)
from sinkmech.mechanism.massive import (
    MassiveSettings,
    edit_layer,
    massive_activations,
    massive_interventions,
)
from sinkmech.mechanism.secondary import SecondarySettings, secondary_sinks
from sinkmech.mechanism.sinks import SinkThresholds, detect_sinks
from sinkmech.models import LoadedModel
from sinkmech.reporting import measures_plots

Tables = dict[str, pd.DataFrame]
Figures = dict[str, Any]


def run_massive(
    loaded: LoadedModel, batches: list[TokenBatch], settings: MassiveSettings
) -> tuple[Tables, Figures]:
    """Tables ``massive`` (top entries per layer), ``massive_summary`` (per layer, with the sink
    overlap and its base rate) and ``massive_interventions`` (per prompt and edit)."""
    top, summary = massive_activations(loaded, batches, settings)
    edits = massive_interventions(loaded, batches, edit_layer(summary), settings)
    tables = {"massive": top, "massive_summary": summary}
    if not edits.empty:
        tables["massive_interventions"] = edits
    return tables, {"massive": measures_plots.massive_figure(summary, edits)}


def run_secondary(
    loaded: LoadedModel, batches: list[TokenBatch], settings: SecondarySettings
) -> tuple[Tables, Figures]:
    """Tables ``secondary`` (per-layer overlap with its nulls) and ``secondary_tokens``."""
    overlap, tokens = secondary_sinks(loaded, batches, settings)
    return {"secondary": overlap, "secondary_tokens": tokens}, {
        "secondary": measures_plots.secondary_figure(overlap)
    }


def census_sink_labels(
    loaded: LoadedModel, batches: list[TokenBatch], thresholds: SinkThresholds
) -> set[str]:
    """Labels of the punctuation and special tokens the census finds to be a sink in some head."""
    table, _ = detect_sinks(loaded, batches, thresholds)
    prompt_dependent = table[table.sink_kind.isin([PUNCTUATION, SPECIAL]) & table.is_sink]
    return set(prompt_dependent.token)


def run_eviction(
    loaded: LoadedModel, batches: list[TokenBatch], settings: EvictionSettings
) -> tuple[Tables, Figures]:
    """Tables ``eviction`` (per condition) and ``eviction_sequences`` (per sequence)."""
    require_causal(loaded)
    sequences = long_sequences(loaded, batches, settings)
    labels = census_sink_labels(
        loaded,
        batches,
        SinkThresholds(sink=settings.sink_threshold, min_queries=settings.min_queries),
    )
    per_sequence = eviction_perplexity(loaded, sequences, labels, settings)
    summary = summarise_eviction(per_sequence).assign(prompt_sink_labels=" ".join(sorted(labels)))
    return {"eviction": summary, "eviction_sequences": per_sequence}, {
        "eviction": measures_plots.eviction_figure(summary)
    }


def run_gu_sink(
    loaded: LoadedModel, batches: list[TokenBatch], settings: GuSettings
) -> tuple[Tables, Figures]:
    """Tables ``gu_sink`` (one row) and ``gu_sink_layers``."""
    row, layers = gu_sink_table(loaded, batches, settings)
    return {"gu_sink": row, "gu_sink_layers": layers}, {
        "gu_sink": measures_plots.gu_figure(row, layers)
    }


def run_long_context(
    loaded: LoadedModel, _batches: list[TokenBatch], settings: LongContextSettings
) -> tuple[Tables, Figures]:
    """Tables ``long_context_sinks``, ``long_context_share``, ``long_context_variance`` and
    ``long_context_summary`` (one row per length); reads its own long text, not the prompts."""
    tables = long_context_profile(loaded, settings)
    tables["long_context_summary"] = summarise_long_context(tables).assign(model=loaded.name)
    return tables, {"long_context": measures_plots.long_context_figure(tables)}


RUNNERS = {
    "massive": (run_massive, MassiveSettings),
    "secondary": (run_secondary, SecondarySettings),
    "eviction": (run_eviction, EvictionSettings),
    "gu_sink": (run_gu_sink, GuSettings),
    "long_context": (run_long_context, LongContextSettings),
}
