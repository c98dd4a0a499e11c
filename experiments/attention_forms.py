"""The attention-form matched set's tidy table (issue 27): one row per (set, form, model, metric)
with its value, interval and null, from the complete units under ``--results``.

    python -m experiments.attention_forms --results results/ladder/forms
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkmech.io import write_table
from sinkmech.reporting.attention_forms import attention_form_long
from sinkmech.reporting.report import load_tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="folder of ctr/measures units")
    parser.add_argument(
        "--out", type=Path, help="table path without suffix (default: in --results)"
    )
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        sys.exit(f"attention_forms: error: {args.results} is not a folder of results")
    table = attention_form_long(load_tables(args.results))
    if table.empty:
        sys.exit(f"attention_forms: error: no matched set of attention forms under {args.results}")
    path = write_table(table, args.out or args.results / "attention_forms")
    print(f"{len(table)} rows ({table.model.nunique()} models) -> {path}")


if __name__ == "__main__":
    main()
