"""Generated reasoning traces for the reasoning analogue of Sec. 5 of arXiv 2502.00919 (issue 13).

The paper compares R1-distilled Qwen (trained on long chain-of-thought) with its base and finds
more sinks per head. Here a base model is continued on traces in the style of distilled
chain-of-thought, with every intermediate step written out: multi-step arithmetic, and two-hop
chains through the fact world (city -> country -> continent / capital / currency), using only
TRAINING templates for the hops. The control arm continues on the base mixture instead.
"""

from __future__ import annotations

import numpy as np

from sinkmech.data.facts import Fact, FactWorld, render

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_FINAL = {
    "country_continent": "On which continent is {s}?",
    "country_capital": "What is the capital of the country where {s} lies?",
    "country_currency": "Which currency is used in {s}?",
}


def arithmetic_trace(rng: np.random.Generator, min_steps: int = 2, max_steps: int = 5) -> str:
    """ "Question: What is a + b * c ...? Let us think step by step. ... Answer: n." evaluated left
    to right, one operation per step, each step restating the running value."""
    n_steps = int(rng.integers(min_steps, max_steps + 1))
    value = int(rng.integers(2, 100))
    terms, steps = [str(value)], []
    for _ in range(n_steps):
        op = str(rng.choice(["+", "-", "*"] if abs(value) < 1000 else ["+", "-"]))
        operand = int(rng.integers(2, 10 if op == "*" else 100))
        result = _OPS[op](value, operand)
        steps.append(f"Step {len(steps) + 1}: {value} {op} {operand} = {result}.")
        terms.append(f"{op} {operand}")
        value = result
    question = f"Question: Starting from {terms[0]}, apply {', then '.join(terms[1:])}. What is the result?"
    return " ".join([question, "Let us think step by step.", *steps, f"Answer: {value}."])


def fact_chain_trace(world: FactWorld, rng: np.random.Generator) -> str:
    """A two-hop question about a city, answered through its country, each hop a training-template
    sentence of the fact world."""
    cities = [f for f in world.facts if f.relation == "city_country"]
    by_country: dict[tuple[str, str], Fact] = {
        (f.relation, f.subject): f for f in world.facts if f.relation != "city_country"
    }
    while True:
        city = cities[int(rng.integers(len(cities)))]
        relation = str(rng.choice(sorted(_FINAL)))
        second = by_country.get((relation, city.object))
        if second is not None:
            break
    hop1 = world.templates("city_country", "train")
    hop2 = world.templates(relation, "train")
    steps = [
        f"Step 1: {render(hop1[int(rng.integers(len(hop1)))], city)}",
        f"Step 2: {render(hop2[int(rng.integers(len(hop2)))], second)}",
    ]
    question = "Question: " + _FINAL[relation].format(s=city.subject)
    return " ".join([question, "Let us think step by step.", *steps, f"Answer: {second.object}."])


def reasoning_documents(
    world: FactWorld, n_docs: int, traces_per_doc: int = 8, seed: int = 0
) -> list[str]:
    """Documents of traces, half arithmetic and half fact chains in expectation; deterministic."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        traces = [
            arithmetic_trace(rng) if rng.random() < 0.5 else fact_chain_trace(world, rng)
            for _ in range(traces_per_doc)
        ]
        docs.append("\n\n".join(traces))
    return docs
