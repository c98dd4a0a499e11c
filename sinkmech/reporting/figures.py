"""The paper's figures drawn from the suite's tables, across models (matplotlib, headless).

Each function takes concatenated tables (one ``model`` column) and returns a figure, or None when
the tables it needs are absent, so a report never draws an empty axis. Controls are drawn beside
every statistic: random and non-sink directions for variance, position / country / shuffled
baselines for probes, the base or non-QK-norm model for the paired sink counts.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sinkmech.mechanism.thresholds import SINK_THRESHOLD
from sinkmech.reporting import ledger, matrix
from sinkmech.reporting.claims_sinks import matched_pairs
from sinkmech.reporting.plots import sink_heatmap

# Truth-probe features in the order of the paper's Table 1, then our controls.
# (feature, labels) bars: the tag, the tag-free part, the residual, and the ledger's controls.
PROBE_FEATURES = (
    ("tag", "true"),
    ("no_tag", "true"),
    ("resid", "true"),
    *ledger.PROBE_CONTROLS,
)
VARIANCE_CONTROLS = {
    "random_variance_explained": ("random direction", "tab:blue", "."),
    ledger.VARIANCE_CONTROL: ("non-sink keys", "tab:green", "x"),
    "pca_variance_explained": ("top PC (upper bound)", "k", "_"),
}
EMERGENCE_METRICS = {
    "catch_sep_l0": "[SEP] sink score, layer 0 (catch)",
    "tag_variance_explained": "variance explained by the tag",
    "release_mass_l1": "layer-1 mass on the segment (release)",
}


def sink_heatmaps(sinks: pd.DataFrame, thresholds: dict[str, float]) -> dict[str, plt.Figure]:
    """Fig. 1 style: per model, layers x heads of the first token's and punctuation's scores,
    each against the sink threshold its unit ran with (``thresholds`` by model label)."""
    if sinks.empty:
        return {}
    return {
        model: sink_heatmap(frame, thresholds.get(model, SINK_THRESHOLD))
        for model, frame in sinks.groupby("model")
    }


def variance_figure(variance: pd.DataFrame) -> plt.Figure | None:
    """Fig. 3: per model, rank-1 variance explained per head by the tag against its controls."""
    if variance.empty or "tag_variance_explained" not in variance:
        return None
    rank1 = variance[variance["rank"] == 1].dropna(subset=["tag_variance_explained"])
    models = sorted(rank1.model.unique())
    if not models:
        return None
    figure, axes = plt.subplots(
        len(models), 1, figsize=(9, 2.4 * len(models)), squeeze=False, sharey=True
    )
    for axis, model in zip(axes[:, 0], models):
        frame = rank1[rank1.model == model].sort_values("tag_variance_explained", ascending=False)
        x = np.arange(len(frame))
        axis.bar(x, frame.tag_variance_explained, color="tab:orange", label="tag direction")
        for column, (label, color, marker) in VARIANCE_CONTROLS.items():
            if column in frame:
                axis.plot(x, frame[column], marker, color=color, label=label, linestyle="none")
        axis.set(ylim=(0, 1), ylabel="variance explained", title=model)
    axes[-1, 0].set_xlabel("sink head (sorted by tag variance explained)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def probe_figure(probes: pd.DataFrame) -> plt.Figure | None:
    """Table 1 as bars: test accuracy of the best sink head's probes (chosen by cross-validated
    tag accuracy) per feature, with 95% intervals and the chance line."""
    need = {"feature", "labels", "probe", "head_role", "cv_accuracy", "test_accuracy"}
    if probes.empty or not need <= set(probes):
        return None
    frame = probes[(probes.probe == "logistic") & (probes.head_role == "sink")]
    tags = frame[(frame.feature == "tag") & (frame.labels == "true")]
    if tags.empty:
        return None
    models = sorted(tags.model.unique())
    figure, axis = plt.subplots(figsize=(max(7, 2.0 * len(models)), 4.2))
    width = 0.8 / len(PROBE_FEATURES)
    for m, model in enumerate(models):
        best = tags[tags.model == model].sort_values("cv_accuracy").iloc[-1]
        head = frame[
            (frame.model == model) & (frame.layer == best.layer) & (frame["head"] == best["head"])
        ]
        for f, (feature, labels) in enumerate(PROBE_FEATURES):
            row = head[(head.feature == feature) & (head.labels == labels)]
            if row.empty:
                continue
            row = row.iloc[0]
            error = [
                [row.test_accuracy - row.test_accuracy_lo],
                [row.test_accuracy_hi - row.test_accuracy],
            ]
            axis.bar(
                m + (f - len(PROBE_FEATURES) / 2 + 0.5) * width,
                row.test_accuracy,
                width,
                yerr=error,
                color=plt.cm.tab10(f),
                label=(feature if labels == "true" else f"{feature} ({labels})")
                if m == 0
                else None,
            )
        axis.hlines(best.chance, m - 0.4, m + 0.4, colors="k", linestyles="dashed")
    axis.axhspan(0.925, 0.995, color="0.9", zorder=0, label="paper's tag range")
    labels = [matrix.model_label(model).replace(", ", ",\n") for model in models]
    axis.set_xticks(range(len(models)), labels, fontsize=8)
    axis.set(ylim=(0, 1), ylabel="test accuracy (truth)")
    axis.set_title("truth probes of the best sink head (dashed: chance)", pad=34)
    # Above the axes, never over the bars.
    axis.legend(fontsize=7, ncol=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    figure.tight_layout()
    return figure


def paired_sinks_figure(sinks: pd.DataFrame, summary: pd.DataFrame, by: str) -> plt.Figure | None:
    """Fig. 5 (``by="role"``: base vs reasoning) or Sec. 6 (``by="qk_norm"``): the distribution of
    sinks per head in each model of a matched pair."""
    if sinks.empty or summary.empty or by not in summary or "pair" not in summary:
        return None
    pairs = matched_pairs(summary, by)
    if not pairs:
        return None
    figure, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 3.5), squeeze=False)
    for axis, (pair, group) in zip(axes[0], pairs):
        counts = {}
        for _, row in group.sort_values(by).iterrows():
            frame = sinks[sinks.model == row.model]
            counts[f"{row.model} ({by}={row[by]})"] = frame.groupby(["layer", "head"]).is_sink.sum()
        top = int(max(c.max() for c in counts.values())) + 1
        for label, count in counts.items():
            axis.hist(
                count,
                bins=np.arange(top + 1) - 0.5,
                alpha=0.6,
                label=f"{label}: {count.mean():.2f}",
            )
        axis.set(title=str(pair), xlabel="sinks per head", ylabel="heads")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def emergence_figure(emergence: pd.DataFrame) -> plt.Figure | None:
    """Fig. 7: the minimal problem's catch, tag and release over training, one line per seed,
    beside the loss relative to the [SEP]-blind baseline."""
    if emergence.empty or not {"step", "variant", "seed", "loss"} <= set(emergence):
        return None
    metrics = {k: v for k, v in EMERGENCE_METRICS.items() if k in emergence}
    variants = sorted(emergence.variant.unique())
    columns = 1 + len(metrics)
    figure, axes = plt.subplots(
        len(variants), columns, figsize=(3.6 * columns, 2.8 * len(variants)), squeeze=False
    )
    for row, variant in enumerate(variants):
        frame = emergence[emergence.variant == variant]
        for _, run in frame.groupby("seed"):
            axes[row, 0].semilogy(run.step, run.loss / run.baseline_ignore_sep, color="0.4", lw=0.8)
            for col, metric in enumerate(metrics, start=1):
                axes[row, col].plot(run.step, run[metric], color="tab:orange", lw=0.8)
        axes[row, 0].set(title=f"{variant}: loss / SEP-blind baseline", xlabel="step")
        for col, (metric, label) in enumerate(metrics.items(), start=1):
            if "random_variance_explained" in frame and metric == "tag_variance_explained":
                mean = frame.groupby("step").random_variance_explained.mean()
                axes[row, col].plot(mean.index, mean, "b--", lw=1, label="random direction")
                axes[row, col].legend(fontsize=7)
            axes[row, col].set(title=label, xlabel="step", ylim=(0, 1.05))
    figure.tight_layout()
    return figure
