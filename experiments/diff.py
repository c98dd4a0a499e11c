"""Headline numbers of any set of units side by side, offline from results/ alone.

    python -m experiments.diff 'results/full/*' ['results/ladder/ctr/*' ...] [--baseline UNIT]
        [--out DIR]

Each pattern is a glob over unit directories (``<results>/<experiment>/<model>[@<variant>]``).
Prints, per headline number, one line per unit: its value, 95% interval, null or control, and
difference from the baseline unit (``--baseline``: a unit's ``<experiment>/<model>``
label, path or directory name; default the first unit). ``--out DIR`` writes the table with one
row per unit and one column per number followed by its interval, null and difference
(``side_by_side.parquet`` + CSV), the tidy table (``side_by_side_long``) and the dot plot
(``side_by_side.png``). Units written before units had a ``headlines`` table get the same
numbers from their tables. Exit 2: a pattern matches no complete unit, or an unknown baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkmech import io
from sinkmech.reporting.headline_plot import headline_figure
from sinkmech.reporting.side_by_side import (
    match_units,
    resolve_baseline,
    side_by_side,
    text_blocks,
    wide,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("units", nargs="+", help="globs over unit directories, quoted")
    parser.add_argument("--baseline", help="the unit differences are taken from (default: first)")
    parser.add_argument("--out", help="write the tables and the dot plot into this directory")
    args = parser.parse_args()
    try:
        units = match_units(args.units)
        baseline = resolve_baseline(units, args.baseline)
    except (FileNotFoundError, ValueError) as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(2)
    long = side_by_side(units, baseline)
    print(f"{len(units)} units; differences (Δ) from the baseline {baseline}")
    print(text_blocks(long))
    if args.out:
        out = Path(args.out)
        io.write_table(wide(long), out / "side_by_side")
        io.write_table(long, out / "side_by_side_long")
        figure = headline_figure(long, baseline)
        if figure is not None:
            io.save_figure(figure, out / "side_by_side.png")
        print(f"written to {out}")


if __name__ == "__main__":
    main()
