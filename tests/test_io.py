"""Tables are written as parquet with a CSV twin only where the twin stays small."""

from __future__ import annotations

import pandas as pd

from sinkmech import io


def test_small_tables_get_a_csv_twin_and_large_ones_lose_a_stale_one(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "CSV_MAX_CELLS", 10)
    small = pd.DataFrame({"a": range(5)})
    io.write_table(small, tmp_path / "table")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "table.csv"), small)
    large = pd.DataFrame({"a": range(6), "b": range(6)})
    io.write_table(large, tmp_path / "table")
    assert not (tmp_path / "table.csv").exists()  # no stale twin beside the new parquet
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "table.parquet"), large)
