"""Figures of the suite's tables (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sinkmech.data.tokens import CONTENT, FIRST  # noqa: E402


def _grid(frame: pd.DataFrame, value: str) -> np.ndarray:
    return frame.pivot_table(index="layer", columns="head", values=value, aggfunc="max").to_numpy()


def sink_heatmap(table: pd.DataFrame, threshold: float) -> plt.Figure:
    """Layers x heads: mean score of the first token, and the best prompt-dependent sink."""
    first = table[table.sink_kind == FIRST]
    prompt_dependent = table[~table.sink_kind.isin([FIRST, CONTENT])]
    panels = [("first token", first)] + (
        [("best punctuation / special", prompt_dependent)] if len(prompt_dependent) else []
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, (title, frame) in zip(axes[0], panels):
        image = axis.imshow(
            _grid(frame, "mean_score"), vmin=0, vmax=1, cmap="viridis", aspect="auto"
        )
        axis.set(title=f"{title} (sink if > {threshold})", xlabel="head", ylabel="layer")
        figure.colorbar(image, ax=axis, label="mean attention received")
    figure.suptitle(f"{table.model.iloc[0]}: sink scores")
    return figure


def variance_figure(variance: pd.DataFrame) -> plt.Figure:
    """Per head, rank-1 variance explained: tag directions vs random vs top principal direction."""
    rank1 = variance[variance["rank"] == 1].sort_values(["layer", "head"])
    x = np.arange(len(rank1))
    figure, axis = plt.subplots(figsize=(max(6, 0.12 * len(x)), 3.5))
    axis.plot(x, rank1.pca_variance_explained, "k_", label="top PC (upper bound)")
    axis.bar(x, rank1.tag_variance_explained.fillna(0), color="tab:orange", label="tag direction")
    axis.plot(x, rank1.random_variance_explained, "b.", label="random direction")
    axis.set(xlabel="head (ordered by layer)", ylabel="variance explained (rank 1)", ylim=(0, 1))
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(f"{rank1.model.iloc[0]}: head-output variance explained by the tag")
    return figure


def intervention_figure(interventions: pd.DataFrame) -> plt.Figure:
    """Mean effect of each intervention on output KL (where the head is trained), the final
    residual stream and downstream attention."""
    columns = ["kl", "final_resid_change", "downstream_attention_change"]
    means = interventions.groupby("intervention")[columns].mean().dropna(axis=1, how="all")
    figure, axes = plt.subplots(
        1, len(means.columns), figsize=(4.5 * len(means.columns), 3.5), squeeze=False
    )
    axes = axes[0]
    for axis, column in zip(axes, means.columns):
        means[column].plot.bar(ax=axis, color="tab:purple")
        axis.set(title=column.replace("_", " "), xlabel="")
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle(f"{interventions.model.iloc[0]}: tag ablation and patching (top tag heads)")
    figure.tight_layout()
    return figure
