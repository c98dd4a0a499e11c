"""The report: ledger first, figures from the tables, long tables on per-model pages, and a
self-contained HTML page; tiny random models are pipeline checks, never ledger evidence."""

import pandas as pd
import pytest

from sinkmech import io
from sinkmech.reporting import figures
from sinkmech.reporting.report import write_report
from tests.reporting.units import write_unit


def test_report_opens_with_the_matrix_then_figures_then_the_ledger(tmp_path):
    write_unit(tmp_path, "real_a", "local", pair="p", qk_norm=False)
    write_unit(tmp_path, "real_b", "local", pair="p", qk_norm=True)
    write_unit(tmp_path, "tiny_x", "tiny")
    minimal = tmp_path / "minimal" / "cpu"
    io.write_table(
        pd.DataFrame(dict(variant=["base"], n_runs=[2], n_emerged=[1])), minimal / "success_rate"
    )
    steps = pd.DataFrame(
        dict(
            step=[0, 100, 0, 100],
            seed=[0, 0, 1, 1],
            variant="base",
            loss=[1.0, 0.1, 1.0, 0.2],
            baseline_ignore_sep=0.5,
            catch_sep_l0=[0.1, 0.4, 0.1, 0.3],
        )
    )
    io.write_table(steps, minimal / "emergence")

    report = write_report(tmp_path, html=True)
    text = report.read_text()
    assert text.index("| claim | ") < text.index("## Figures") < text.index("## Claims ledger")
    assert text.index("## Claims ledger") < text.index("## Summary tables")
    headlines = text[text.index("## Headline numbers per unit") : text.index("## Summary tables")]
    assert "| sinks/first_token_share" in headlines and "full/real_b" in headlines
    assert (tmp_path / "report" / "headlines_full.png").is_file()
    matrix = text[: text.index("## Figures")]
    assert "tiny_x" not in matrix and "real_a" in matrix and "Legend:" in matrix
    ledger_part = text[text.index("## Claims ledger") : text.index("## What the suite found")]
    assert "real_a" in ledger_part and "tiny_x" not in ledger_part
    assert "minimal (base)" in ledger_part and "not testable offline" in ledger_part
    for page in ("real_a", "real_b", "tiny_x"):
        assert f"(report/{page}.md)" in text and (tmp_path / "report" / f"{page}.md").is_file()
    for name in ("variance", "qk_norm", "emergence", "sinks_real_a"):
        assert f"(report/{name}.png)" in text and (tmp_path / "report" / f"{name}.png").is_file()
    html = (tmp_path / "REPORT.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and 'src="report/' not in html


def test_figures_are_skipped_when_their_tables_are_absent():
    empty = pd.DataFrame()
    assert figures.variance_figure(empty) is None
    assert figures.probe_figure(empty) is None
    assert figures.paired_sinks_figure(empty, empty, "role") is None
    assert figures.emergence_figure(empty) is None
    assert figures.sink_heatmaps(empty, 0.2) == {}


def test_measures_section_puts_each_measure_beside_the_census():
    from sinkmech.reporting.sections import measures_section

    tables = {
        "sinks_summary": pd.DataFrame(
            [dict(model="m", first_token_sink_heads=3, prompt_dependent_sink_heads=1, n_heads=8)]
        ),
        "massive_summary": pd.DataFrame(
            dict(model="m", top_ratio=[12.0, 1500.0], n_massive_tokens=[0, 2])
        ),
        "gu_sink": pd.DataFrame(
            [dict(model="m", sink_eps_pct=40.0, second_token_sink_eps_pct=0.0)]
        ),
        "eviction": pd.DataFrame(
            dict(model="m", condition=["full", "window"], ppl_ratio_to_full=[1.0, 1.8])
        ),
    }
    (row,) = measures_section(tables).to_dict("records")
    assert row["massive_top_ratio"] == 1500.0 and row["massive_tokens"] == 2
    assert row["sink_eps_pct"] == 40.0 and row["ppl_ratio_window"] == 1.8
    assert "ppl_ratio_full" not in row and row["first_token_sink_heads"] == 3
    assert measures_section({}).empty


def test_long_context_section_gives_ratios_to_the_nulls():
    from sinkmech.reporting.sections import long_context_section

    summary = pd.DataFrame(
        {
            "model": ["m@long_context.lengths=256-512", "m@long_context.lengths=256-512"],
            "seq_len": [512, 256],
            "frac_first_token_sink_heads": [0.0, 0.1],
            "mean_first_token_score": [0.03, 0.06],
            "mean_first_token_null": [0.01, 0.03],
            "first_token_share_last_bin": [0.004, 0.005],
            "uniform_share_last_bin": [0.002, 0.005],
        }
    )
    table = long_context_section(summary)
    assert list(table.tokens) == [256, 512] and set(table.model) == {"m"}
    assert list(table["score / null"]) == pytest.approx([2.0, 3.0])
    assert list(table["last queries' share / uniform"]) == pytest.approx([1.0, 2.0])
