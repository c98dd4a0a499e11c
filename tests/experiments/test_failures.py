"""Failure classes as a user meets them (issue 20): the command, its exit code, the one line
printed, and what is on disk afterwards. Commands run in-process (``experiments.run.main`` with
its argv), which is what ``python -m experiments.run ...`` does, minus interpreter start-up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments import run as run_cli
from sinkmech import io
from sinkmech.errors import CheckpointError, ConfigError, UnitBusyError


def cli(monkeypatch, capsys, results: Path, *overrides: str) -> tuple[int, str]:
    """Run ``python -m experiments.run <overrides>``; (exit code, stderr's sinkmech lines)."""
    flags = [o for o in overrides if o.startswith("-")]
    argv = [
        "experiments.run",
        *flags,
        "logging=disabled",
        "data.limit=3",
        f"results_dir={results}",
        f"hydra.run.dir={results.parent / 'hydra'}",
        f"hydra.sweep.dir={results.parent / 'hydra_sweep'}",
        *(o for o in overrides if not o.startswith("-")),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        run_cli.cli()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    return code, "\n".join(line for line in err.splitlines() if line.startswith(("sinkmech", "  ")))


def units(results: Path) -> list[str]:
    markers = results.glob("*/*/" + io.COMPLETE_MARKER)
    return sorted(f"{m.parent.parent.name}/{m.parent.name}" for m in markers)


def test_sweep_over_a_threshold_keeps_one_unit_per_value_and_resumes(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    args = ("-m", "model=tiny_gpt2", "sinks.threshold=0.1,0.3")  # old key name still accepted
    assert cli(monkeypatch, capsys, results, *args) == (0, "")
    assert units(results) == [
        "sinks/tiny_gpt2@data.limit=3,sinks.sink=0.1",
        "sinks/tiny_gpt2@data.limit=3,sinks.sink=0.3",
    ]
    low, high = (pd.read_parquet(results / u / "sinks.parquet") for u in units(results))
    assert (low.mean_score > 0.1).sum() >= (high.mean_score > 0.3).sum()
    assert set(low.model) == {
        "tiny_gpt2@data.limit=3,sinks.sink=0.1"
    }  # the report tells them apart
    mtimes = [(results / u / io.COMPLETE_MARKER).stat().st_mtime_ns for u in units(results)]
    assert cli(monkeypatch, capsys, results, *args) == (0, "")
    assert mtimes == [(results / u / io.COMPLETE_MARKER).stat().st_mtime_ns for u in units(results)]


def test_changed_config_leaves_no_stale_file(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    assert cli(monkeypatch, capsys, results, "model=tiny_gpt2")[0] == 0
    (unit,) = [results / u for u in units(results)]
    (unit / "interventions.png").write_bytes(b"an old figure")
    assert cli(monkeypatch, capsys, results, "model=tiny_gpt2", "force=true")[0] == 0
    assert not (unit / "interventions.png").exists()
    assert sorted(p.name for p in (results / ".staging" / "sinks").iterdir()) == [
        f"{unit.name}.lock"
    ]


def test_second_run_of_a_unit_is_refused_while_the_first_holds_it(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    unit = results / "sinks" / "tiny_gpt2@data.limit=3"
    with io.unit_lock(results / ".staging" / "sinks" / f"{unit.name}.lock", unit):
        code, line = cli(monkeypatch, capsys, results, "model=tiny_gpt2")
    assert code == UnitBusyError.exit_code
    assert line.startswith("sinkmech: error: ") and "being computed by another run" in line
    assert units(results) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.limit=-1"], "data.limit must be >= 1"),
        (["experiment=ctr", "experiment.ctr.top_heads=-1"], "ctr.top_heads must be >= 0"),
        (["experiment=ctr", "experiment.ctr.ranks=[]"], "ctr.ranks must be positive integers"),
        (["experiment=ctr", "experiment.ctr.catch_threshold=5"], "catch_threshold must be in"),
        (["experiment=ctr", "experiment.ctr.n_random=0"], "ctr.n_random must be >= 1"),
        (["experiment=measures", "experiment.massive.top_k=0"], "massive.top_k must be >= 1"),
        (["sinks.min_queries=0"], "sinks.min_queries must be >= 1"),
        (["experiment=probing", "experiment.probing.n_folds=1"], "n_folds must be >= 2"),
        (["experiment=probing", "data.statements=citiez"], "no statement set 'citiez'"),
        (["experiment=ctr", "experiment.ctr.ranks=[1,999]"], "exceed the head dimension"),
        (["model.qk_norm=true"], "model.qk_norm=True but tiny_gpt2"),
        (["model.source=local", "model.path=no/such/dir"], "model.path"),
    ],
)
def test_bad_value_is_one_line_before_any_compute(
    monkeypatch, capsys, tmp_path, overrides, message
):
    results = tmp_path / "results"
    code, line = cli(monkeypatch, capsys, results, "model=tiny_gpt2", *overrides)
    assert code == ConfigError.exit_code and line.count("\n") == 0 and message in line, line
    assert units(results) == [] and not list(results.glob("*/*/*.parquet"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(monkeypatch, capsys, tmp_path):
    code, line = cli(monkeypatch, capsys, tmp_path / "r", "model=tiny_gpt2", "model.device=cuda")
    assert code == 2 and "model.device=cuda" in line and "use model.device=cpu" in line


def test_read_only_results_dir_is_refused(monkeypatch, capsys, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    # as for a non-root user
    monkeypatch.setattr("os.access", lambda path, mode: not str(path).startswith(str(results)))
    code, line = cli(monkeypatch, capsys, results, "model=tiny_gpt2")
    assert code == 2 and line == f"sinkmech: error: results_dir {results} is not writable"


def test_a_sweep_with_an_invalid_unit_is_refused_before_any_unit_runs(
    monkeypatch, capsys, tmp_path
):
    results = tmp_path / "results"
    code, lines = cli(monkeypatch, capsys, results, "-m", "model=tiny_gpt2", "sinks.sink=0.5,1.5")
    assert code == ConfigError.exit_code
    assert lines.splitlines()[0] == "sinkmech: error: 1 unit(s) of the sweep are invalid:"
    assert "sinks.sink=1.5" in lines and "sinks.sink must be in (0, 1), got 1.5" in lines
    assert units(results) == []


def test_a_failing_unit_does_not_stop_the_sweep(monkeypatch, capsys, tmp_path, tiny):
    good = _local_checkpoint(tiny, tmp_path / "good")
    bad = _local_checkpoint(tiny, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"")
    results = tmp_path / "results"
    args = ("-m", "model=tiny_llama", "model.source=local", f"model.path={bad},{good}")
    code, lines = cli(monkeypatch, capsys, results, *args)
    assert code == 1
    assert f"{bad}/model.safetensors is empty" in lines
    assert "1 unit(s) of the sweep failed" in lines
    (unit,) = units(results)
    assert json.loads((results / unit / "config.json").read_text())["model"]["path"] == str(good)


def _local_checkpoint(tiny, path: Path) -> Path:
    from sinkmech.models.loading import _build_tiny
    from sinkmech.models.spec import ModelSpec

    _build_tiny(ModelSpec("t", "tiny", family="llama"), torch.float32).save_pretrained(path)
    tiny("llama").tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "tokenizer.json").write_text("{not json"), "cannot load the tokenizer"),
        (
            lambda p: [
                (p / n).unlink(missing_ok=True)
                for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
            ],
            "has no tokenizer",
        ),
        (lambda p: (p / "config.json").write_text(""), "config.json is not valid JSON"),
        (lambda p: (p / "model.safetensors").write_bytes(b""), "model.safetensors is empty"),
        (
            lambda p: (p / "model.safetensors").write_bytes(
                (p / "model.safetensors").read_bytes()[:5000]
            ),
            "model.safetensors is corrupt or truncated",
        ),
    ],
)
def test_corrupt_local_checkpoint_is_one_line_naming_the_file(
    monkeypatch, capsys, tmp_path, tiny, damage, message
):
    checkpoint = _local_checkpoint(tiny, tmp_path / "ck")
    damage(checkpoint)
    results = tmp_path / "results"
    code, line = cli(
        monkeypatch,
        capsys,
        results,
        "model=tiny_llama",
        "model.source=local",
        f"model.path={checkpoint}",
    )
    assert code == CheckpointError.exit_code and message in line and line.count("\n") == 0, line
    assert units(results) == []


def test_minimal_run_without_steps_is_one_line(tmp_path):
    from sinkmech.models import ModelSpec, load_model

    (tmp_path / "config.json").write_text(json.dumps({"format": "sinkmech-minimal-v1"}))
    with pytest.raises(CheckpointError, match="holds no step_"):
        load_model(ModelSpec("m", "minimal", path=str(tmp_path)))


def _main(monkeypatch, capsys, module, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    code = 0
    try:
        module.main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_compare_reports_missing_units_and_shape_changes_and_exits_1(monkeypatch, capsys, tmp_path):
    import shutil

    from experiments import compare

    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(monkeypatch, capsys, a, "model=tiny_gpt2")[0] == 0
    shutil.copytree(a, b)
    assert _main(monkeypatch, capsys, compare, str(a), str(b))[0] == 0
    (unit,) = [u for u in units(a)]
    shutil.copytree(a / unit, a / "sinks" / "extra_model")
    table = b / unit / "sinks.parquet"
    pd.read_parquet(table).iloc[:-1].to_parquet(table, index=False)
    code, out = _main(monkeypatch, capsys, compare, str(a), str(b))
    assert code == 1
    assert f"unit missing in {b}" in out and "extra_model" in out and "shapes differ" in out
    code, out = _main(monkeypatch, capsys, compare, str(a), str(tmp_path / "typo"))
    assert (
        code == 2
        and out.strip() == f"sinkmech: error: results directory {tmp_path / 'typo'} does not exist"
    )


def test_report_refuses_a_results_dir_that_does_not_exist(monkeypatch, capsys, tmp_path):
    from experiments import report

    code, out = _main(monkeypatch, capsys, report, "--results", str(tmp_path / "typo"))
    assert code == 2 and "does not exist" in out and not (tmp_path / "typo").exists()


@pytest.mark.integration
def test_runs_from_another_directory_with_a_repo_relative_checkpoint(tmp_path):
    """conf/ is found from the package and ``checkpoints/...`` resolves against the repository."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    args = ["model=ladder_s_qknorm", "logging=disabled", "data.limit=2", "results_dir=r"]
    result = subprocess.run(
        [sys.executable, "-m", "experiments.run", *args, "hydra.run.dir=h"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert units(tmp_path / "r") == ["sinks/ladder_s_qknorm@data.limit=2"]
