"""Write the truth-probe statements a ladder model knows (issue 13): from its knowledge results
and the fact world, the cities whose country it completes on the probe's own held-out template.

    python -m experiments.known_statements --knowledge K.json --facts data/corpus/ladder/facts.json \
        --out results/ladder/statements/<model>.csv [--rule probe_template|all_templates]
        [--max-cities 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sinkmech.data.facts import KNOWN_RULES, FactWorld, known_city_statements
from sinkmech.io import write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knowledge", required=True, help="sinkmech.training.knowledge output")
    parser.add_argument("--facts", required=True, help="the ladder corpus's facts.json")
    parser.add_argument("--out", required=True, help="statement CSV to write")
    parser.add_argument("--rule", default="probe_template", choices=KNOWN_RULES)
    parser.add_argument(
        "--max-cities", type=int, default=300, help="seeded subsample of the known cities (cost)"
    )
    args = parser.parse_args()
    world = FactWorld.from_json(json.loads(Path(args.facts).read_text()))
    items = json.loads(Path(args.knowledge).read_text())["items"]
    frame = known_city_statements(world, items, rule=args.rule, max_cities=args.max_cities)
    out = Path(args.out)
    write_table(frame, out.with_suffix(""))
    print(f"{len(frame)} statements about {frame.entity.nunique()} known cities -> {out}")


if __name__ == "__main__":
    main()
