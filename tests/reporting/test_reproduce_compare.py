"""`make reproduce`'s last step: comparing a fresh tree with the reference fails loudly (exit 1,
a one-line verdict, the differing columns with their rule and why, a summary per unit) when a
table differs beyond its column's rule or a unit is missing; within the rules it agrees."""

import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from experiments import compare
from sinkmech import io


def _tree(root, value, models=("m1", "m2"), accuracy=0.70):
    for model in models:
        unit = root / "full" / model
        table = pd.DataFrame({"layer": [0, 1], "score": [0.5, value], "kind": ["first", "."]})
        io.write_table(table, unit / "sinks")
        probes = pd.DataFrame({"test_accuracy": [0.5, accuracy], "n_test": [50, 50]})
        io.write_table(probes, unit / "truth_probes")
        io.mark_complete(unit, {"model": model, "numerics": {"dtype": "float32", "depth": 2048}})
    return root


@pytest.fixture
def _compare(monkeypatch, capsys):
    """Run `python -m experiments.compare a b ...` in process: (exit status, stdout)."""

    def run(a, b, *extra):
        monkeypatch.setattr(sys, "argv", ["compare", str(a), str(b), *extra])
        status = 0
        try:
            compare.main()
        except SystemExit as exit_:
            status = exit_.code
        return SimpleNamespace(returncode=status, stdout=capsys.readouterr().out)

    return run


def test_identical_trees_agree(tmp_path, _compare):
    result = _compare(_tree(tmp_path / "a", 0.25), _tree(tmp_path / "b", 0.25))
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith(
        "AGREE: 10 of 10 columns agree under their rules (2 arithmetic, 2 estimate, 6 exact)"
    )


def test_differences_within_each_rule_agree(tmp_path, _compare):
    """A float32 rounding difference (depth 2048: up to 1.2e-4 relative) and one flipped test
    item of 50 are what another CPU may produce: they agree."""
    a = _tree(tmp_path / "a", 0.25)
    b = _tree(tmp_path / "b", 0.25 * (1 + 1e-4), accuracy=0.72)
    assert _compare(a, b).returncode == 0


def test_a_differing_table_fails_loudly(tmp_path, _compare):
    result = _compare(_tree(tmp_path / "a", 0.25), _tree(tmp_path / "b", 0.26, accuracy=0.74))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DIFFER: 6 of 10 columns agree")
    assert any("score" in line and "m1" in line and "arithmetic" in line for line in lines[1:])
    assert any("test_accuracy" in line and "2.0 items" in line for line in lines[1:])
    assert lines[-3] == "DIFFER in 2 units:"
    assert lines[-2].startswith("  full/m1: 2 columns in ['sinks', 'truth_probes']: 1 arithmetic")
    # --tolerance replaces only the arithmetic bound: the estimate still fails
    relaxed = _compare(tmp_path / "a", tmp_path / "b", "--tolerance", "0.1")
    assert relaxed.returncode == 1 and "arithmetic" not in relaxed.stdout.split("DIFFER in")[1]


def test_a_missing_unit_fails(tmp_path, _compare):
    result = _compare(_tree(tmp_path / "a", 0.25), _tree(tmp_path / "b", 0.25, models=("m1",)))
    assert result.returncode == 1
    assert "unit missing in" in result.stdout and "m2" in result.stdout


def test_units_restricts_both_trees(tmp_path, _compare):
    """A small reproduction (some units) compares against the whole reference."""
    a = _tree(tmp_path / "a", 0.25)
    b = _tree(tmp_path / "b", 0.25, models=("m1",))
    assert _compare(a, b, "--units", "full/m1").returncode == 0
    assert _compare(a, b, "--units", "full/m*").returncode == 1
    assert _compare(a, b, "--units", "full/none").returncode == 2
