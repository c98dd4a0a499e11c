"""Compare the tables of two runs of the same units, column by column.

For checking that results reproduce across devices, machines or code versions: each table of
each unit present in both result trees is matched row by row (same shape required), every column
is summarised by its largest absolute and normwise relative difference, and judged by the rule of
its class (``sinkmech.tolerance``: exact, arithmetic or estimate), declared beside the code that
builds the table (``TABLE_RULES`` collects the declarations). A unit's ``headlines`` table is
not compared: it is computed from the unit's other tables, each compared under its own rules, and
units written before it existed (an older reference) have none.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sinkmech import io
from sinkmech.analyses.headlines import HEADLINES
from sinkmech.mechanism.ctr import COMPARISON as CTR_RULES
from sinkmech.probing.analysis import COMPARISON as PROBING_RULES
from sinkmech.reporting.report import complete_units
from sinkmech.tolerance import DEFAULT_DEPTH, Numerics, Rule, rule_for

# Columns whose class is not their dtype's, per table name (declared where each table is built).
TABLE_RULES: dict[str, dict[str, Rule]] = {**CTR_RULES, **PROBING_RULES}


def compare_tables(
    a: pd.DataFrame,
    b: pd.DataFrame,
    rules: dict[str, Rule] | None = None,
    numerics: Numerics = Numerics(),
) -> pd.DataFrame:
    """One row per column: largest absolute difference, the same relative to the column's largest
    magnitude (normwise: max |a - b| / max |a|, |b|, so entries near 0 do not blow it up), whether
    NaNs sit in the same places, and the verdict of the column's rule (``rule``, the
    ``difference`` it measures, what it ``allowed``, ``passed``, ``why``). ``rules`` declares columns whose class is not their dtype's.

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
            both = np.isfinite(x) & np.isfinite(y)
            diff = np.abs(x - y)[both]
            largest = np.abs(np.concatenate([x[both], y[both]])).max() if diff.size else 0.0
            max_diff = float(diff.max()) if diff.size else 0.0
            row = {
                "column": column,
                "same_nan": bool((np.isnan(x) == np.isnan(y)).all()),
                "max_abs_diff": max_diff,
                "max_rel_diff": max_diff / largest if largest > 0 else 0.0,
            }
        else:
            same = 0.0 if a[column].equals(b[column]) else float("inf")
            row = {"column": column, "same_nan": True, "max_abs_diff": same, "max_rel_diff": same}
        check = rule_for(a[column], rules).check(a[column], b[column], a, numerics)
        rows.append(
            {
                **row,
                "rule": check.rule,
                "difference": check.difference,
                "allowed": check.allowed,
                "passed": check.passed,
                "why": check.problem,
            }
        )
    return pd.DataFrame(rows)


def unit_numerics(unit: Path, override: float | None = None) -> Numerics:
    """The dtype and accumulation depth a unit recorded in its marker (older units: the default),
    with an explicit arithmetic tolerance ``override`` where one is given."""
    recorded = io.read_marker(unit).get("numerics") or {}
    return Numerics(
        dtype=str(recorded.get("dtype", "float32")),
        depth=int(recorded.get("depth", DEFAULT_DEPTH)),
        override=override,
    )


COLUMNS = [
    "experiment",
    "model",
    "table",
    "column",
    "same_nan",
    "max_abs_diff",
    "max_rel_diff",
    "rule",
    "difference",
    "allowed",
    "passed",
    "why",
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
        "rule": "present",
        "difference": float("inf"),
        "allowed": 0.0,
        "passed": False,
        "why": problem,
        "problem": problem,
    }


def compare_results(
    a_dir: str | Path,
    b_dir: str | Path,
    arithmetic_tolerance: float | None = None,
    units: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``compare_tables`` for every parquet table of every complete unit of either tree, each
    column judged by its rule with the numerics ``a_dir``'s unit recorded (the reference).

    ``arithmetic_tolerance`` replaces the derived bound of arithmetic columns (normwise relative),
    for comparisons the bound does not describe, such as hooks against fused on a GPU.
    ``units`` (globs over ``<experiment>/<unit>``, e.g. ``full/tiny_*``) restricts both trees to
    the units matching any of them.
    A unit or table present on one side only, or tables of other shapes or columns, become rows
    with a ``problem`` (and an infinite difference), so nothing missing passes as equal.
    """
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    for directory in (a_dir, b_dir):
        if not directory.is_dir():
            raise FileNotFoundError(f"results directory {directory} does not exist")
    a_units = {unit.relative_to(a_dir) for unit in complete_units(a_dir)}
    b_units = {unit.relative_to(b_dir) for unit in complete_units(b_dir)}
    if units is not None:

        def chosen(unit: Path) -> bool:
            return any(fnmatch.fnmatchcase(unit.as_posix(), pattern) for pattern in units)

        a_units, b_units = set(filter(chosen, a_units)), set(filter(chosen, b_units))
    if not a_units & b_units:
        where = f" matching {list(units)}" if units is not None else ""
        raise ValueError(f"no complete unit{where} is in both {a_dir} and {b_dir}")
    rows: list[pd.DataFrame] = []
    problems: list[dict[str, object]] = []
    for unit in sorted(a_units ^ b_units):
        missing_in = b_dir if unit in a_units else a_dir
        problems.append(_problem(unit, "", "", f"unit missing in {missing_in}"))
    for unit in sorted(a_units & b_units):
        tables = {p.name for p in (a_dir / unit).glob("*.parquet")}
        tables |= {p.name for p in (b_dir / unit).glob("*.parquet")}
        tables.discard(f"{HEADLINES}.parquet")  # derived from the tables compared here
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
                numerics = unit_numerics(a_dir / unit, arithmetic_tolerance)
                diff = compare_tables(a, b, TABLE_RULES.get(stem), numerics)
                rows.append(
                    diff.assign(
                        experiment=unit.parent.name, model=unit.name, table=stem, problem=""
                    )
                )
    frames = [*rows, pd.DataFrame(problems, columns=COLUMNS)]
    return pd.concat([f for f in frames if not f.empty], ignore_index=True)[COLUMNS]
