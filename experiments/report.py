"""Write REPORT.md (claims ledger, figures, summary tables) from every complete unit.

python -m experiments.report [--results results] [--extra results/ladder] [--out DIR] [--minimal results/minimal] [--html]
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from sinkmech.io import NO_ROOM
from sinkmech.reporting.report import write_report

CANNOT_WRITE = (errno.EACCES, errno.EPERM, *NO_ROOM)


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
    except OSError as error:  # a read-only or full tree: one line, the tables are untouched
        if error.errno not in CANNOT_WRITE:
            raise
        where = error.filename or args.out or args.results
        print(
            f"sinkmech: error: cannot write {where}: {os.strerror(error.errno)}; "
            "pass --out DIR to write the report elsewhere",
            file=sys.stderr,
        )
        sys.exit(2)
    print(f"report written to {target}")


if __name__ == "__main__":
    main()
