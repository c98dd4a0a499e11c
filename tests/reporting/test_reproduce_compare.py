"""`make reproduce`'s last step: comparing a fresh tree with the reference fails loudly (exit 1,
a one-line verdict and the differing columns) when a table differs or a unit is missing."""

import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from experiments import compare
from sinkmech import io


def _tree(root, value, models=("m1", "m2")):
    for model in models:
        unit = root / "full" / model
        table = pd.DataFrame({"layer": [0, 1], "score": [0.5, value], "kind": ["first", "."]})
        io.write_table(table, unit / "sinks")
        io.mark_complete(unit, {"model": model})
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
    assert result.stdout.splitlines()[0].startswith("AGREE: 6 of 6 columns agree within 0.0001")


def test_a_differing_table_fails_loudly(tmp_path, _compare):
    result = _compare(_tree(tmp_path / "a", 0.25), _tree(tmp_path / "b", 0.26))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DIFFER: 4 of 6 columns agree")
    assert any("score" in line and "m1" in line for line in lines[1:])
    assert _compare(tmp_path / "a", tmp_path / "b", "--tolerance", "0.1").returncode == 0


def test_a_missing_unit_fails(tmp_path, _compare):
    result = _compare(_tree(tmp_path / "a", 0.25), _tree(tmp_path / "b", 0.25, models=("m1",)))
    assert result.returncode == 1
    assert "unit missing in" in result.stdout and "m2" in result.stdout
