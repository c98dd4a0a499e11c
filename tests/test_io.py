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


def test_staging_of_one_unit_never_removes_a_sibling_whose_name_extends_it(tmp_path):
    """``x=2`` and ``x=2.5`` share the prefix ``x=2.``: cleaning up one must spare the other."""
    staging, results = tmp_path / ".staging", tmp_path / "sinks"
    longer, shorter = results / "m@null_margin=2.5", results / "m@null_margin=2"
    with io.staged_dir(longer, staging) as longer_work:
        (longer_work / "sinks.parquet").write_bytes(b"half of the 2.5 unit")
        stale = staging / f"{shorter.name}.999999.new"  # a killed run of the 2 unit
        stale.mkdir()
        with io.staged_dir(shorter, staging) as shorter_work:
            (shorter_work / "sinks.parquet").write_bytes(b"the 2 unit")
        assert not stale.exists()
        assert (longer_work / "sinks.parquet").read_bytes() == b"half of the 2.5 unit"
    assert (longer / "sinks.parquet").read_bytes() == b"half of the 2.5 unit"
    assert (shorter / "sinks.parquet").read_bytes() == b"the 2 unit"
