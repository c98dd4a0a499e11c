"""The training-loss history of a minimal-problem run, binned for its tables and figures."""

from __future__ import annotations

import pandas as pd


def binned_history(history: list[float], bin_size: int) -> pd.DataFrame:
    """Training loss averaged over consecutive bins of ``bin_size`` steps (end step of each bin)."""
    frame = pd.DataFrame({"loss": history})
    frame["bin"] = frame.index // bin_size
    binned = frame.groupby("bin").loss.mean().reset_index()
    binned["step"] = ((binned.bin + 1) * bin_size).clip(upper=len(history))
    return binned[["step", "loss"]]
