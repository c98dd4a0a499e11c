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
    """One row per column: largest absolute difference, the same relative to the column's largest
    magnitude (normwise: max |a - b| / max |a|, |b|, so entries near 0 do not blow it up), and
    whether NaNs sit in the same places.

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
            largest = np.abs(np.concatenate([x[both], y[both]])).max() if diff.size else 0.0
            max_diff = float(diff.max()) if diff.size else 0.0
            rows.append(
                {
                    "column": column,
                    "same_nan": bool((np.isnan(x) == np.isnan(y)).all()),
                    "max_abs_diff": max_diff,
                    "max_rel_diff": max_diff / largest if largest > 0 else 0.0,
                }
            )
        else:
            rows.append(
                {
                    "column": column,
                    "same_nan": True,
                    "max_abs_diff": 0.0 if a[column].equals(b[column]) else float("inf"),
                    "max_rel_diff": 0.0 if a[column].equals(b[column]) else float("inf"),
                }
            )
    return pd.DataFrame(rows)


COLUMNS = [
    "experiment",
    "model",
    "table",
    "column",
    "same_nan",
    "max_abs_diff",
    "max_rel_diff",
    "problem",
]


def _problem(unit: Path, table: str, column: str, problem: str) -> dict[str, object]:
    return {
        "experiment": unit.parent.name,
        "model": unit.name,
        "table": table,
        "column": column,
        "same_nan": False,
        "max_abs_diff": float("inf"),
        "max_rel_diff": float("inf"),
        "problem": problem,
    }


def compare_results(a_dir: str | Path, b_dir: str | Path) -> pd.DataFrame:
    """``compare_tables`` for every parquet table of every complete unit of either tree.

    A unit or table present on one side only, or tables of other shapes or columns, become rows
    with a ``problem`` (and an infinite difference), so nothing missing passes as equal.
    """
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    for directory in (a_dir, b_dir):
        if not directory.is_dir():
            raise FileNotFoundError(f"results directory {directory} does not exist")
    a_units = {unit.relative_to(a_dir) for unit in complete_units(a_dir)}
    b_units = {unit.relative_to(b_dir) for unit in complete_units(b_dir)}
    if not a_units & b_units:
        raise ValueError(f"no complete unit is in both {a_dir} and {b_dir}")
    rows: list[pd.DataFrame] = []
    problems: list[dict[str, object]] = []
    for unit in sorted(a_units ^ b_units):
        missing_in = b_dir if unit in a_units else a_dir
        problems.append(_problem(unit, "", "", f"unit missing in {missing_in}"))
    for unit in sorted(a_units & b_units):
        tables = {p.name for p in (a_dir / unit).glob("*.parquet")}
        tables |= {p.name for p in (b_dir / unit).glob("*.parquet")}
        for name in sorted(tables):
            a_path, b_path = a_dir / unit / name, b_dir / unit / name
            stem = Path(name).stem
            if not (a_path.is_file() and b_path.is_file()):
                where = b_dir if a_path.is_file() else a_dir
                problems.append(_problem(unit, stem, "", f"table missing in {where}"))
                continue
            a, b = pd.read_parquet(a_path), pd.read_parquet(b_path)
            if list(a.columns) != list(b.columns):
                only = sorted(set(a.columns) ^ set(b.columns)) or "order"
                problems.append(_problem(unit, stem, "", f"columns differ: {only}"))
            elif a.shape != b.shape:
                problems.append(_problem(unit, stem, "", f"shapes differ: {a.shape} vs {b.shape}"))
            else:
                diff = compare_tables(a, b)
                rows.append(
                    diff.assign(
                        experiment=unit.parent.name, model=unit.name, table=stem, problem=""
                    )
                )
    frames = [*rows, pd.DataFrame(problems, columns=COLUMNS)]
    return pd.concat([f for f in frames if not f.empty], ignore_index=True)[COLUMNS]
