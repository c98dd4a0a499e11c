"""Knowledge per template family (issue 29): rank every object of a relation after each prompt.

Each template set is ``V:SPLIT`` (fact-world version, ``train`` or ``eval`` families) or
``--templates FILE.json`` (relation -> family -> templates written elsewhere). The facts are the
world's (the same GeoNames facts in every version); ``--cities`` seeded city facts and every
country fact are asked. Writes ``families`` (per model, set, relation and family: top-1 raw and
prior-corrected, majority baseline, chance, most common prediction), ``summary`` (the same per
model, set and relation, families pooled) and, with ``--items``, the per-item ranks.

    python -m experiments.knowledge_families --models ladder_s_qknorm,ladder_s_noqknorm \
        --sets 1:train,1:eval,2:eval --cities 200 --out results/ladder/knowledge_families
    python -m experiments.knowledge_families --models checkpoints/ladder/<run> \
        --facts data/corpus/ladder/facts.json --sets 2:eval,2:train --out <dir>
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sinkmech.data.facts import (
    Fact,
    FactWorld,
    completable,
    eval_items,
    geonames_world,
    object_answers,
)
from sinkmech.io import write_table
from sinkmech.training.knowledge_rank import family_table, rank_objects


def load_causal_lm(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a checkpoint directory or a ``conf/model`` name (its ``path``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sinkmech.api import model_spec
    from sinkmech.paths import resolve_path

    path = name if Path(name).is_dir() else resolve_path(model_spec(name).path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


def sampled_facts(facts: list[Fact], n_cities: int, seed: int) -> set[int]:
    """Indices of ``n_cities`` seeded city facts and of every country fact."""
    cities = [i for i, fact in enumerate(facts) if fact.relation == "city_country"]
    keep = np.random.default_rng(seed).choice(cities, min(n_cities, len(cities)), replace=False)
    return set(keep.tolist()) | {i for i, f in enumerate(facts) if f.relation != "city_country"}


def template_sets(
    facts: list[Fact], sets: list[str], external: Path | None
) -> dict[str, list[dict[str, Any]]]:
    """Set label -> completion items of the facts under that set's families."""
    out = {}
    for entry in sets:
        version, split = entry.split(":")
        world = FactWorld(facts, version=int(version))
        relations = sorted({fact.relation for fact in facts})
        # ranking reads the object after the subject: templates of the other direction are
        # training text only (version 2 writes both directions), never asked
        families = {r: completable(world.families(r, split)) for r in relations}
        out[f"v{version} {'train' if split == 'train' else 'held-out'}"] = eval_items(
            world, families
        )
    if external is not None:
        out["external"] = eval_items(FactWorld(facts), json.loads(external.read_text()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated names or directories")
    parser.add_argument("--facts", help="a corpus's facts.json (default: the GeoNames world)")
    parser.add_argument("--sets", default="1:train,1:eval,2:eval")
    parser.add_argument("--templates", type=Path, help="relation -> family -> templates (JSON)")
    parser.add_argument("--cities", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", action="store_true", help="also write the per-item ranks")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.facts:
        facts = FactWorld.from_json(json.loads(Path(args.facts).read_text())).facts
    else:
        facts = geonames_world().facts
    keep = sampled_facts(facts, args.cities, args.seed)
    sets = {
        label: [item for item in items if item["fact"] in keep]
        for label, items in template_sets(
            facts, [s for s in args.sets.split(",") if s], args.templates
        ).items()
    }
    answers = object_answers(FactWorld(facts))
    ranked_all = []
    for name in args.models.split(","):
        model, tokenizer = load_causal_lm(name)
        for label, items in sets.items():
            started = time.time()
            ranked = rank_objects(model, tokenizer, items, answers)
            ranked.insert(0, "set", label)
            ranked.insert(0, "model", Path(name).name)
            ranked_all.append(ranked)
            print(f"{name} {label}: {len(items)} items, {time.time() - started:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    ranked = pd.concat(ranked_all, ignore_index=True)
    write_table(
        family_table(ranked, by=("model", "set", "relation", "family")), args.out / "families"
    )
    summary = family_table(ranked, by=("model", "set", "relation"))
    write_table(summary, args.out / "summary")
    if args.items:
        write_table(ranked, args.out / "items")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
