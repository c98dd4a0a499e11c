"""Faults of the machine and of files the suite wrote (issue 31): each is one line with the
documented exit code, naming the file or setting, and nothing complete is lost."""

from __future__ import annotations

import errno
import hashlib
import sys
import tempfile
from pathlib import Path

import pytest

from experiments import report as report_cli
from sinkmech import io
from sinkmech.errors import CorruptResultsError, PromptError, ResultsWriteError
from tests.experiments.test_failures import cli, units

RUN = ("model=tiny_gpt2",)


def _digests(unit: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(unit.iterdir())}


def test_a_full_disk_is_one_line_and_leaves_the_previous_unit(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    assert cli(monkeypatch, capsys, results, *RUN)[0] == 0
    (unit,) = (results / u for u in units(results))
    before = _digests(unit)

    def full(frame, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_table", full)
    code, line = cli(monkeypatch, capsys, results, *RUN, "force=true")
    assert code == ResultsWriteError.exit_code and line.count("\n") == 0, line
    assert "No space left on device" in line and f"{unit} is left as it was" in line
    assert _digests(unit) == before
    assert [p.name for p in (results / ".staging" / "sinks").iterdir()] == [f"{unit.name}.lock"]


def test_a_corrupt_marker_names_its_file_and_force_recomputes(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    assert cli(monkeypatch, capsys, results, *RUN)[0] == 0
    (unit,) = (results / u for u in units(results))
    (unit / io.COMPLETE_MARKER).write_text('{"unit_hash": ')
    code, line = cli(monkeypatch, capsys, results, *RUN)
    assert code == CorruptResultsError.exit_code and line.count("\n") == 0
    assert f"{unit / io.COMPLETE_MARKER} is corrupt" in line and "force=true" in line
    assert cli(monkeypatch, capsys, results, *RUN, "force=true")[0] == 0
    assert "unit_hash" in io.read_marker(unit)


def test_prompts_all_too_short_to_score_are_one_line(monkeypatch, capsys, tmp_path):
    prompts = tmp_path / "short.txt"
    prompts.write_text("Hi there.\nA cat.\n")
    code, line = cli(monkeypatch, capsys, tmp_path / "r", *RUN, f"data.prompt_set={prompts}")
    assert code == PromptError.exit_code and line.count("\n") == 0
    assert "every prompt is shorter than sinks.min_queries = 8 tokens" in line


def test_report_on_a_read_only_tree_is_one_line(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    assert cli(monkeypatch, capsys, results, *RUN)[0] == 0
    (unit,) = (results / u for u in units(results))
    before = _digests(unit)

    def read_only(*args, dir=None, **kwargs):  # what atomic_path meets in a read-only directory
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(sys, "argv", ["experiments.report", "--results", str(results)])
    with pytest.raises(SystemExit) as exit_:
        report_cli.main()
    line = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and line.count("\n") == 0
    assert line.startswith(f"sinkmech: error: cannot write {results}") and "--out DIR" in line
    assert _digests(unit) == before


def test_a_run_from_a_read_only_directory_is_one_line(monkeypatch, capsys, tmp_path):
    from experiments import run as run_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
    results = tmp_path.parent / f"{tmp_path.name}_results"
    monkeypatch.setattr(
        sys, "argv", ["experiments.run", *RUN, "logging=disabled", f"results_dir={results}"]
    )
    with pytest.raises(SystemExit) as exit_:
        run_cli.cli()
    line = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and line.count("\n") == 0
    assert f"{tmp_path / 'outputs'} cannot be created" in line and "hydra.run.dir=DIR" in line
    assert not results.exists()
