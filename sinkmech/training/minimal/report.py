"""Tables and figures of a minimal-problem sweep: each emergence metric against training step,
beside the task loss, one line per seed, one figure per variant (the paper's Sec. 7 emergence
figure, reproduced with the suite's metrics)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

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


def binned_history(history: list[float], bin_size: int) -> pd.DataFrame:
    """Training loss averaged over consecutive bins of ``bin_size`` steps (end step of each bin)."""
    frame = pd.DataFrame({"loss": history})
    frame["bin"] = frame.index // bin_size
    binned = frame.groupby("bin").loss.mean().reset_index()
    binned["step"] = ((binned.bin + 1) * bin_size).clip(upper=len(history))
    return binned[["step", "loss"]]


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
