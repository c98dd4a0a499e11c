"""Statements for truth probes with the power to see (issue 29, item 3), the cities a model knows,
and what the model itself says about each statement.

Why every city: 300 known cities (600 statements) left intervals wide enough to hide a 0.6 probe.
The statements are ``build_statements``'s ("The city of X is in Y."): one true and one false per
city, no city on both sides of the split, false countries deranged within each split so every
country is as often a true as a false object there. The "known" subset is certified on a held-out
template family other than the probe's frame (``PROBE_TEMPLATE``): choosing statements never reads
the model's answer on the probed sentence itself.

Cross-validation inside the training split needs folds as balanced as the split: a fold of random
cities names some country more often true than false, and the other folds then name it more often
false by as much, so a probe that has learnt which countries came up true scores below chance on the
held-out fold (the trap ``build_statements`` avoids for the test split). ``country_cycles`` groups
training cities so that every group, and so every fold of whole groups, is balanced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sinkmech.data.facts import (
    PROBE_TEMPLATE,
    FactWorld,
    eval_items,
    known_cities,
    known_city_statements,
    known_family,
    template_prompt,
)
from sinkmech.data.statements import check_country_balance, country_phrase
from sinkmech.training.knowledge import evaluate_knowledge


def city_statements(
    world: FactWorld, seed: int = 0, max_cities: int | None = None, test_fraction: float = 0.4
) -> pd.DataFrame:
    """True/false statements of every city of ``world`` (or ``max_cities`` seeded ones), split by
    city with ``test_fraction`` of them test cities, countries balanced within each split."""
    frame = known_city_statements(
        world, [], seed=seed, rule="none", max_cities=max_cities, test_fraction=test_fraction
    )
    check_country_balance(frame)
    return frame


def country_cycles(statements: pd.DataFrame, seed: int = 0) -> pd.Series:
    """City -> group id. Read each city as a step from its true country to its false one: a group
    is a closed walk of such steps (back to the country it left), so it names every country as
    often true as false, and so does every fold of whole groups. ``statements`` must be balanced
    per country (``check_country_balance``); a walk is closed as soon as it revisits a country, so
    groups stay tens of cities long rather than one chain through the split."""
    pairs = statements.pivot(index="entity", columns="label", values="country")
    cities, true, false = pairs.index.to_numpy(), pairs[1].to_numpy(), pairs[0].to_numpy()
    rng = np.random.default_rng(seed)
    leaving: dict[str, list[int]] = {}
    for city in rng.permutation(len(cities)):
        leaving.setdefault(true[city], []).append(int(city))
    group = np.full(len(cities), -1)
    n_groups = 0
    for start in sorted(leaving):
        path, edges = [start], []  # countries walked and the cities (edges) between them
        while leaving[path[-1]]:
            city = leaving[path[-1]].pop()
            country = false[city]
            edges.append(city)
            if country in path:  # a closed chain: from country's first visit back to it
                first = path.index(country)
                group[edges[first:]] = n_groups
                n_groups += 1
                path, edges = path[: first + 1], edges[:first]
            else:
                path.append(country)
        if edges:
            raise ValueError(f"statements are not balanced per country (walk stuck at {path[-1]})")
    return pd.Series(group, index=cities, name="group")


def known_filter_family(world: FactWorld, family: str | None = None) -> str:
    """The held-out city -> country family that certifies knowledge: ``family``, by default the
    world's ``known_family``. Raises for a family holding the probe's own template."""
    name = family or known_family(world)
    families = world.families("city_country", "eval")
    if name not in families:
        raise ValueError(f"family {name!r} is not a held-out city family: {sorted(families)}")
    if PROBE_TEMPLATE in families[name]:
        raise ValueError(f"family {name!r} holds the probe's template {PROBE_TEMPLATE!r}")
    return name


def known_city_names(model: Any, tokenizer: Any, world: FactWorld, family: str) -> set[str]:
    """Cities whose country ``model`` (a transformers causal LM) completes greedily on every
    template of ``family`` (``known_filter_family``)."""
    family = known_filter_family(world, family)
    items = eval_items(
        world, {"city_country": {family: world.families("city_country", "eval")[family]}}
    )
    knowledge = evaluate_knowledge(model, tokenizer, items)
    return {fact.subject for fact in known_cities(world, knowledge, "family", family)}


def country_logprobs(model: Any, tokenizer: Any, statements: pd.DataFrame) -> np.ndarray:
    """[statement] log P(" " + country phrase | BOS "The city of X is in"), summed over the
    country's tokens: the model's own verdict on each statement, the probes' behavioural ceiling."""
    items = [
        {"prompt": template_prompt(PROBE_TEMPLATE, city), "answer": " " + country_phrase(country)}
        for city, country in zip(statements.entity, statements.country)
    ]
    return np.array([row["answer_logprob"] for row in evaluate_knowledge(model, tokenizer, items)])
