"""Write the truth-probe statements a ladder model knows (issues 13, 29): from its knowledge
results and the fact world, the cities whose country it completes on every template of a held-out
family other than the probe's own frame (``--family``, default the world's ``known_family``).

    python -m experiments.known_statements --knowledge K.json --facts data/corpus/ladder/facts.json \
        --out results/ladder/statements/<model>.csv [--family NAME] [--max-cities 300]
        [--rule family|probe_template|all_templates|none] [--test-fraction 0.25]

``--rule probe_template`` is issue 13's filter (the probe's own template), which wrote the
committed statement sets of the S, M and L pairs. ``--rule none --max-cities 0 --test-fraction
0.5`` gives every city of the world, half of them test cities (1,500 statements a split for
1,500 cities), countries balanced within each split.
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
    parser.add_argument("--rule", default="family", choices=KNOWN_RULES)
    parser.add_argument("--family", help="held-out city -> country family (rule=family)")
    parser.add_argument(
        "--max-cities", type=int, default=300, help="seeded subsample of the known cities; 0: all"
    )
    parser.add_argument("--test-fraction", type=float, default=0.25)
    args = parser.parse_args()
    world = FactWorld.from_json(json.loads(Path(args.facts).read_text()))
    items = json.loads(Path(args.knowledge).read_text())["items"]
    frame = known_city_statements(
        world,
        items,
        rule=args.rule,
        max_cities=args.max_cities or None,
        family=args.family,
        test_fraction=args.test_fraction,
    )
    out = Path(args.out)
    write_table(frame, out.with_suffix(""))
    print(f"{len(frame)} statements about {frame.entity.nunique()} known cities -> {out}")


if __name__ == "__main__":
    main()
