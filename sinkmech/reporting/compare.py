"""Compare the tables of two runs of the same units, column by column.

For checking that results reproduce across devices, machines or code versions: each table of
each unit present in both result trees is matched row by row (same shape required) and every
column is summarised by its largest absolute difference (numbers) or by whether it is equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sinkmech.reporting.report import complete_units


def compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per column: largest absolute difference, and whether NaNs sit in the same places.

    Non-numeric columns get 0.0 when equal and inf when not. Raises on a shape or column mismatch.
    """
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        raise ValueError(
            f"tables differ in shape or columns: {a.shape} {list(a.columns)} vs {b.shape} {list(b.columns)}"
        )
    rows = []
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if a[column].dtype.kind in "fiu" and b[column].dtype.kind in "fiu":
            x, y = x.astype(float), y.astype(float)
            both = ~np.isnan(x) & ~np.isnan(y)
            diff = np.abs(x - y)[both]
            rows.append(
                {
                    "column": column,
                    "same_nan": bool((np.isnan(x) == np.isnan(y)).all()),
                    "max_abs_diff": float(diff.max()) if diff.size else 0.0,
                }
            )
        else:
            rows.append(
                {
                    "column": column,
                    "same_nan": True,
                    "max_abs_diff": 0.0 if a[column].equals(b[column]) else float("inf"),
                }
            )
    return pd.DataFrame(rows)


def compare_results(a_dir: str | Path, b_dir: str | Path) -> pd.DataFrame:
    """``compare_tables`` for every parquet table of every complete unit found in both trees."""
    a_units = {unit.relative_to(a_dir) for unit in complete_units(Path(a_dir))}
    b_units = {unit.relative_to(b_dir) for unit in complete_units(Path(b_dir))}
    frames = []
    for unit in sorted(a_units & b_units):
        for table in sorted((Path(a_dir) / unit).glob("*.parquet")):
            other = Path(b_dir) / unit / table.name
            if other.is_file():
                diff = compare_tables(pd.read_parquet(table), pd.read_parquet(other))
                frames.append(
                    diff.assign(experiment=unit.parent.name, model=unit.name, table=table.stem)
                )
    if not frames:
        raise ValueError(f"no complete unit is in both {a_dir} and {b_dir}")
    columns = ["experiment", "model", "table", "column", "same_nan", "max_abs_diff"]
    return pd.concat(frames, ignore_index=True)[columns]
