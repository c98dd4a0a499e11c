"""Compare two results trees unit by unit, e.g. a fresh run against the committed reference.

    python -m experiments.compare results/reference results [--out DIR/name] [--tolerance 1e-4]

Prints a one-line verdict (how many columns agree within the tolerance) and the table of what
differs: columns beyond the tolerance, and units, tables, columns or shapes present on one side
only. Exit 0: same within tolerance; 1: differences (so `make reproduce` fails loudly); 2: bad input.
"""

from __future__ import annotations

import argparse
import sys

from sinkmech.io import write_table
from sinkmech.reporting.compare import compare_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="results directory (holding <experiment>/<model>/ units)")
    parser.add_argument("b", help="results directory to compare against")
    parser.add_argument("--out", help="write the comparison table here (parquet + CSV)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument(
        "--relative",
        action="store_true",
        help="test max_rel_diff (difference over the column's largest magnitude), not max_abs_diff",
    )
    args = parser.parse_args()
    try:
        table = compare_results(args.a, args.b)
    except (FileNotFoundError, ValueError) as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.out:
        write_table(table, args.out)
    measure = "max_rel_diff" if args.relative else "max_abs_diff"
    differing = table[(table[measure] > args.tolerance) | ~table.same_nan]
    agree = len(table) - len(differing)
    print(
        f"{'AGREE' if differing.empty else 'DIFFER'}: {agree} of {len(table)} columns agree within "
        f"{args.tolerance:g}{' (relative)' if args.relative else ''} ({args.a} vs {args.b})"
    )
    if not differing.empty:
        print(differing.to_string(index=False))
        sys.exit(1)


if __name__ == "__main__":
    main()
