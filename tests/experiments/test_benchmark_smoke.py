"""CPU smoke test of benchmarks/run_benchmark.py at tiny sizes: every variant runs and the table
is well formed. No timing assertions (issue 7)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.run_benchmark import COLUMNS, main

VARIANTS = {"hf_sdpa", "hf_eager", "tl_forward", "tl_cache", "suite", "suite_with_catch"}


def test_benchmark_runs_all_variants_on_cpu(tmp_path: Path) -> None:
    table = main(
        [
            "--shapes",
            "tiny",
            "--seq-len",
            "12",
            "--batch",
            "2",
            "--device",
            "cpu",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
            "--profile",
        ]
    )
    assert list(table.columns) == COLUMNS
    assert set(table["shape"]) == {"tiny-gpt2", "tiny-llama"}
    for shape, rows in table.groupby("shape"):
        assert set(rows.variant) == VARIANTS, shape
        assert (rows.status == "ok").all(), rows[["variant", "status"]]
        for column in ("median_s", "tokens_per_s", "ratio_to_hf_sdpa", "ratio_to_tl_forward"):
            assert (rows[column] > 0).all(), (shape, column)
        assert rows[["device", "torch", "transformers", "transformer_lens"]].notna().all().all()
        assert (tmp_path / f"profile_{shape}.txt").stat().st_size > 0
    written = pd.read_csv(tmp_path / "benchmark.csv")
    assert list(written.columns) == COLUMNS and len(written) == len(table)
