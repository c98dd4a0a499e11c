"""Truth probes with the power to see (issue 29, item 3): every city of the fact world, split by
city, read at the country token, the final period and its sink heads' tags, linear and MLP probes,
beside a random-weight twin, the model's own input embeddings and its own log-probability.

Models are ``conf/model`` names or checkpoint directories. Statements: every city of the fact world
(``--cities`` seeded ones), ``--test-fraction`` of them test cities. "Known" cities: completed on
every template of ``--known-family`` (a held-out family of the ``--facts-version`` world other than
the probe's frame; default that world's ``known_family``). Writes ``truth_probes`` (per model,
weights, feature, position, layer, probe and subset: accuracy and AUROC with 95% city-bootstrap
intervals), ``cv_best_layers`` (its rows at the layer each probe cross-validated best on),
``tag_heads``, ``known`` (per model: the family and how many cities it certifies) and
``statements``.

    python -m experiments.truth_probes --models ladder_s_qknorm,ladder_s_noqknorm \
        --out results/ladder/truth_probes
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pandas as pd

from sinkmech.api import model_spec
from sinkmech.data.facts import FactWorld, geonames_world
from sinkmech.io import write_table
from sinkmech.models import ModelSpec, load_model
from sinkmech.models.random_init import random_weights
from sinkmech.probing.truth_power import TruthProbeSettings, cv_best_layers, run_truth_probes
from sinkmech.probing.truth_sets import city_statements, known_city_names, known_filter_family


def spec_of(name: str, device: str = "cpu") -> ModelSpec:
    """A ``conf/model`` name's spec, or a local checkpoint directory's, on ``device``."""
    if Path(name).is_dir():
        return ModelSpec(name=Path(name).name, source="local", path=name, device=device)
    return model_spec(name, device=device)


def parse_layers(text: str) -> tuple[int, ...] | None:
    """``all`` or comma-separated layers (-1: the embeddings)."""
    return None if text == "all" else tuple(int(part) for part in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated names or directories")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--facts", help="a corpus's facts.json (default: the GeoNames world)")
    parser.add_argument(
        "--facts-version", type=int, default=1, help="templates of the known filter"
    )
    parser.add_argument("--known-family", help="held-out city family certifying knowledge")
    parser.add_argument("--layers", default="all", help="'all' or e.g. -1,0,1,2,3,4,5")
    parser.add_argument("--cities", type=int, help="seeded subsample of the cities (default all)")
    parser.add_argument("--test-fraction", type=float, default=0.4)
    parser.add_argument("--probes", default="linear,mlp")
    parser.add_argument("--mlp-hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the models run (cpu, cuda)")
    parser.add_argument("--n-jobs", type=int, default=1, help="probe fits in parallel processes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    facts = (
        FactWorld.from_json(json.loads(Path(args.facts).read_text())).facts
        if args.facts
        else geonames_world().facts
    )
    world = FactWorld(facts, version=args.facts_version)
    family = known_filter_family(world, args.known_family)
    statements = city_statements(world, args.seed, args.cities, args.test_fraction)
    settings = TruthProbeSettings(
        layers=parse_layers(args.layers),
        probes=tuple(args.probes.split(",")),
        mlp_hidden=args.mlp_hidden,
        seed=args.seed,
        n_jobs=args.n_jobs,
    )
    tables: dict[str, list[pd.DataFrame]] = {"truth_probes": [], "tag_heads": [], "known": []}
    for name in args.models.split(","):
        started = time.time()
        spec = spec_of(name, args.device)
        trained, random = load_model(spec), random_weights(spec, args.seed)
        known = known_city_names(trained.model.original_model, trained.tokenizer, world, family)
        for table, frame in run_truth_probes(trained, random, statements, known, settings).items():
            tables[table].append(frame)
        test = statements[statements.split == "test"]
        tables["known"].append(
            pd.DataFrame(
                {
                    "model": [spec.name],
                    "facts_version": [args.facts_version],
                    "family": [family],
                    "cities": [statements.entity.nunique()],
                    "known_cities": [len(known)],
                    "known_test_cities": [test.entity[test.entity.isin(known)].nunique()],
                }
            )
        )
        print(f"{spec.name}: {time.time() - started:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for table, frames in tables.items():
        write_table(pd.concat(frames, ignore_index=True), args.out / table)
    write_table(statements, args.out / "statements")
    best = cv_best_layers(pd.concat(tables["truth_probes"], ignore_index=True))
    write_table(best, args.out / "cv_best_layers")
    print(best.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
