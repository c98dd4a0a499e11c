"""StreamingLLM's sliding-window KV cache with the first tokens or the census's
prompt-dependent sinks kept (causal models only)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from sinkmech.analyses.headlines import measure
from sinkmech.analyses.measures_section import MEASURES
from sinkmech.analyses.registry import (
    Analysis,
    Context,
    Headline,
    Headlines,
    Tables,
    register,
)
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
from sinkmech.reporting import statistics as st
from sinkmech.reporting.verdicts import Missing, need


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


def ppl_ratio(condition: str, control: str) -> Callable[[Tables], Headline]:
    """Perplexity under ``condition`` over full attention's (the summary's ``ppl_ratio_to_full``),
    with a t interval over sequences of the paired log ratio, beside ``control``'s ratio."""

    def compute(tables: Tables) -> Headline:
        sequences = need(tables, "eviction_sequences", ("sequence", "condition", "nll"))
        nll = sequences.pivot_table(index="sequence", columns="condition", values="nll")
        absent = {"full", condition, control} - set(nll.columns)
        if absent:
            raise Missing(f"`eviction_sequences` lacks condition(s) {sorted(absent)}")
        log_ratio = (nll[condition] - nll.full).to_numpy()
        interval = st.group_mean_ci(log_ratio, np.arange(log_ratio.size))
        null = float(np.exp((nll[control] - nll.full).mean()))
        unit = "sequences (t on the log ratio)"
        return Headline(*np.exp(interval), null, f"{control} (same cache budget)", unit)

    return compute


def headlines(tables: Tables) -> Headlines:
    """Perplexity ratios to full attention of the kept-sink caches, each beside its control."""
    return measure(
        tables,
        {
            "eviction/ppl_ratio_first": ppl_ratio("window+first", "window"),
            "eviction/ppl_ratio_first_prompt_sinks": ppl_ratio(
                "window+first+prompt_sinks", "window+first+random"
            ),
            "eviction/ppl_ratio_prompt_sinks": ppl_ratio("window+prompt_sinks", "window"),
        },
    )


EVICTION = register(
    Analysis(
        name="eviction",
        run=run,
        tables=("eviction", "eviction_sequences"),
        needs={"census": CENSUS, "eviction": frozenset({"masks", "logits"})},
        settings=EvictionSettings,
        figures=lambda tables, sinks: {
            "eviction": measures_plots.eviction_figure(tables["eviction"])
        },
        report=(MEASURES,),
        lengths=lambda settings, loaded: [min(settings.seq_len, loaded.max_length)],
        headlines=headlines,
    )
)
