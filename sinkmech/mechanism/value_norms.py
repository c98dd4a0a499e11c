"""Value norms of sinks: "do-nothing" sinks versus sinks that write (issue 27, item 6).

A sink whose value v_s W_O is negligible only absorbs attention (a "do-nothing" sink, a value-state
drain: Fesser et al., arXiv 2606.08105; Guo et al., arXiv 2410.13835); one with an ordinary or
large value writes the tag of arXiv 2502.00919 Sec. 3 into every query that attends to it (whether
that write is a low-rank broadcast is the ``variance`` table's question). Per head:

    value_norm_ratio = median ||v_s W_O|| over sink keys / median ||v_j W_O|| over non-sink keys

beside its null, the same ratio for random non-sink keys (as many per prompt and head as the head
has sinks, ``tags.control_keys``), drawn ``n_draws`` times: its median and 5-95% range.
``value_vs_null`` says where the sinks fall: ``below`` (do-nothing), ``within`` or ``above``.
Sinks are the census's per-prompt sinks (``tags.sink_mask`` with the shared thresholds). Norms are
of what a key offers before any output gate (a gated head scales it per query). A learned sink
(GPT-OSS, Granite-SWA) has value 0 by construction: it is a do-nothing sink by definition, and its
mass is in the census (``learned_sinks``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from sinkmech.attention.hooks import (
    expand_kv_heads,
    gather_per_layer,
    output_weights,
    pattern_name,
    run_hooked,
    value_name,
)
from sinkmech.data.prompts import TokenBatch
from sinkmech.mechanism.sinks import SinkThresholds, key_null, layer_windows
from sinkmech.mechanism.tags import control_keys, sink_mask
from sinkmech.models import LoadedModel

N_DRAWS = 20  # draws of random non-sink keys for the null's median and 5-95% range
NULL_QUANTILES = (0.05, 0.95)


def value_output_norms(
    values: Float[torch.Tensor, "batch key kv_head d_head"],
    w_o: Float[torch.Tensor, "head d_head d_model"],
) -> Float[torch.Tensor, "batch head key"]:
    """||v_k W_O[h]|| of every key and head (kv heads expanded)."""
    expanded = expand_kv_heads(values.float(), w_o.shape[0])
    return torch.einsum("bkhd,hdm->bhkm", expanded, w_o.float()).norm(dim=-1)


def ratio_row(sink: np.ndarray, nonsink: np.ndarray, controls: list[np.ndarray]) -> dict:
    """One head's diagnostic from its sink, non-sink and per-draw control key norms."""
    if len(sink) == 0 or len(nonsink) == 0:
        return {"n_sink_keys": len(sink), "value_vs_null": "no_sinks"}
    base = float(np.median(nonsink))
    ratio = float(np.median(sink)) / base
    null = np.array([np.median(c) / base for c in controls if len(c)])
    low, high = np.quantile(null, NULL_QUANTILES) if len(null) else (np.nan, np.nan)
    where = "below" if ratio < low else "above" if ratio > high else "within"
    return {
        "n_sink_keys": len(sink),
        "sink_value_norm": float(np.median(sink)),
        "nonsink_value_norm": base,
        "value_norm_ratio": ratio,
        "null_value_norm_ratio": float(np.median(null)) if len(null) else np.nan,
        "null_ratio_low": float(low),
        "null_ratio_high": float(high),
        "value_vs_null": where if len(null) else "no_null",
    }


def value_norm_table(
    loaded: LoadedModel,
    batches: Sequence[TokenBatch],
    thresholds: SinkThresholds,
    n_draws: int = N_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (layer, head): sink and non-sink value norms, their ratio and its null (module doc)."""
    windows = layer_windows(loaded)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    norms: dict[tuple[int, int, str], list[np.ndarray]] = defaultdict(list)
    for batch in batches:
        mask = batch.attention_mask.to(loaded.device)

        def measure(layer: int, acts: dict[str, torch.Tensor]) -> None:
            here = mask.to(acts["pattern"].device)
            null = key_null(here, loaded.causal, windows[layer])
            sinks = sink_mask(
                acts["pattern"],
                here,
                loaded.causal,
                thresholds.sink,
                thresholds.min_queries,
                null_margin=thresholds.null_margin,
                window=windows[layer],
                null=null,
            )
            eligible = ~sinks & (here.bool() & (null.n_visible >= thresholds.min_queries))[:, None]
            key_norms = value_output_norms(acts["values"], output_weights(loaded, layer))
            sets = {"sink": sinks, "nonsink": eligible}
            for draw in range(n_draws):
                sets[f"control{draw}"] = control_keys(
                    sinks, here, null.n_visible, thresholds.min_queries, generator
                )
            for name, keys in sets.items():
                for head in range(loaded.n_heads):
                    norms[layer, head, name].append(key_norms[:, head][keys[:, head]].cpu().numpy())

        names = {"pattern": pattern_name, "values": value_name}
        run_hooked(loaded, batch, gather_per_layer(range(loaded.n_layers), names, measure))
    rows = []
    for layer in range(loaded.n_layers):
        for head in range(loaded.n_heads):
            joined = {
                name: np.concatenate(norms[layer, head, name])
                for name in ("sink", "nonsink", *(f"control{d}" for d in range(n_draws)))
            }
            controls = [joined[f"control{d}"] for d in range(n_draws)]
            row = ratio_row(joined["sink"], joined["nonsink"], controls)
            rows.append({"model": loaded.name, "layer": layer, "head": head, **row})
    return pd.DataFrame(rows)
