"""Compare two results trees unit by unit, e.g. a fresh run against the committed reference.

    python -m experiments.compare results/reference results [--out DIR/name] [--tolerance X]
        [--units 'full/tiny_*' full/minilm ...]

Every column is judged by the rule of its class (``sinkmech.tolerance``): exact columns must be
equal, arithmetic ones agree within the bound their unit's dtype and accumulation depth give
(``--tolerance X`` replaces that bound by a normwise relative X, e.g. for hooks against fused on
a GPU), estimates within their own sampling error. Prints a one-line verdict, then for each
differing column its rule and why it failed, then a summary per unit in words.
Exit 0: every column agrees; 1: differences (so ``make reproduce`` fails loudly); 2: bad input;
4: a corrupt unit marker (named).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from sinkmech.errors import SinkmechError
from sinkmech.io import write_table
from sinkmech.reporting.compare import compare_results

RULES_EXPLAINED = {
    "exact": "must be equal (counts, labels, verdicts)",
    "arithmetic": "differ by more than float arithmetic can (depth x unit roundoff)",
    "estimate": "differ by more than their sampling error (a quarter standard error, >= 1 item)",
    "present": "missing on one side, or of another shape",
}


def summary_lines(differing: pd.DataFrame) -> list[str]:
    """One sentence per unit with failing columns: which tables, which rule, the worst case."""
    lines = []
    for (experiment, model), part in differing.groupby(["experiment", "model"], sort=True):
        rules = ", ".join(
            f"{len(rows)} {rule} ({RULES_EXPLAINED.get(rule, rule)})"
            for rule, rows in part.groupby("rule", sort=True)
        )
        worst = part.iloc[0]
        lines.append(
            f"  {experiment}/{model}: {len(part)} columns in {sorted(set(part.table))}: {rules}; "
            f"e.g. {worst.table}.{worst.column or '*'}: {worst.why}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="reference results directory (its units' numerics are used)")
    parser.add_argument("b", help="results directory to compare against")
    parser.add_argument("--out", help="write the comparison table here (parquet + CSV)")
    parser.add_argument(
        "--tolerance",
        type=float,
        help="normwise relative tolerance replacing the derived bound of arithmetic columns",
    )
    parser.add_argument(
        "--units",
        nargs="+",
        help="only units matching any of these globs over <experiment>/<unit>, in both trees",
    )
    args = parser.parse_args()
    try:
        table = compare_results(args.a, args.b, args.tolerance, args.units)
    except (FileNotFoundError, ValueError) as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(2)
    except SinkmechError as error:  # a corrupt unit marker, named
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    if args.out:
        write_table(table, args.out)
    differing = table[~table.passed]
    counts = table.rule.value_counts().to_dict()
    classes = ", ".join(f"{counts[rule]} {rule}" for rule in sorted(counts))
    print(
        f"{'AGREE' if differing.empty else 'DIFFER'}: {len(table) - len(differing)} of "
        f"{len(table)} columns agree under their rules ({classes}) ({args.a} vs {args.b})"
    )
    if differing.empty:
        return
    shown = ["experiment", "model", "table", "column", "rule", "difference", "allowed", "why"]
    print(differing[shown].to_string(index=False))
    print(f"DIFFER in {differing.groupby(['experiment', 'model']).ngroups} units:")
    print("\n".join(summary_lines(differing)))
    sys.exit(1)


if __name__ == "__main__":
    main()
