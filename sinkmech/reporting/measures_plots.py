"""Figures of the side-by-side sink measures (issue 19), in the style of ``plots.py``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def massive_figure(summary: pd.DataFrame, edits: pd.DataFrame) -> plt.Figure:
    """Per layer, the largest |activation| over the median (log scale, with Sun et al.'s 1,000x
    line); beside it, the loss change of each intervention."""
    panels = 2 if not edits.empty and edits.delta_loss.notna().any() else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    axis = axes[0, 0]
    axis.semilogy(summary.layer, summary.top_ratio, "o-", color="tab:red", label="top / median")
    axis.axhline(1000, color="grey", ls="--", lw=1, label="Sun et al. 1,000x")
    axis.set(xlabel="layer", ylabel="largest |h| / median |h|", title="massive activations")
    axis.legend(fontsize=8)
    if panels == 2:
        means = edits.groupby("intervention").delta_loss.mean()
        means.reindex(["zero", "mean", "random_zero"]).plot.bar(ax=axes[0, 1], color="tab:purple")
        axes[0, 1].set(
            title=f"edit at layer {int(edits.layer.iloc[0])} ({edits.target.iloc[0]})",
            ylabel="next-token loss change",
            xlabel="",
        )
        axes[0, 1].tick_params(axis="x", rotation=0)
    figure.suptitle(f"{summary.model.iloc[0]}: massive activations")
    figure.tight_layout()
    return figure


def secondary_figure(overlap: pd.DataFrame) -> plt.Figure:
    """Per layer: sinks found by both methods, by similarity only, by attention only (stacked), the
    overlap expected by chance and the similarity-to-second-token null."""
    figure, axis = plt.subplots(figsize=(6, 3.8))
    layers = overlap.layer.to_numpy()
    bottom = np.zeros(len(layers))
    for column, colour in [
        ("n_both", "tab:green"),
        ("n_similarity_only", "tab:blue"),
        ("n_attention_only", "tab:orange"),
    ]:
        values = overlap[column].to_numpy()
        axis.bar(layers, values, bottom=bottom, color=colour, label=column.removeprefix("n_"))
        bottom += values
    axis.plot(layers, overlap.expected_both_if_independent, "k_", ms=14, label="both by chance")
    axis.plot(layers, overlap.n_similar_to_second, "kx", label="similar to 2nd token (null)")
    axis.set(
        xlabel="layer", ylabel="token positions", title=f"{overlap.model.iloc[0]}: secondary sinks"
    )
    axis.legend(fontsize=8)
    return figure


def eviction_figure(summary: pd.DataFrame) -> plt.Figure:
    """Perplexity of each cache condition relative to full attention, with standard errors."""
    figure, axis = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(summary))
    ratio_se = summary.ppl_ratio_to_full * summary.nll_se.fillna(0)  # delta method on exp(nll)
    axis.bar(x, summary.ppl_ratio_to_full, yerr=ratio_se, color="tab:cyan")
    axis.axhline(1.0, color="grey", ls="--", lw=1)
    axis.set_xticks(x, summary.condition, rotation=25, ha="right", fontsize=8)
    row = summary.iloc[0]
    axis.set(
        ylabel="perplexity / full attention",
        title=f"{row.model}: KV eviction (window {row.window}, {row.n_first} first)",
    )
    return figure


def gu_figure(row: pd.DataFrame, layers: pd.DataFrame) -> plt.Figure:
    """Per layer, the share of heads whose mean attention to the first (and, null, second) token
    exceeds eps; Sink_eps with its interval in the title."""
    figure, axis = plt.subplots(figsize=(6, 3.8))
    axis.plot(layers.layer, layers.first_token_frac_above_eps, "o-", label="first token")
    axis.plot(layers.layer, layers.second_token_frac_above_eps, "x--", label="second token (null)")
    r = row.iloc[0]
    axis.set(
        xlabel="layer",
        ylabel=f"heads above eps = {r.eps}",
        ylim=(-0.02, 1.02),
        title=f"{r.model} ({r.prompt_set}): Sink_eps = {r.sink_eps_pct:.1f}% "
        f"[{r.ci_low_pct:.1f}, {r.ci_high_pct:.1f}]",
    )
    axis.legend(fontsize=8)
    return figure


def long_context_figure(tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Left: attention share of the first token by query position, one line per length, beside
    uniform attention's share. Right: first-token score and its null against length."""
    share = tables["long_context_share"]
    share = share[share.n_first == 1]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for length, group in share.groupby("seq_len"):
        by_bin = group.groupby("first_position")[["share", "uniform_share"]].mean()
        line = left.plot(by_bin.index + 1, by_bin.share, "o-", label=f"T = {length}")[0]
        left.plot(by_bin.index + 1, by_bin.uniform_share, ":", color=line.get_color())
    left.set(
        xscale="log",
        yscale="log",
        xlabel="query position + 1 (bin start)",
        ylabel="attention on the first token",
        title="first-token share (dotted: uniform)",
    )
    left.legend(fontsize=7)
    sinks = tables["long_context_sinks"].groupby("seq_len")[["mean_score", "null_mean_score"]]
    means = sinks.mean()
    right.plot(means.index, means.mean_score, "o-", label="first-token score")
    right.plot(means.index, means.null_mean_score, "x--", label="uniform null")
    right.set(
        xscale="log",
        yscale="log",
        xlabel="tokens",
        ylabel="mean over heads",
        title="first-token sink score vs length",
    )
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure
