"""Write results/REPORT.md comparing every complete (experiment, model) unit.

python -m experiments.report [--results results]
"""

from __future__ import annotations

import argparse
import sys

from sinkmech.reporting.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", default="results", help="results directory to read and write into"
    )
    try:
        target = write_report(parser.parse_args().results)
    except FileNotFoundError as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report written to {target}")


if __name__ == "__main__":
    main()
