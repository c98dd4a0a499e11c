"""A unit's headline numbers as one tidy table, from those its analyses declare
(``Analysis.headlines``), and the guard each declaration goes through: a number whose table or
column is absent or empty (an older unit, an encoder without an LM head, a model with no sink)
is ``NOT_MEASURED``, never an error, so every unit of an analysis carries the same names."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping

import pandas as pd

from sinkmech.analyses.registry import NOT_MEASURED, REGISTRY, Headline, Headlines, Tables
from sinkmech.reporting.verdicts import Missing

HEADLINES = "headlines"  # the table each unit writes, and its wandb summary's source
HEADLINE_COLUMNS = ("name", "value", "low", "high", "null", "null_label", "resampling")


def measure(tables: Tables, specs: Mapping[str, Callable[[Tables], Headline]]) -> Headlines:
    """Each named headline computed from ``tables``; ``NOT_MEASURED`` where its computation
    finds a table or column missing (``Missing``)."""
    out: Headlines = {}
    for name, compute in specs.items():
        try:
            out[name] = compute(tables)
        except Missing:
            out[name] = NOT_MEASURED
    return out


def headline_table(analyses: Iterable[str], tables: Tables) -> pd.DataFrame:
    """One row per headline of the unit's analyses, in run order; a name that two analyses
    declare (the census, which ``sinks`` and ``ctr`` both run) appears once, from the first.
    Names of analyses no longer registered are skipped."""
    rows: Headlines = {}
    for analysis in analyses:
        if analysis in REGISTRY:
            for name, headline in REGISTRY[analysis].headlines(tables).items():
                rows.setdefault(name, headline)
    records = [{"name": name, **dataclasses.asdict(h)} for name, h in rows.items()]
    return pd.DataFrame(records, columns=list(HEADLINE_COLUMNS))
