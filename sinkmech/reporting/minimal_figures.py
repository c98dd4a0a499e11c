"""Figures of a minimal-problem sweep: each emergence metric against training step, beside the
task loss, one line per seed, one figure per variant (the paper's Sec. 7 emergence figure,
reproduced with the suite's metrics); a sweep cell's runs; the success heatmap."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

# (column, title, reference columns drawn dashed)
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "task loss (eval, log)", ("baseline_ignore_sep", "baseline_constant")),
    ("catch_sep_l0", "catch: [SEP] sink score, layer 0", ()),
    (
        "tag_variance_explained",
        "tag: variance explained (rank 1)",
        ("pca_variance_explained", "random_variance_explained"),
    ),
    ("release_mass_l1", "release: layer-1 mass on segment", ()),
    ("loss_tag_removed", "loss with tag removed (log)", ("loss_random_edit",)),
    ("probe_after_sep_resid", "probe 'after [SEP]' (resid)", ("probe_after_sep_resid_minus_tag",)),
)
LOG_PANELS = {"loss", "loss_tag_removed"}


def emergence_figure(
    metrics: pd.DataFrame, train_loss: pd.DataFrame, verdicts: pd.DataFrame, variant: str
) -> plt.Figure:
    """Panels of ``PANELS`` for one variant; seeds whose final checkpoint emerged are solid."""
    frame = metrics[metrics.variant == variant]
    emerged = dict(
        zip(
            verdicts[verdicts.variant == variant].seed,
            verdicts[verdicts.variant == variant].emerged,
        )
    )
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (seed, run) in enumerate(frame.groupby("seed")):
        colour = colours[index % len(colours)]
        style = "-" if emerged.get(seed, False) else ":"
        for axis, (column, _, references) in zip(axes, PANELS):
            axis.plot(
                run.step, run[column], style, color=colour, marker="o", ms=3, label=f"seed {seed}"
            )
            for reference in references:
                axis.plot(run.step, run[reference], "--", color=colour, alpha=0.35, lw=0.8)
        loss = train_loss[(train_loss.variant == variant) & (train_loss.seed == seed)]
        axes[0].plot(loss.step, loss.loss, "-", color=colour, alpha=0.3, lw=0.8)
    for axis, (column, title, references) in zip(axes, PANELS):
        axis.set_title(
            title + (f"\n(dashed: {', '.join(references)})" if references else ""), fontsize=8
        )
        axis.set_xlabel("training step")
        if column in LOG_PANELS:
            axis.set_yscale("log")
    axes[0].legend(fontsize=6)
    figure.suptitle(
        f"minimal problem, variant {variant}: solid = emerged at the last checkpoint, dotted = not"
    )
    figure.tight_layout()
    return figure


# Sweep (issue 15): per-cell panels from ``metrics.native_metrics`` columns.
SWEEP_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "task loss (eval, log)", ("baseline_ignore_sep",)),
    ("catch_sep_l0", "catch: [SEP] sink score, layer 0", ("catch_bos_l0",)),
    ("tag_variance_share", "tag: share of layer-0 output variance", ()),
    ("release_mass_l1", "release: layer-1 mass on segment", ()),
    ("loss_tag_removed", "tag removed (log)", ("loss_orth_edit", "loss_random_edit")),
    ("loss_tag_only", "tag patched in alone (log)", ()),
)
SWEEP_LOG_PANELS = {"loss", "loss_tag_removed", "loss_tag_only"}
CRITERIA = (
    "solved",
    "catch",
    "release",
    "tag_needed",
    "emerged",
    "tag_beats_orth",
    "tag_restores",
    "emerged_strict",
)


def sweep_cell_figure(metrics: pd.DataFrame, verdicts: pd.DataFrame, cell: str) -> plt.Figure:
    """Metrics over training steps of one sweep cell, one line per seed: solid = emerged under the
    strict criterion at the last checkpoint, dashed = old criterion only, dotted = neither."""
    frame = metrics[metrics.cell == cell]
    final = verdicts[verdicts.cell == cell].set_index("seed")
    figure, axes = plt.subplots(1, len(SWEEP_PANELS), figsize=(3.6 * len(SWEEP_PANELS), 3.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (seed, run) in enumerate(frame.groupby("seed")):
        colour = colours[index % len(colours)]
        style = (
            "-"
            if final.emerged_strict.get(seed, False)
            else "--"
            if final.emerged.get(seed, False)
            else ":"
        )
        for axis, (column, _, references) in zip(axes, SWEEP_PANELS):
            axis.plot(run.step, run[column], style, color=colour, lw=1, label=f"seed {seed}")
            for reference in references:
                axis.plot(run.step, run[reference], "-", color=colour, alpha=0.25, lw=0.6)
    for axis, (column, title, references) in zip(axes, SWEEP_PANELS):
        axis.set_title(
            title + (f"\n(faint: {', '.join(references)})" if references else ""), fontsize=7
        )
        axis.set_xlabel("training step", fontsize=7)
        axis.tick_params(labelsize=6)
        if column in SWEEP_LOG_PANELS:
            axis.set_yscale("log")
    axes[0].legend(fontsize=5, ncol=2)
    n = len(final)
    figure.suptitle(
        f"cell {cell}: emerged {int(final.emerged.sum())}/{n} (old), "
        f"{int(final.emerged_strict.sum())}/{n} (strict); solid = strict, dashed = old only",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def success_heatmap(verdicts: pd.DataFrame, cells: list[str]) -> plt.Figure:
    """Share of seeds meeting each criterion at the last checkpoint, one row per cell (k/n)."""
    shares = verdicts.groupby("cell")[list(CRITERIA)].mean().reindex(cells)
    counts = verdicts.groupby("cell")[list(CRITERIA)].sum().reindex(cells)
    runs = verdicts.groupby("cell").size().reindex(cells)
    figure, axis = plt.subplots(figsize=(1.0 * len(CRITERIA) + 2.5, 0.35 * len(cells) + 1.5))
    image = axis.imshow(shares.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, cell in enumerate(cells):
        for j, criterion in enumerate(CRITERIA):
            if pd.notna(counts.loc[cell, criterion]):
                share = shares.loc[cell, criterion]
                axis.text(
                    j,
                    i,
                    f"{int(counts.loc[cell, criterion])}/{int(runs[cell])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if share > 0.6 else "white",
                )
    axis.set_xticks(range(len(CRITERIA)), CRITERIA, rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(len(cells)), cells, fontsize=8)
    figure.colorbar(image, ax=axis, label="share of seeds (last checkpoint)")
    axis.set_title("minimal problem sweep: criteria met per cell", fontsize=9)
    figure.tight_layout()
    return figure
