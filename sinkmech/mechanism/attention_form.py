"""Per-head table of a model's attention form (issue 27): its learned sink and output gate, with
the quantities each defines, and NaN where the form has none (the form columns say which).

- ``learned_sink_form`` / ``sink_logit`` / ``learned_sink_mass``: GPT-OSS's virtual key or
  Granite-SWA's output scale, the logit s_h and the mean over prompts of the mean mass
  sigmoid(s_h - LSE_i) (the census's ``learned`` rows, ``learned_sinks``);
- ``gate_form`` / ``mean_gate`` / ``closed_gate_share``: the sigmoid output gate of Qwen3-Next and
  Qwen3.5 (Qiu et al., arXiv 2505.06708), its mean over real tokens and coordinates, and the share
  of gate values below ``CLOSED_GATE`` (a head that mostly writes nothing, a sink-free way to
  do what a do-nothing sink does).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sinkmech.attention.hooks import gate_name, head_gate, run_hooked
from sinkmech.data.prompts import TokenBatch
from sinkmech.data.tokens import LEARNED
from sinkmech.models import LoadedModel

CLOSED_GATE = 0.1  # a gate below this lets less than a tenth of the head's output through


def gate_statistics(loaded: LoadedModel, batches: Sequence[TokenBatch]) -> pd.DataFrame:
    """Per (layer, head): ``mean_gate`` and ``closed_gate_share`` over real tokens and
    coordinates (the gate's own axis: d_head or 1)."""
    sums = torch.zeros(loaded.n_layers, 3, loaded.n_heads, dtype=torch.float64)
    for batch in batches:
        real = batch.attention_mask.bool()

        def reduce(layer: int):
            def hook(gate: torch.Tensor, hook: object) -> None:
                g = head_gate(gate, loaded.n_heads)[real.to(gate.device)]  # [token, head, d]
                sums[layer, 0] += g.sum((0, 2)).double().cpu()
                sums[layer, 1] += (g < CLOSED_GATE).sum((0, 2)).double().cpu()
                sums[layer, 2] += g.shape[0] * g.shape[2]

            return hook

        run_hooked(loaded, batch, [(gate_name(l), reduce(l)) for l in range(loaded.n_layers)])
    layer, head = np.meshgrid(range(loaded.n_layers), range(loaded.n_heads), indexing="ij")
    return pd.DataFrame(
        {
            "layer": layer.ravel(),
            "head": head.ravel(),
            "mean_gate": (sums[:, 0] / sums[:, 2]).ravel().numpy(),
            "closed_gate_share": (sums[:, 1] / sums[:, 2]).ravel().numpy(),
        }
    )


def attention_form_table(
    loaded: LoadedModel, batches: Sequence[TokenBatch], census: pd.DataFrame
) -> pd.DataFrame:
    """One row per (layer, head) with the form columns and their quantities (module doc);
    ``census`` is the sink census table (its ``learned`` rows give the learned sink's mass)."""
    layer, head = np.meshgrid(range(loaded.n_layers), range(loaded.n_heads), indexing="ij")
    table = pd.DataFrame(
        {
            "model": loaded.name,
            "layer": layer.ravel(),
            "head": head.ravel(),
            "learned_sink_form": loaded.learned_sink,
            "gate_form": loaded.gate,
        }
    )
    learned = census[census.sink_kind == LEARNED] if "sink_kind" in census else census.iloc[:0]
    if len(learned):
        columns = learned[["layer", "head", "sink_logit", "mean_score"]]
        table = table.merge(columns.rename(columns={"mean_score": "learned_sink_mass"}), "left")
    else:
        table = table.assign(sink_logit=np.nan, learned_sink_mass=np.nan)
    if loaded.gate != "none":
        table = table.merge(gate_statistics(loaded, batches), "left", on=["layer", "head"])
    else:
        table = table.assign(mean_gate=np.nan, closed_gate_share=np.nan)
    return table
