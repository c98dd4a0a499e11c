"""Compare two results trees unit by unit, e.g. a fresh run against the committed reference.

    python -m experiments.compare results/reference results [--out DIR/name] [--tolerance 1e-4]

Prints a one-line verdict (how many columns agree within the tolerance) and the table of columns
that differ; exits with status 1 when any column differs or a unit of the first tree is missing
from the second, so `make reproduce` fails loudly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkmech.io import write_table
from sinkmech.reporting.compare import compare_results
from sinkmech.reporting.report import complete_units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="results directory (holding <experiment>/<model>/ units)")
    parser.add_argument("b", help="results directory to compare against")
    parser.add_argument("--out", help="write the comparison table here (parquet + CSV)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    table = compare_results(args.a, args.b)
    if args.out:
        write_table(table, args.out)
    units = {unit.relative_to(args.a) for unit in complete_units(Path(args.a))}
    missing = sorted(units - {unit.relative_to(args.b) for unit in complete_units(Path(args.b))})
    differing = table[(table.max_abs_diff > args.tolerance) | ~table.same_nan]
    agree = len(table) - len(differing)
    ok = not len(differing) and not missing
    print(
        f"{'AGREE' if ok else 'DIFFER'}: {agree} of {len(table)} columns agree within "
        f"{args.tolerance:g} ({args.a} vs {args.b})"
        + (
            f"; {len(missing)} unit(s) missing from {args.b}: {', '.join(map(str, missing))}"
            if missing
            else ""
        )
    )
    if len(differing):
        print(differing.to_string(index=False))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
