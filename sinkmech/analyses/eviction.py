"""StreamingLLM's sliding-window KV cache with the first tokens or the census's
prompt-dependent sinks kept (causal models only)."""

from __future__ import annotations

from sinkmech.analyses.measures_section import MEASURES
from sinkmech.analyses.registry import Analysis, Context, Tables, register
from sinkmech.data.tokens import PUNCTUATION, SPECIAL
from sinkmech.mechanism.eviction import (
    EvictionSettings,
    eviction_perplexity,
    long_sequences,
    require_causal,
    summarise_eviction,
)
from sinkmech.mechanism.sinks import CENSUS, detect_sinks
from sinkmech.reporting import measures_plots


def run(context: Context, settings: EvictionSettings) -> Tables:
    loaded = context.model("eviction")
    require_causal(loaded)
    sequences = long_sequences(loaded, context.batches, settings)
    table, _ = detect_sinks(context.model("census"), context.batches, settings.sinks)
    prompt_dependent = table[table.sink_kind.isin([PUNCTUATION, SPECIAL]) & table.is_sink]
    labels = set(prompt_dependent.token)
    per_sequence = eviction_perplexity(loaded, sequences, labels, settings)
    summary = summarise_eviction(per_sequence).assign(prompt_sink_labels=" ".join(sorted(labels)))
    return {"eviction": summary, "eviction_sequences": per_sequence}


EVICTION = register(
    Analysis(
        name="eviction",
        run=run,
        tables=("eviction", "eviction_sequences"),
        needs={"census": CENSUS, "eviction": frozenset({"edits", "logits"})},
        settings=EvictionSettings,
        figures=lambda tables, sinks: {
            "eviction": measures_plots.eviction_figure(tables["eviction"])
        },
        report=(MEASURES,),
        lengths=lambda settings, loaded: [min(settings.seq_len, loaded.max_length)],
    )
)
