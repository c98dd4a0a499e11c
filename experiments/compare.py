"""Compare two results trees unit by unit, e.g. a GPU run against the CPU run of the same config.

    python -m experiments.compare results/gpu_check results --out results/gpu_check/gpu_vs_cpu [--tolerance 1e-4]

Writes one row per (experiment, model, table, column) with the largest absolute difference and
prints the columns that differ by more than the tolerance, and units, tables, columns or shapes
present on one side only. Exit 0: same within tolerance; 1: differences; 2: bad input.
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
    args = parser.parse_args()
    try:
        table = compare_results(args.a, args.b)
    except (FileNotFoundError, ValueError) as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.out:
        write_table(table, args.out)
    differing = table[(table.max_abs_diff > args.tolerance) | ~table.same_nan]
    print(f"{len(table)} rows compared, {len(differing)} differ by more than {args.tolerance}")
    if len(differing):
        print(differing.to_string(index=False))
        sys.exit(1)


if __name__ == "__main__":
    main()
