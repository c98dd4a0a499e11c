"""The report: one screen on top (a claims x models matrix of verdicts), the paper's figures, the
claims ledger with each verdict's rule, resampling unit and sensitivity, summary tables below, and
one page per model with its long tables; optionally one self-contained HTML file.

Only units with a ``_COMPLETE`` marker are read, so a killed or running sweep never leaks partial
tables into the report. Everything is generated from the tables: no number is written by hand.
"""

from __future__ import annotations

import base64
import io as bytes_io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import matplotlib

matplotlib.use("Agg")
import markdown_it  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sinkmech import io  # noqa: E402
from sinkmech.reporting import figures, ledger, matrix, sensitivity  # noqa: E402

META = ["experiment", "model", "family", "qk_norm", "role", "pair"]


def complete_units(results_dir: Path) -> list[Path]:
    """Unit directories <results>/<experiment>/<model>/ that finished."""
    return sorted(marker.parent for marker in Path(results_dir).glob("*/*/" + io.COMPLETE_MARKER))


def _units(results_dirs: Path | Sequence[Path]) -> list[Path]:
    """Complete units of one results tree or of several (e.g. the CPU reproduction and the
    ladder's GPU units), in order."""
    roots = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    return [unit for root in roots for unit in complete_units(root)]


def _source(unit: Path) -> str | None:
    """The unit's model source (``tiny`` = random weights), from its saved config."""
    config = unit / "config.json"
    return (
        json.loads(config.read_text()).get("model", {}).get("source") if config.is_file() else None
    )


