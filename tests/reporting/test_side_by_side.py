"""The side-by-side of units (issue 33): any set of units, offline from results/ alone, each
headline number with its interval, null and difference from a baseline unit; a one-line error and
exit 2 on bad input."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from experiments import diff
from sinkmech.reporting.headline_plot import headline_figure
from sinkmech.reporting.side_by_side import (
    match_units,
    resolve_baseline,
    side_by_side,
    text_view,
    wide,
)
from tests.reporting.units import write_unit

LOOSE, STRICT = "hand@sinks.sink=0.2", "hand@sinks.sink=0.4"


@pytest.fixture
def thresholds(tmp_path):
    """The same hand-built heads at two sink thresholds: 0.4 loses the '.' sink of head 0 in each
    of the 2 layers (score 0.3) and keeps every first-token sink (0.6), of 8 heads."""
    write_unit(tmp_path, LOOSE, "local", sink=0.2)
    write_unit(tmp_path, STRICT, "local", sink=0.4)
    return tmp_path


def test_two_thresholds_differ_by_the_sinks_the_stricter_one_drops(thresholds):
    units = match_units([str(thresholds / "full" / "*")])
    long = side_by_side(units, resolve_baseline(units, f"full/{LOOSE}"))
    strict = long[long.unit == f"full/{STRICT}"].set_index("name")
    assert strict.loc["sinks/prompt_dependent_share", "minus_baseline"] == pytest.approx(-2 / 8)
    assert strict.loc["sinks/sinks_per_head", "minus_baseline"] == pytest.approx(-2 / 8)
    assert strict.loc["sinks/first_token_share", "minus_baseline"] == 0.0
    assert (long[long.unit == f"full/{LOOSE}"].minus_baseline.dropna() == 0).all()

    table = wide(long).set_index("unit")
    assert list(table.index) == [f"full/{LOOSE}", f"full/{STRICT}"]
    share = "sinks/prompt_dependent_share"
    assert table.loc[f"full/{STRICT}", f"{share}_minus_baseline"] == pytest.approx(-0.25)
    assert table.loc[f"full/{LOOSE}", f"{share}_low"] < table.loc[f"full/{LOOSE}", share]
    assert table.loc[f"full/{LOOSE}", f"{share}_null"] == 0.0
    view = text_view(long).set_index("name")
    assert "Δ -0.25" in view.loc[share, f"full/{STRICT}"]
    assert headline_figure(long, f"full/{LOOSE}") is not None


def test_the_command_writes_the_table_and_plot_and_refuses_bad_input(
    thresholds, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "diff"
    pattern = str(thresholds / "full" / "hand@*")
    monkeypatch.setattr(sys, "argv", ["diff", pattern, "--baseline", STRICT, "--out", str(out)])
    diff.main()
    printed = capsys.readouterr().out
    assert f"baseline full/{STRICT}" in printed and "sinks/prompt_dependent_share" in printed
    table = pd.read_parquet(out / "side_by_side.parquet")
    assert len(table) == 2 and (out / "side_by_side.png").is_file()
    for argv, named in (
        ([str(thresholds / "nothing*")], "nothing*"),
        ([pattern, "--baseline", "full/other"], "full/other"),
    ):
        monkeypatch.setattr(sys, "argv", ["diff", *argv])
        with pytest.raises(SystemExit) as exit_:
            diff.main()
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and error.count("\n") == 1 and named in error


def test_the_same_unit_of_two_trees_keeps_two_names(tmp_path):
    write_unit(tmp_path / "reference", LOOSE, "local")
    write_unit(tmp_path / "fresh", LOOSE, "local", sink=0.4)
    units = match_units([str(tmp_path / "*" / "full" / "*")])
    long = side_by_side(units, resolve_baseline(units, str(units[1])))
    assert sorted(set(long.unit)) == [f"fresh/full/{LOOSE}", f"reference/full/{LOOSE}"]
    shares = long[long.name == "sinks/prompt_dependent_share"].set_index("unit").minus_baseline
    assert shares[f"fresh/full/{LOOSE}"] == pytest.approx(-0.25)
