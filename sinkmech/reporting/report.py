"""The report: one screen on top (a claims x models matrix of verdicts), the paper's figures, the
claims ledger with each verdict's rule, resampling unit and sensitivity, the headline numbers of
the results tree's units side by side, summary tables below, and one page per model with its
long tables; optionally one self-contained HTML file.

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

import markdown_it
import matplotlib.pyplot as plt
import pandas as pd

from sinkmech import io
from sinkmech.analyses import REGISTRY, ReportSection
from sinkmech.reporting import figures, ledger, matrix, sensitivity
from sinkmech.reporting.headline_plot import headline_figure
from sinkmech.reporting.side_by_side import side_by_side, text_view


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
    names = dict.fromkeys(name for analysis in REGISTRY.values() for name in analysis.tables)
    tables = {name: collect(results_dir, name) for name in names}
    first = results_dir if isinstance(results_dir, (str, Path)) else results_dir[0]
    minimal_dir = Path(minimal_dir) if minimal_dir else Path(first) / "minimal"
    sweep = minimal_dir.parent / "minimal_sweep" / "gpu" / "success_rate.parquet"
    if sweep.is_file():
        tables["minimal_sweep"] = pd.read_parquet(sweep)
    forms = minimal_dir.parent / "minimal_sweep" / "attention_forms"
    if (forms / "success_rate.parquet").is_file():
        tables["minimal_forms"] = pd.read_parquet(forms / "success_rate.parquet")
        tables["minimal_forms_metrics"] = pd.read_parquet(forms / "metrics.parquet")
    for size in ("paper", "cpu"):
        if (minimal_dir / size / "success_rate.parquet").is_file():
            tables["minimal_success"] = pd.read_parquet(minimal_dir / size / "success_rate.parquet")
            tables["minimal_emergence"] = pd.read_parquet(minimal_dir / size / "emergence.parquet")
            break
    return tables


def sink_thresholds(units: Sequence[Path]) -> dict[str, float]:
    """The sink threshold (``sinks.sink``) each unit ran with, by its model label."""
    out = {}
    for unit in units:
        config = unit / "config.json"
        if config.is_file():
            sink = json.loads(config.read_text()).get("sinks", {}).get("sink")
            if sink is not None:
                out[unit.name] = sink
    return out


def sections(per_model: bool) -> list[ReportSection]:
    """The registered report sections of the summary or of each model's page, in registry order,
    each once (analyses may share one)."""
    seen: dict[int, ReportSection] = {}
    for analysis in REGISTRY.values():
        for section in analysis.report:
            if section.per_model == per_model:
                seen.setdefault(id(section), section)
    return list(seen.values())


def _section_blocks(
    section: ReportSection, tables: dict[str, pd.DataFrame], level: str
) -> list[Block]:
    blocks: list[Block] = [f"{level} {section.title}"]
    if section.text:
        blocks.append(section.text)
    return [*blocks, section.build(tables)]


def _figure_blocks(tables: dict[str, pd.DataFrame], thresholds: dict[str, float]) -> list[Block]:
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
    heatmaps = figures.sink_heatmaps(sinks, thresholds)
    if heatmaps:
        blocks.append("### Fig. 1 style: sink scores per layer and head")
        blocks += [(f"sinks_{model}", figure) for model, figure in heatmaps.items()]
    return blocks


def _headline_blocks(results_dir: Path) -> list[Block]:
    """The side-by-side of the sweep's units (``experiments.diff``'s view, without a baseline):
    per experiment, each headline number per unit with its interval and null, and the dot plot."""
    units = complete_units(results_dir)
    blocks: list[Block] = []
    for experiment in dict.fromkeys(unit.parent.name for unit in units):
        long = side_by_side([unit for unit in units if unit.parent.name == experiment])
        blocks += [f"### `{experiment}`", text_view(long, baseline=False)]
        figure = headline_figure(long)
        if figure is not None:
            blocks.append((f"headlines_{experiment}", figure))
    return blocks or ["_no complete units_"]


def _model_pages(tables: dict[str, pd.DataFrame]) -> dict[str, list[Block]]:
    """One page per model with its long tables."""
    models = sorted(set(tables["sinks_summary"].get("model", pd.Series(dtype=str))))
    pages = {}
    for model in models:
        pick = {k: v[v.model == model] if "model" in v else v for k, v in tables.items()}
        pages[model] = [
            f"# {model}: tables",
            "[back to the report](../REPORT.md)",
            *(
                block
                for section in sections(True)
                for block in _section_blocks(section, pick, "##")
            ),
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
            data = base64.b64encode(io.compact_png(buffer.getvalue())).decode()
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
        *_figure_blocks(tables, sink_thresholds(units)),
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
        "## Headline numbers per unit",
        f"The units of {results_dir} side by side: each analysis's headline numbers (declared "
        "beside it in `sinkmech/analyses/`), as `value [95% interval] (null)`; the resampling "
        "unit and what the null is are in each unit's `headlines` table. Any set of units, with "
        "differences from a baseline: `python -m experiments.diff 'results/full/*' --baseline "
        "full/minilm --out DIR`.",
        *_headline_blocks(results_dir),
        "## Summary tables",
        f"Per-model pages with the long tables (interventions, probes, sinks): {links}.",
        *(
            block
            for section in sections(False)
            for block in _section_blocks(section, tables, "###")
        ),
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