def collect(results_dir: Path | Sequence[Path], table: str) -> pd.DataFrame:
    """Concatenate one table over complete units, tagged with the unit's experiment and source."""
    frames = [
        pd.read_parquet(unit / f"{table}.parquet").assign(
            experiment=unit.parent.name, source=_source(unit)
        )
        for unit in _units(results_dir)
        if (unit / f"{table}.parquet").is_file()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _markdown(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    return (
        frame.to_markdown(index=False, floatfmt=floatfmt)
        if not frame.empty
        else "_no complete results_"
    )


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
            "model": summary.model.str.split("@").str[0],
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


@dataclass(frozen=True)
class Rich:
    """A block written by hand for each format (the verdict matrix)."""

    markdown: str
    html: str


Block = Union[str, pd.DataFrame, Rich, tuple[str, plt.Figure]]
LEDGER_COLUMNS = [
    *("claim", "paper", "model", "ours", "control"),
    *("verdict", "reason", "unit", "sensitivity"),
]


def load_tables(
    results_dir: Path | Sequence[Path], minimal_dir: Path | None = None
) -> dict[str, pd.DataFrame]:
    """Every table the ledger and figures read, concatenated over complete units; the minimal
    problem's tables from ``minimal_dir`` (paper size if present, else CPU size)."""
    names = ("sinks", "sinks_summary", "variance", "interventions", "release")
    names += ("truth_probes", "segment_probes", "sentiment_probes", "sentiment_baselines")
    names += ("massive_summary", "massive_interventions", "secondary", "eviction", "gu_sink")
    names += ("long_context_summary",)
    tables = {name: collect(results_dir, name) for name in names}
    first = results_dir if isinstance(results_dir, (str, Path)) else results_dir[0]
    minimal_dir = Path(minimal_dir) if minimal_dir else Path(first) / "minimal"
    sweep = minimal_dir.parent / "minimal_sweep" / "gpu" / "success_rate.parquet"
    if sweep.is_file():
        tables["minimal_sweep"] = pd.read_parquet(sweep)
    for size in ("paper", "cpu"):
        if (minimal_dir / size / "success_rate.parquet").is_file():
            tables["minimal_success"] = pd.read_parquet(minimal_dir / size / "success_rate.parquet")
            tables["minimal_emergence"] = pd.read_parquet(minimal_dir / size / "emergence.parquet")
            break
    return tables


def _figure_blocks(tables: dict[str, pd.DataFrame], threshold: float) -> list[Block]:
    drawn = [
        (
            "Fig. 3: variance explained per head against its controls",
            "variance",
            figures.variance_figure(tables["variance"]),
        ),
        (
            "Table 1 as bars: truth probes with 95% intervals",
            "probes",
            figures.probe_figure(tables["truth_probes"]),
        ),
        (
            "Fig. 5: sinks per head, base vs reasoning",
            "reasoning",
            figures.paired_sinks_figure(tables["sinks"], tables["sinks_summary"], "role"),
        ),
        (
            "Sec. 6: sinks per head, with and without QK-norm",
            "qk_norm",
            figures.paired_sinks_figure(tables["sinks"], tables["sinks_summary"], "qk_norm"),
        ),
        (
            "Fig. 7: emergence over training (minimal problem)",
            "emergence",
            figures.emergence_figure(tables.get("minimal_emergence", pd.DataFrame())),
        ),
    ]
    blocks: list[Block] = []
    for title, name, figure in drawn:
        if figure is not None:
            blocks += [f"### {title}", (name, figure)]
    sinks = tables["sinks"]
    if "source" in sinks:  # random-weight models have no sinks to look at
        sinks = sinks[sinks.source != "tiny"]
    heatmaps = figures.sink_heatmaps(sinks, threshold)
    if heatmaps:
        blocks.append("### Fig. 1 style: sink scores per layer and head")
        blocks += [(f"sinks_{model}", figure) for model, figure in heatmaps.items()]
    return blocks


def _model_pages(tables: dict[str, pd.DataFrame]) -> dict[str, list[Block]]:
    """One page per model with its long tables."""
    models = sorted(set(tables["sinks_summary"].get("model", pd.Series(dtype=str))))
    pages = {}
    for model in models:
        pick = {k: v[v.model == model] if "model" in v else v for k, v in tables.items()}
        pages[model] = [
            f"# {model}: tables",
            "[back to the report](../REPORT.md)",
            "## Interventions (mean over prompts and top tag heads)",
            intervention_section(pick["interventions"]),
            "## Truth probes",
            probe_section(pick["truth_probes"]),
            "## Segment probes",
            probe_section(pick["segment_probes"]),
            "## Sinks (heads with a sink only)",
            pick["sinks"][pick["sinks"].is_sink] if "is_sink" in pick["sinks"] else pick["sinks"],
        ]
    return pages


def _to_markdown(blocks: list[Block], figure_dir: Path, relative: str) -> str:
    out = []
    for block in blocks:
        if isinstance(block, pd.DataFrame):
            out.append(_markdown(block.drop(columns=["source"], errors="ignore")))
        elif isinstance(block, Rich):
            out.append(block.markdown)
        elif isinstance(block, tuple):
            name, figure = block
            io.save_figure(figure, figure_dir / f"{name}.png")
            out.append(f"![{name}]({relative}{name}.png)")
        else:
            out.append(block)
    return "\n\n".join(out) + "\n"


def _to_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: tables as HTML, figures embedded as base64 PNG."""
    render = markdown_it.MarkdownIt("commonmark").enable("table").render
    body = []
    for block in blocks:
        if isinstance(block, pd.DataFrame):
            table = block.drop(columns=["source"], errors="ignore").to_html(
                index=False, float_format="%.3f", na_rep=""
            )
            body.append(f'<div class="wide">{table}</div>')  # wide tables scroll, not the page
        elif isinstance(block, Rich):
            body.append(block.html)
        elif isinstance(block, tuple):
            buffer = bytes_io.BytesIO()
            block[1].savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            data = base64.b64encode(buffer.getvalue()).decode()
            body.append(f'<img alt="{block[0]}" src="data:image/png;base64,{data}">')
        else:
            body.append(render(block))
    style = (
        "body{font-family:sans-serif;max-width:1240px;margin:auto;padding:0 8px}"
        "h1{font-size:20px;margin:6px 0}h2{font-size:17px;margin:10px 0 4px}h3{font-size:14px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".wide{overflow-x:auto;max-width:100%}img{max-width:100%}"
        "#matrix{table-layout:fixed;width:100%;font-size:11px;line-height:1.2}"
        "#matrix th,#matrix td{padding:2px 3px;overflow-wrap:anywhere}"
        "#matrix th.claim{text-align:left;width:15%}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(
    results_dir: Path,
    out_dir: Path | None = None,
    minimal_dir: Path | None = None,
    html: bool = False,
    threshold: float = 0.2,
    extra_dirs: Sequence[Path] = (),
) -> Path:
    """Write ``REPORT.md`` (ledger, findings, figures, summary tables), per-model pages and
    figures under ``report/``, and ``REPORT.html`` when asked, into ``out_dir``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results directory {results_dir} does not exist")
    out_dir = Path(out_dir) if out_dir else results_dir
    figure_dir = out_dir / "report"
    for extra in extra_dirs:
        if not Path(extra).is_dir():
            raise FileNotFoundError(f"results directory {extra} does not exist")
    roots = [results_dir, *map(Path, extra_dirs)]
    units = _units(roots)
    tables = load_tables(roots, minimal_dir or results_dir / "minimal")
    claims = ledger.ledger(tables)
    pages = _model_pages(tables)
    links = ", ".join(f"[{model}](report/{model}.md)" for model in pages)
    if not claims.empty:  # each verdict's sensitivity beside its rule and unit
        moved = sensitivity.sensitivity(tables)[["claim", "model", "sensitivity"]]
        claims = claims.merge(moved.drop_duplicates(["claim", "model"]), how="left")
        claims["sensitivity"] = claims.sensitivity.fillna("—")
    blocks: list[Block] = [
        "# sinkmech reproduction report: which claims of arXiv 2502.00919 held where",
        Rich(matrix.to_markdown(claims), matrix.to_html(claims)) if not claims.empty else "",
        "Each cell: our number and its 95% interval; the rule, the resampling unit and the "
        "sensitivity of every verdict are in the claims ledger below. Randomly initialised "
        "`tiny_*` models check the pipeline and are left out.",
        "## Figures",
        *_figure_blocks(tables, threshold),
        "## Claims ledger",
        "Generated from the tables (sources at the end of the findings); no number in this file "
        "is written by hand. One row per claim and model run; intervals "
        "are 95% and the `unit` column names what was resampled. A verdict is reproduced or not "
        "reproduced only when its interval decides; otherwise it is inconclusive, and 'similar' "
        "needs an equivalence test (TOST, margin in the rule). Thresholds are in "
        "`sinkmech/reporting/ledger.py` beside each rule.",
        claims[LEDGER_COLUMNS] if not claims.empty else "_no claims could be evaluated_",
        f"Sensitivity column: {sensitivity.grid_text()}",
        "How to reproduce each claim with the hub:",
        claims[["claim", "command"]].drop_duplicates() if not claims.empty else "",
        "## What the suite found",
        ledger.findings(claims) if not claims.empty else "_nothing yet_",
        f"Sources: {', '.join(map(str, roots))}: {len(units)} complete units "
        f"({', '.join(f'{u.parent.name}/{u.name}' for u in units)}).",
        "## Summary tables",
        f"Per-model pages with the long tables (interventions, probes, sinks): {links}.",
        "### Neighbouring sink measures beside catch-tag-release (`experiment=measures`)",
        "Massive activations (Sun et al.; top |h| / median, >= 1000 counts as massive) and the "
        "loss change when they are set to zero or to their mean; secondary sinks by hidden-state "
        "similarity to the first token (null: similarity to the second token) and their overlap "
        "with the census's attention sinks; perplexity with a sliding-window KV cache relative to "
        "full attention, with the first tokens or the prompt-dependent sinks kept (control: as "
        "many random positions); Gu et al.'s Sink_eps (null: the second token).",
        measures_section(tables),
        "### Sinks as context grows (`experiment=long_context`)",
        "Per length: heads whose first-token score exceeds the threshold, the mean first-token "
        "score and its ratio to the uniform-attention null, and the first token's mean attention "
        "share from the last position bin of queries as a multiple of uniform attention's share "
        "(1 = no preference). Rotary models run past their trained context with RoPE unchanged.",
        long_context_section(tables["long_context_summary"]),
        "### Sinks (Sec. 2)",
        sink_section(tables["sinks_summary"]),
        "### Variance explained, rank 1 (Sec. 3.2)",
        variance_section(tables["variance"]),
    ]
    if html:  # first: writing the Markdown saves and closes the figures
        with io.atomic_path(out_dir / "REPORT.html") as tmp:
            tmp.write_text(_to_html(blocks, "sinkmech reproduction report"))
    text = _to_markdown(blocks, figure_dir, "report/")
    for model, page in pages.items():
        page_text = _to_markdown(page, figure_dir, "")
        with io.atomic_path(figure_dir / f"{model}.md") as tmp:
            tmp.write_text(page_text)
    target = out_dir / "REPORT.md"
    with io.atomic_path(target) as tmp:
        tmp.write_text(text)
    return target
