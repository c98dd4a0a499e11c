"""``hydra/launcher=local_parallel`` (issue 31): units run in workers forked from the sweep's
process (no second import of torch), give the tables a sequential sweep gives, and a unit failing
in a worker is listed by the sweep's summary (exit 1) while the others complete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.experiments.test_failures import cli, units

REPO = Path(__file__).resolve().parents[2]
# tiny_gpt2 has no QK-norm: with model.qk_norm=true it fails after loading, inside its worker.
SWEEP = ("-m", "model=tiny_gpt2,tiny_qwen3", "model.qk_norm=true")


def test_parallel_units_equal_sequential_ones_and_a_failing_unit_is_listed(
    tmp_path, monkeypatch, capsys
):
    sequential, parallel = tmp_path / "sequential", tmp_path / "parallel"
    assert cli(monkeypatch, capsys, sequential, *SWEEP)[0] == 1
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            *SWEEP,
            "hydra/launcher=local_parallel",
            "logging=disabled",
            "data.limit=3",
            f"results_dir={parallel}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "1 unit(s) of the sweep failed" in result.stderr
    assert "model.qk_norm=True but tiny_gpt2" in result.stderr
    assert (
        units(parallel) == units(sequential) == ["sinks/tiny_qwen3@data.limit=3,model.qk_norm=true"]
    )
    (unit,) = units(parallel)
    for table in sorted((sequential / unit).glob("*.parquet")):
        pd.testing.assert_frame_equal(
            pd.read_parquet(parallel / unit / table.name), pd.read_parquet(table)
        )
