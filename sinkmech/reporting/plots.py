"""Figures of the suite's tables (matplotlib, headless)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sinkmech.data.tokens import CONTENT, FIRST


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


def _head_labels(frame: pd.DataFrame) -> pd.Series:
    return frame["layer"].astype(str) + "." + frame["head"].astype(str)


def probe_summary_figure(tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Test accuracy (95% Wilson CI) of logistic truth probes per head and feature, and of the
    segment-identity probes against the majority class."""
    truth = tables["sentiment_probes" if "sentiment_probes" in tables else "truth_probes"]
    truth = truth[truth.probe == "logistic"].sort_values(
        ["head_role", "layer", "head"], ascending=[False, True, True]
    )
    truth = truth.assign(
        series=truth.feature.where(truth.labels == "true", truth.feature + " (shuffled)"),
        head_label=_head_labels(truth) + np.where(truth.head_role == "sink", "", "*"),
    )
    heads = truth.head_label.unique().tolist()
    segment = tables["segment_probes"]
    segment = segment[segment.skipped == ""] if "test_accuracy" in segment else segment.iloc[0:0]
    figure, axes = plt.subplots(
        1, 2, figsize=(max(10, 0.4 * len(heads) + 6), 4), width_ratios=[2, 1]
    )
    position = {label: i for i, label in enumerate(heads)}
    series = truth.series.unique().tolist()
    for k, name in enumerate(series):
        part = truth[truth.series == name]
        offset = (k - (len(series) - 1) / 2) * 0.8 / len(series)
        errors = [
            part.test_accuracy - part.test_accuracy_lo,
            part.test_accuracy_hi - part.test_accuracy,
        ]
        axes[0].errorbar(
            [position[label] + offset for label in part.head_label],
            part.test_accuracy,
            yerr=errors,
            fmt="o",
            ms=3,
            label=name,
            alpha=0.85,
        )
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_xticks(range(len(heads)), heads, rotation=90, fontsize=7)
    axes[0].set(
        xlabel="layer.head (* = non-sink head)",
        ylabel="test accuracy, label vs other",
        ylim=(0.3, 1.02),
    )
    axes[0].legend(fontsize=7, ncol=2)
    axes[0].set_title(
        f"{'sentiment' if 'sentiment_probes' in tables else 'truth'} probes (logistic, 95% CI)"
    )
    if segment.empty:
        axes[1].text(
            0.5,
            0.5,
            "no head caught tokens\nfor two or more segments",
            ha="center",
            transform=axes[1].transAxes,
        )
    else:
        labels = _head_labels(segment.drop_duplicates(["layer", "head"])).tolist()
        for name, part in segment.groupby(
            segment.feature + np.where(segment.labels == "true", "", " (shuffled)")
        ):
            axes[1].plot(
                [labels.index(l) for l in _head_labels(part)], part.test_accuracy, "o", label=name
            )
        chance = segment.drop_duplicates(["layer", "head"])
        axes[1].plot(range(len(chance)), chance.chance, "k_", ms=12, label="majority class")
        axes[1].set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        axes[1].legend(fontsize=7)
    axes[1].set(xlabel="layer.head", ylabel="test accuracy, which sink caught it", ylim=(0, 1.02))
    axes[1].set_title("segment identity (logistic)")
    figure.suptitle(
        f"{truth.model.iloc[0] if len(truth) else ''}: do tags carry semantics? (Sec. 4.4)"
    )
    figure.tight_layout()
    return figure
