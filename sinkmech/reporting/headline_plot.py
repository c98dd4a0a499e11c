"""The side-by-side of units as a dot plot: one panel per headline number, one row per unit,
each value with its 95% interval, its null or control beside it and the baseline unit's value as
a line (``sinkmech.reporting.side_by_side`` builds the table it draws)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sinkmech.reporting.side_by_side import names_in_order

COLUMNS = 3


def headline_figure(long: pd.DataFrame, baseline: str | None = None) -> plt.Figure | None:
    """Dots with intervals per headline number and unit (``side_by_side``'s tidy table); the
    null as a grey cross; ``baseline``'s value as a dotted line. None when no number is defined."""
    names = [n for n in names_in_order(long) if long[long["name"] == n]["value"].notna().any()]
    if not names:
        return None
    units = list(dict.fromkeys(long.unit))
    rows = math.ceil(len(names) / COLUMNS)
    figure, axes = plt.subplots(
        rows,
        COLUMNS,
        figsize=(4.2 * COLUMNS, rows * (0.9 + 0.28 * len(units))),
        squeeze=False,
        sharey=True,
    )
    y = np.arange(len(units))
    for axis, name in zip(axes.flat, names):
        part = long[long["name"] == name].set_index("unit").reindex(units)
        below = (part["value"] - part["low"]).clip(lower=0).fillna(0)
        above = (part["high"] - part["value"]).clip(lower=0).fillna(0)
        axis.errorbar(part["value"], y, xerr=[below, above], fmt="o", color="tab:blue", capsize=2)
        axis.plot(part["null"], y, "x", color="0.5", label="null / control")
        if baseline in part.index and not math.isnan(part.loc[baseline, "value"]):
            axis.axvline(part.loc[baseline, "value"], color="tab:orange", linestyle=":")
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=8)
    for axis in axes.flat[len(names) :]:
        axis.set_visible(False)
    axes[0, 0].set_yticks(y, units)
    axes[0, 0].invert_yaxis()
    axes[0, 0].legend(fontsize=7, loc="best")
    note = f"dotted: baseline {baseline}; " if baseline else ""
    figure.suptitle(f"headline numbers per unit (95% intervals; {note}x: null or control)", size=10)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / figure.get_figheight()))
    return figure
