"""Write REPORT.md (claims ledger, figures, summary tables) from every complete unit.

python -m experiments.report [--results results] [--extra results/ladder] [--out DIR] [--minimal results/minimal] [--html]
"""

from __future__ import annotations

import argparse
import sys

from sinkmech.reporting.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results tree to read")
    parser.add_argument("--out", help="where REPORT.md and report/ go (default: --results)")
    parser.add_argument(
        "--extra", nargs="*", default=[], help="more results trees whose units join the report"
    )
    parser.add_argument("--minimal", help="minimal-problem results (default: <results>/minimal)")
    parser.add_argument(
        "--html", action="store_true", help="also write a self-contained REPORT.html"
    )
    args = parser.parse_args()
    try:
        target = write_report(
            args.results, args.out, args.minimal, args.html, extra_dirs=args.extra
        )
    except FileNotFoundError as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report written to {target}")


if __name__ == "__main__":
    main()
