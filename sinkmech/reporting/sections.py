"""The report's tables built from every complete unit's tables: one function per section, each
registered with the analysis whose tables it reads (``sinkmech.analyses``)."""

from __future__ import annotations

import pandas as pd

META = ["experiment", "model", "family", "qk_norm", "role", "pair"]


def unit_models(labels: pd.Series) -> pd.Series:
    """Unit labels without their overrides: ``ladder_s_gated@ctr.value_norms=true`` ->
    ``ladder_s_gated``."""
    return labels.astype(str).str.split("@").str[0]


def sink_section(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty:
        return summary
    out = summary.copy()
    out["first_token_sink_share"] = out.first_token_sink_heads / out.n_heads
    out["prompt_dependent_sink_share"] = out.prompt_dependent_sink_heads / out.n_heads
    columns = [c for c in META if c in out] + [
        "n_heads",
        "first_token_sink_share",
        "prompt_dependent_sink_share",
        "distinct_sink_labels_per_head",
        "sink_occurrences_per_prompt_head",
        "sink_eps_gu",
        "first_token_null",
        "n_short_prompts",
    ]
    return out[[c for c in columns if c in out]].sort_values(["experiment", "model"])


def variance_section(variance: pd.DataFrame) -> pd.DataFrame:
    if variance.empty:
        return variance
    rank1 = variance[variance["rank"] == 1]
    grouped = rank1.groupby(["experiment", "model"])
    return grouped.agg(
        qk_norm=("qk_norm", "first"),
        heads_with_sinks=("tag_variance_explained", "count"),
        tag_mean=("tag_variance_explained", "mean"),
        tag_max=("tag_variance_explained", "max"),
        random_mean=("random_variance_explained", "mean"),
        pca_mean=("pca_variance_explained", "mean"),
        **{
            name: (column, "mean")
            for name, column in (
                ("nonsink_key_mean", "nonsink_key_variance_explained"),
                ("nonsink_key_draw_sd_mean", "nonsink_key_draw_sd"),  # its spread over draws
                ("uniform_attention_mean", "uniform_attention_tag_variance_explained"),
                ("tag_uncentred_mean", "tag_variance_explained_uncentred"),
                ("nonsink_key_uncentred_mean", "nonsink_key_variance_explained_uncentred"),
            )
            if column in rank1
        },
    ).reset_index()


def measures_section(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per model: the neighbouring papers' sink measures (issue 19) beside the census's
    first-token and prompt-dependent sink heads, each next to its null or control."""
    rows: dict[str, dict[str, object]] = {}

    def put(model: str, **values: object) -> None:
        rows.setdefault(model, {"model": model}).update(values)

    summary = tables.get("sinks_summary", pd.DataFrame())
    massive = tables.get("massive_summary", pd.DataFrame())
    for model, frame in massive.groupby("model") if not massive.empty else ():
        put(
            model,
            massive_top_ratio=frame.top_ratio.max(),  # Sun et al.: >= 1000 for massive
            massive_tokens=int(frame.n_massive_tokens.max()),
        )
    edits = tables.get("massive_interventions", pd.DataFrame())
    for (model, mode), frame in edits.groupby(["model", "intervention"]) if not edits.empty else ():
        put(model, **{f"delta_loss_{mode}": frame.delta_loss.mean()})
    secondary = tables.get("secondary", pd.DataFrame())
    for model, frame in secondary.groupby("model") if not secondary.empty else ():
        put(
            model,
            similarity_sinks_max=int(frame.n_similarity.max()),
            similar_to_second_max=int(frame.n_similar_to_second.max()),  # the null
            overlap_with_attention=int(frame.n_both.sum()),
        )
    eviction = tables.get("eviction", pd.DataFrame())
    for model, frame in eviction.groupby("model") if not eviction.empty else ():
        ratios = frame.set_index("condition").ppl_ratio_to_full
        put(model, **{f"ppl_ratio_{c}": r for c, r in ratios.items() if c != "full"})
    gu = tables.get("gu_sink", pd.DataFrame())
    for _, row in gu.iterrows() if not gu.empty else ():
        put(
            row.model,
            sink_eps_pct=row.sink_eps_pct,
            sink_eps_second_token_pct=row.second_token_sink_eps_pct,  # the null
        )
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(list(rows.values()))
    if not summary.empty:
        census = summary.groupby("model")[
            ["first_token_sink_heads", "prompt_dependent_sink_heads", "n_heads"]
        ].first()
        out = out.merge(census, left_on="model", right_index=True, how="left")
    return out.sort_values("model")


def long_context_section(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, length): first-token sink heads, mean first-token score and its ratio
    to the uniform-attention null, and the first token's attention share from the last position
    bin as a multiple of uniform attention's share."""
    if summary.empty:
        return summary
    table = pd.DataFrame(
        {
            "model": unit_models(summary.model),
            "tokens": summary.seq_len,
            "first-token sink heads": summary.frac_first_token_sink_heads,
            "first-token score": summary.mean_first_token_score,
            "score / null": summary.mean_first_token_score / summary.mean_first_token_null,
            "last queries' share / uniform": summary.first_token_share_last_bin
            / summary.uniform_share_last_bin,
        }
    )
    return table.sort_values(["model", "tokens"]).drop_duplicates(["model", "tokens"])


def intervention_section(interventions: pd.DataFrame) -> pd.DataFrame:
    if interventions.empty:
        return interventions
    means = interventions.groupby(["experiment", "model", "intervention"])[
        [
            c
            for c in ("kl", "delta_loss", "final_resid_change", "downstream_attention_change")
            if c in interventions
        ]
    ].mean()
    return means.reset_index()


def probe_section(probes: pd.DataFrame) -> pd.DataFrame:
    """Logistic-probe test accuracy / AUROC per model, head role, feature and label kind."""
    if probes.empty:
        return probes
    if "probe" in probes:
        probes = probes[probes.probe == "logistic"]
    if "skipped" in probes:
        probes = probes[probes.skipped.isna() | (probes.skipped == "")]
    keys = [c for c in ("experiment", "model", "head_role", "feature", "labels") if c in probes]
    probes = probes[[*keys, "test_accuracy", "test_auroc", "chance"]]
    summary = probes.groupby(keys, dropna=False)[["test_accuracy", "test_auroc", "chance"]].agg(
        ["mean", "max"]
    )
    return _flatten(summary.reset_index()).drop(columns=["chance_max"])


def _flatten(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [
        "_".join(c for c in col if c) if isinstance(col, tuple) else col for col in frame.columns
    ]
    return frame
