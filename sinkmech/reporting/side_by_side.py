"""Headline numbers of any set of units side by side, from results/ alone.

Each unit's numbers are its ``headlines`` table; a unit written before units had one gets the same
numbers computed from its own tables through the analysis registry (``Analysis.headlines``), so
older trees, the committed reference included, compare like new ones. Each number is set beside
its interval, its null and its difference from a baseline unit.
"""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from sinkmech import io
from sinkmech.analyses import REGISTRY
from sinkmech.analyses.headlines import HEADLINE_COLUMNS, HEADLINES, headline_table

# Columns of the wide table beside each headline's value: ``<name>_<field>``.
WIDE_FIELDS = ("low", "high", "null", "minus_baseline")


def labels(units: Sequence[Path]) -> list[str]:
    """The units' names in the tables: ``<experiment>/<model>[@<variant>]``, or with as many more
    parent directories as make them distinct (the same unit of two trees:
    ``reference/full/minilm`` beside ``results/full/minilm``)."""
    parts = [unit.resolve().parts for unit in units]
    depth = 2
    while len({p[-depth:] for p in parts}) < len(parts) and depth < max(map(len, parts)):
        depth += 1
    return ["/".join(p[-depth:]) for p in parts]


def match_units(patterns: Sequence[str]) -> list[Path]:
    """The complete units whose directories match any of the glob ``patterns``, sorted, each
    once; ``FileNotFoundError`` naming a pattern that matches no complete unit."""
    units: dict[Path, None] = {}
    for pattern in patterns:
        found = sorted(Path(p) for p in glob.glob(pattern) if io.is_complete(p))
        if not found:
            raise FileNotFoundError(
                f"no complete unit matches {pattern!r} (a unit is <results>/<experiment>/<model>, "
                "e.g. 'results/full/*')"
            )
        units.update(dict.fromkeys(found))
    return list(units)


def analyses_of(unit: Path) -> list[str]:
    """The analyses the unit ran: its saved config's list, else every registered analysis one of
    whose tables the unit holds."""
    config = unit / "config.json"
    if config.is_file():
        analyses = json.loads(config.read_text()).get("experiment", {}).get("analyses")
        if analyses:
            return list(analyses)
    return [
        name
        for name, analysis in REGISTRY.items()
        if any((unit / f"{table}.parquet").is_file() for table in analysis.tables)
    ]


def unit_headlines(unit: Path) -> pd.DataFrame:
    """The unit's headline table, or for an older unit without one, the same numbers computed
    from its tables through the registry."""
    stored = unit / f"{HEADLINES}.parquet"
    if stored.is_file():
        return pd.read_parquet(stored)
    analyses = analyses_of(unit)
    names = {t for a in analyses if a in REGISTRY for t in REGISTRY[a].tables}
    files = {name: unit / f"{name}.parquet" for name in names}
    tables = {name: pd.read_parquet(path) for name, path in files.items() if path.is_file()}
    return headline_table(analyses, tables)


def resolve_baseline(units: Sequence[Path], baseline: str | None) -> str:
    """The label of the baseline unit: the first unit when none is named; else the unit whose
    label, path or (unique) directory name is ``baseline``; ``ValueError`` naming it otherwise."""
    names = labels(units)
    if baseline is None:
        return names[0]
    for unit, name in zip(units, names):
        if baseline == name or Path(baseline).resolve() == unit.resolve():
            return name
    by_dir = [name for unit, name in zip(units, names) if unit.name == baseline]
    if len(by_dir) == 1:
        return by_dir[0]
    raise ValueError(f"baseline {baseline!r} is not one of the units ({', '.join(names)})")


def side_by_side(units: Sequence[Path], baseline: str | None = None) -> pd.DataFrame:
    """Tidy: one row per unit and headline (``unit``, then ``HEADLINE_COLUMNS``), with
    ``minus_baseline``, the value minus that of the unit labelled ``baseline`` (NaN without
    one; ``resolve_baseline`` turns what a user typed into a label)."""
    frames = [unit_headlines(u).assign(unit=name) for u, name in zip(units, labels(units))]
    long = pd.concat(frames, ignore_index=True)[["unit", *HEADLINE_COLUMNS]]
    base = long[long.unit == baseline].set_index("name")["value"]
    long["minus_baseline"] = long["value"] - long["name"].map(base)
    return long


def names_in_order(long: pd.DataFrame) -> list[str]:
    """Headline names in the order the units declare them (registry run order)."""
    return list(dict.fromkeys(long["name"]))


def wide(long: pd.DataFrame) -> pd.DataFrame:
    """One row per unit, one column per headline number, each followed by its interval, null and
    difference from the baseline (``<name>_low``, ``<name>_high``, ``<name>_null``,
    ``<name>_minus_baseline``)."""
    table = long.pivot(index="unit", columns="name", values=["value", *WIDE_FIELDS])
    columns = {}
    for name in names_in_order(long):
        columns[name] = table[("value", name)]
        columns.update({f"{name}_{f}": table[(f, name)] for f in WIDE_FIELDS})
    units = list(dict.fromkeys(long.unit))
    return pd.DataFrame(columns).reindex(units).rename_axis("unit").reset_index()


def _number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4g}"


def cell(row: pd.Series, baseline: bool) -> str:
    """``value [low, high] (null n) Δ d``: the parts that are defined."""
    if math.isnan(row.value):
        return "—"
    text = _number(row.value)
    if not math.isnan(row.low):
        text += f" [{_number(row.low)}, {_number(row.high)}]"
    if not math.isnan(row.null):
        text += f" (null {_number(row.null)})"
    if baseline and not math.isnan(row.minus_baseline):
        text += f" Δ {row.minus_baseline:+.4g}"
    return text


def text_view(long: pd.DataFrame, baseline: bool = True) -> pd.DataFrame:
    """For reading: one row per headline number, one column per unit, each cell the value, its
    interval, its null and (``baseline``) its difference from the baseline unit."""
    cells = long.assign(cell=[cell(row, baseline) for _, row in long.iterrows()])
    table = cells.pivot(index="name", columns="unit", values="cell").fillna("—")
    units = list(dict.fromkeys(long.unit))
    return table.reindex(names_in_order(long))[units].rename_axis(None, axis=1).reset_index()


def text_blocks(long: pd.DataFrame) -> str:
    """For a terminal: per headline number, its null and resampling unit once, then one line per
    unit with the value, interval, null and difference from the baseline; a number no unit
    measured is one line."""
    out = []
    for name in names_in_order(long):
        part = long[long["name"] == name]
        if part["value"].isna().all():
            out.append(f"{name}: not measured in any unit\n")
            continue
        nulls = "; ".join(dict.fromkeys(n for n in part.null_label if n)) or "none"
        units = "; ".join(dict.fromkeys(r for r in part.resampling if r)) or "none"
        table = part.set_index("unit")[["value", "low", "high", "null", "minus_baseline"]]
        table = table.rename(columns={"minus_baseline": "Δ baseline"}).rename_axis(None)
        out.append(f"{name}  (null: {nulls}; interval resamples: {units})")
        out.append(table.to_string(float_format=_number, na_rep="—") + "\n")
    return "\n".join(out)
