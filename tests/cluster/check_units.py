"""Checks for the SLURM cluster test (run_slurm_test.sh): units complete, trees equal.

    python tests/cluster/check_units.py complete <results> <experiment> <model>...
    python tests/cluster/check_units.py incomplete <results> <experiment> <model>...
    python tests/cluster/check_units.py same <results a> <results b> <experiment> <model>... [--tolerance T]

Exits non-zero with one line per problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkmech import io
from sinkmech.reporting.compare import compare_results


def _unit(results: str, experiment: str, model: str) -> Path:
    """The model's unit: ``<experiment>/<model>``, or ``<model>@<variant>`` when the sweep's
    overrides name a variant (e.g. ``data.limit=16``)."""
    exact = Path(results) / experiment / model
    variants = sorted((Path(results) / experiment).glob(f"{model}@*"))
    return exact if exact.is_dir() or not variants else variants[0]


def _units(results: str, experiment: str, models: list[str]) -> dict[str, Path]:
    return {model: _unit(results, experiment, model) for model in models}


def problems_complete(results: str, experiment: str, models: list[str], want: bool) -> list[str]:
    return [
        f"{unit}: {'not complete' if want else 'complete, expected unfinished'}"
        for unit in _units(results, experiment, models).values()
        if io.is_complete(unit) != want
    ]


def problems_same(
    a: str, b: str, experiment: str, models: list[str], tolerance: float
) -> list[str]:
    problems = problems_complete(a, experiment, models, True)
    problems += problems_complete(b, experiment, models, True)
    if problems:
        return problems
    table = compare_results(a, b)
    compared = {m.split("@")[0] for m in table.loc[table.experiment == experiment, "model"]}
    problems = [f"{experiment}/{m}: no table compared" for m in models if m not in compared]
    differing = table[(table.max_abs_diff > tolerance) | ~table.same_nan]
    problems += [
        f"{r.experiment}/{r.model} {r.table}.{r.column}: differs by {r.max_abs_diff:g}"
        for r in differing.itertuples()
    ]
    if not problems:
        print(f"{len(table)} columns of {len(compared)} units equal within {tolerance:g}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["complete", "incomplete", "same"])
    parser.add_argument("paths", nargs="+", help="results dir(s), experiment, models")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    if args.check == "same":
        a, b, experiment, *models = args.paths
        problems = problems_same(a, b, experiment, models, args.tolerance)
    else:
        results, experiment, *models = args.paths
        problems = problems_complete(results, experiment, models, args.check == "complete")
    for problem in problems:
        print(f"check_units: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
